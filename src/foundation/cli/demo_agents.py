"""The demo's agents: a small document pipeline of TaskAgents, one capability per stage.

Each stage is an action that takes a little (runtime-clock) time, so that the chaos monkey of
``foundation demo`` finds steps in flight, and computes a deterministic result from its input,
so that the demo can check every workflow's results, not only count them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel

from foundation.agents import MonitorAgent, TaskAgent, action
from foundation.kernel.context import current_runtime

__all__ = [
    "DemoMonitor",
    "Enricher",
    "Fetcher",
    "Parser",
    "STAGES",
    "Scorer",
    "Storer",
    "expected_results",
    "pipeline_steps",
    "worker_types",
]

STAGE_TIME = 0.002
"""Seconds each stage takes (on the runtime clock)."""


def _digest(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12]


class _Item(BaseModel):
    item: int


class _Doc(BaseModel):
    doc: str


class _Pair(BaseModel):
    parsed: str
    enriched: str


class _Score(BaseModel):
    item: int
    score: str


class _Worker(TaskAgent):
    """A pipeline worker: counts the steps it served (a durable counter)."""

    class State(TaskAgent.State):
        served: int = 0

    def _served(self, state: Any) -> Any:
        return state.model_copy(update={"served": state.served + 1})

    async def _work(self) -> None:
        await current_runtime().clock.sleep(STAGE_TIME)


class Fetcher(_Worker):
    capabilities = ("fetch",)

    @action
    async def fetch(self, params: _Item, state: Any) -> tuple[str, Any]:
        """Fetch the document of an item."""
        await self._work()
        return f"doc-{params.item}", self._served(state)


class Parser(_Worker):
    capabilities = ("parse",)

    @action
    async def parse(self, params: _Doc, state: Any) -> tuple[str, Any]:
        """Parse a document into a digest."""
        await self._work()
        return _digest("parse", params.doc), self._served(state)


class Enricher(_Worker):
    capabilities = ("enrich",)

    @action
    async def enrich(self, params: _Doc, state: Any) -> tuple[str, Any]:
        """Enrich a document with its own digest."""
        await self._work()
        return _digest("enrich", params.doc), self._served(state)


class Scorer(_Worker):
    capabilities = ("score",)

    @action
    async def score(self, params: _Pair, state: Any) -> tuple[str, Any]:
        """Score a parsed and enriched pair."""
        await self._work()
        return _digest("score", params.parsed, params.enriched), self._served(state)


class Storer(_Worker):
    capabilities = ("store",)

    @action(name="store")
    async def store_score(self, params: _Score, state: Any) -> tuple[str, Any]:
        """Store a score; answers a receipt."""
        await self._work()
        return f"stored-{params.item}-{params.score}", self._served(state)


class DemoMonitor(MonitorAgent):
    """Checks the pipeline's agents and the services twice a second."""

    interval = 0.5
    probe_timeout = 0.2


STAGES = ("fetch", "parse", "enrich", "score", "store")


def worker_types() -> list[tuple[type[TaskAgent], int]]:
    """Each worker type and how many agents of it the demo runs."""
    return [(Fetcher, 3), (Parser, 2), (Enricher, 2), (Scorer, 2), (Storer, 2)]


def pipeline_steps() -> list[dict[str, Any]]:
    """The five steps of a demo workflow: fetch, then parse and enrich in parallel, score, store."""
    return [
        {
            "id": "fetch",
            "capability": "fetch",
            "action": "fetch",
            "params": {"item": "$input.item"},
        },
        {
            "id": "parse",
            "capability": "parse",
            "action": "parse",
            "params": {"doc": "$steps.fetch.result"},
            "depends_on": ["fetch"],
        },
        {
            "id": "enrich",
            "capability": "enrich",
            "action": "enrich",
            "params": {"doc": "$steps.fetch.result"},
            "depends_on": ["fetch"],
        },
        {
            "id": "score",
            "capability": "score",
            "action": "score",
            "params": {"parsed": "$steps.parse.result", "enriched": "$steps.enrich.result"},
            "depends_on": ["parse", "enrich"],
        },
        {
            "id": "store",
            "capability": "store",
            "action": "store",
            "params": {"item": "$input.item", "score": "$steps.score.result"},
            "depends_on": ["score"],
        },
    ]


def expected_results(item: int) -> dict[str, str]:
    """What each step of the workflow for ``item`` must have recorded."""
    doc = f"doc-{item}"
    parsed, enriched = _digest("parse", doc), _digest("enrich", doc)
    score = _digest("score", parsed, enriched)
    return {
        "fetch": doc,
        "parse": parsed,
        "enrich": enriched,
        "score": score,
        "store": f"stored-{item}-{score}",
    }
