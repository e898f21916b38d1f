"""Shared by the workflow tests: a test agent, a five-step workflow, a system, a store."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from foundation import Runtime, Supervisor
from foundation.agents import Agent, AgentSupervisor, action, start_agent
from foundation.errors import InvalidArgument, Overloaded
from foundation.kernel.context import RUNTIME, current_runtime
from foundation.persistence import MemoryStore
from foundation.testing import VirtualClock, VirtualTimeLoop
from foundation.workflows import WorkflowSystem, workflow_status

T = TypeVar("T")


class Worker(Agent):
    """Stages of a toy pipeline, each taking ``seconds`` of runtime-clock time; it counts its
    runs per tag and per idempotency key (durably, in its state)."""

    capabilities = ("fetch", "compute")

    class State(BaseModel):
        runs: dict[str, int] = {}
        keys: dict[str, int] = {}

    class Job(BaseModel):
        value: Any = None
        seconds: float = 1.0
        tag: str = ""
        key: str = ""

    @action
    async def work(self, params: Job, state: State) -> tuple[Any, State]:
        """Echo ``value`` after ``seconds``."""
        await current_runtime().clock.sleep(params.seconds)
        runs = {**state.runs, params.tag: state.runs.get(params.tag, 0) + 1}
        keys = dict(state.keys)
        if params.key:
            keys[params.key] = keys.get(params.key, 0) + 1
        result = {"echo": params.value, "by": self.agent_id}
        return result, state.model_copy(update={"runs": runs, "keys": keys})

    class Sum(BaseModel):
        values: list[int]
        seconds: float = 0.5

    @action
    async def total(self, params: Sum, state: State) -> tuple[int, State]:
        """The sum of ``values`` after ``seconds``."""
        await current_runtime().clock.sleep(params.seconds)
        return sum(params.values), state

    class Flaky(BaseModel):
        key: str
        failures: int

    flaky_calls: dict[str, int]

    async def on_start(self, state: Any) -> Any:
        self.flaky_calls = {}
        return state

    @action
    async def flaky(self, params: Flaky, state: State) -> tuple[int, State]:
        """Overloaded (retryable) for the first ``failures`` calls with ``key`` (counted in
        memory: a refused action keeps its state); then the number of calls."""
        calls = self.flaky_calls[params.key] = self.flaky_calls.get(params.key, 0) + 1
        if calls <= params.failures:
            raise Overloaded(f"flaky: call {calls} of {params.key!r} refused")
        return calls, state

    @action
    async def refuse(self, state: State) -> tuple[None, State]:
        """A business error: never worth retrying."""
        raise InvalidArgument("refuse: this request is never acceptable")

    @action
    async def blob(self, state: State) -> tuple[object, State]:
        """A result no store can keep."""
        return object(), state


def five_steps(tag: str = "", seconds: float = 1.0) -> dict[str, Any]:
    """a -> (b, c in parallel) -> d -> e; a, b, c and e pass their idempotency key."""

    def job(value: Any) -> dict[str, Any]:
        return {"value": value, "seconds": seconds, "tag": tag, "key": "$idempotency_key"}

    return {
        "name": "five",
        "steps": [
            {"id": "a", "capability": "fetch", "action": "work", "params": job("$input.x")},
            {"id": "b", "capability": "compute", "action": "work", "params": job(1),
             "depends_on": ["a"]},
            {"id": "c", "capability": "compute", "action": "work", "params": job(2),
             "depends_on": ["a"]},
            {"id": "d", "capability": "compute", "action": "total",
             "params": {"values": ["$steps.b.result.echo", "$steps.c.result.echo"],
                        "seconds": seconds / 2},
             "depends_on": ["b", "c"]},
            {"id": "e", "capability": "fetch", "action": "work", "params": job("$steps.d.result"),
             "depends_on": ["d"]},
        ],
    }  # fmt: skip


async def start_system(runtime: Runtime, store: Any = None, agents: int = 3, **opts: Any) -> None:
    """The agent registry and supervisor, the workflow subtree, and agents ``w0``..."""
    if store is not None or runtime.store is None:
        runtime.store = store if store is not None else RecordingStore()
    await Supervisor.start_link(
        [*AgentSupervisor.child_specs(), *WorkflowSystem.child_specs(**opts)], max_restarts=100
    )
    for i in range(agents):
        await start_agent(Worker, f"w{i}")


async def check_five(workflow_id: str, x: Any = "hello") -> None:
    """The workflow completed with the five expected results."""
    status = await workflow_status(workflow_id)
    assert status.status == "completed", status.error
    results = {k: s.result for k, s in status.steps.items()}
    assert results["a"]["echo"] == x
    assert results["d"] == 3
    assert results["e"]["echo"] == 3
    assert all(s.status == "completed" for s in status.steps.values())


class RecordingStore(MemoryStore):
    """A MemoryStore that keeps every accepted save of a workflow record, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[dict[str, Any]]] = {}

    async def save_json(
        self, key: str, text: str, expected_version: int | None, *, schema_version: int = 1
    ) -> int:
        version = await super().save_json(
            key, text, expected_version, schema_version=schema_version
        )
        if key.startswith("workflow/"):
            self.history.setdefault(key, []).append(json.loads(text))
        return version

    def completions(self, workflow_id: str) -> dict[str, int]:
        """How many times each step's result was recorded (went from not completed to
        completed) over the record's whole history; a recorded result never changes."""
        counts: dict[str, int] = {}
        last: dict[str, dict[str, Any]] = {}
        for data in self.history.get(f"workflow/{workflow_id}", []):
            for step, info in data["steps"].items():
                before = last.get(step)
                if info["status"] == "completed":
                    if before is None or before["status"] != "completed":
                        counts[step] = counts.get(step, 0) + 1
                    else:
                        assert info["result"] == before["result"], f"{step} result changed"
                last[step] = info
        return counts


def in_fresh_runtime(store: Any, main: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``main(rt)`` in a new Runtime on its own virtual clock with ``store``, then shut it
    down: one "OS process" of a test that restarts the whole system."""
    loop = VirtualTimeLoop()
    rt = Runtime(clock=VirtualClock(), store=store)

    async def run() -> T:
        RUNTIME.set(rt)
        rt.start()
        try:
            return await main(rt)
        finally:
            await rt.shutdown()

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
