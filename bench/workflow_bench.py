"""Workflow benchmark: durable workflow steps per second, against the same actions run directly.

Run alone: ``.venv/bin/python bench/workflow_bench.py [--workflows N] [--rounds R] [--store S]``
or through ``bench/run.py workflow``. Asserts nothing about timings; prints absolute figures
and ratios measured in the same run (median of the rounds).

Each workflow is the demo's five-step pipeline (fetch, then parse and enrich in parallel, score,
store) with no simulated work, on a SQLite file in a temporary directory (``--store memory``:
a MemoryStore, for the machinery without I/O). Every step result and every agent state change is
durable before it counts. Baselines in the same run, on the same kind of store, with the same
agents and the same five actions (agents persist too, but there is no workflow process):

- **direct, in turn**: one client calls the five actions with ``run()``, pipeline after
  pipeline (the seed's "same work without the workflow layer");
- **direct, concurrent**: N client processes, one per pipeline, each calling its five actions
  with ``run()`` (parse and enrich one after the other), spread over the agents as the
  workflows are: the same concurrency as the workflows, without a workflow layer.

What a workflow step adds to a direct ``run()``: a runner process, an agent lookup by
capability, one durable save of the workflow's state, and the coordinator's own two saves per
workflow (start and finish).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

from foundation import Runtime, Supervisor
from foundation.agents import AgentSupervisor, run, start_agent
from foundation.cli import demo_agents
from foundation.kernel.api import spawn, wait_exit
from foundation.persistence import MemoryStore
from foundation.workflows import WorkflowSystem, await_workflow, start_workflow


async def system() -> None:
    await Supervisor.start_link([*AgentSupervisor.child_specs(), *WorkflowSystem.child_specs()])
    for cls, count in demo_agents.worker_types():
        for i in range(count):
            await start_agent(cls, f"{cls.capabilities[0]}-{i + 1}")


def store_for(kind: str, tmp: str, name: str) -> Any:
    return MemoryStore() if kind == "memory" else f"sqlite:///{os.path.join(tmp, name)}"


async def workflows(store: Any, n: int) -> float:
    async with Runtime(store=store):
        await system()
        steps = {"name": "pipeline", "steps": demo_agents.pipeline_steps()}
        t0 = time.perf_counter()
        ids = [await start_workflow(steps, {"item": i}) for i in range(n)]
        for wid in ids:
            assert (await await_workflow(wid, timeout=600)).status == "completed"
        return n * 5 / (time.perf_counter() - t0)


def agent(stage: str, i: int) -> str:
    count = {c.capabilities[0]: k for c, k in demo_agents.worker_types()}[stage]
    return f"{stage}-{i % count + 1}"


async def pipeline(i: int) -> None:
    doc = await run(agent("fetch", i), "fetch", {"item": i})
    parsed = await run(agent("parse", i), "parse", {"doc": doc})
    enriched = await run(agent("enrich", i), "enrich", {"doc": doc})
    score = await run(agent("score", i), "score", {"parsed": parsed, "enriched": enriched})
    await run(agent("store", i), "store", {"item": i, "score": score})


async def direct(store: Any, n: int, concurrent: bool) -> float:
    async with Runtime(store=store):
        await system()
        t0 = time.perf_counter()
        if concurrent:
            clients = [spawn(pipeline, i) for i in range(n)]
            for client in clients:
                await wait_exit(client)
        else:
            for i in range(n):
                await pipeline(i)
        return n * 5 / (time.perf_counter() - t0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    args = parser.parse_args()
    demo_agents.STAGE_TIME = 0.0  # no simulated work: the machinery itself is measured
    figures: dict[str, list[float]] = {"workflows": [], "in turn": [], "concurrent": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            n = args.workflows
            figures["workflows"].append(await workflows(store_for(args.store, tmp, "w.db"), n))
            figures["in turn"].append(await direct(store_for(args.store, tmp, "d.db"), n, False))
            figures["concurrent"].append(await direct(store_for(args.store, tmp, "c.db"), n, True))
    w, d, c = (statistics.median(v) for v in figures.values())
    where = "SQLite file (WAL)" if args.store == "sqlite" else "MemoryStore"
    print(f"{args.workflows} five-step workflows, durable on a {where}, median of {args.rounds}:")
    print(f"  workflow steps/s:                     {w:>8,.0f}")
    print(f"  direct run(), in turn:                {d:>8,.0f}/s   workflows {w / d:.2f}x")
    print(
        f"  direct run(), {args.workflows} concurrent clients: {c:>8,.0f}/s   workflows {w / c:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
