"""Workflow benchmark: workflow steps per second, durable, against the same actions run directly.

Run alone: ``.venv/bin/python bench/workflow_bench.py [--workflows N]``. Asserts nothing about
timings. Each workflow is the demo's five-step pipeline (fetch, parse and enrich in parallel,
score, store) with no simulated work, on a SQLite store: every step result and every agent
state change is durable before it counts. Baseline in the same run: the same five actions,
called directly with ``run()`` one after the other (agents persist too, no workflow process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from foundation import Runtime, Supervisor
from foundation.agents import AgentSupervisor, run, start_agent
from foundation.cli import demo_agents
from foundation.workflows import WorkflowSystem, await_workflow, start_workflow


async def system() -> None:
    await Supervisor.start_link([*AgentSupervisor.child_specs(), *WorkflowSystem.child_specs()])
    for cls, count in demo_agents.worker_types():
        for i in range(count):
            await start_agent(cls, f"{cls.capabilities[0]}-{i + 1}")


async def workflows(path: str, n: int) -> float:
    async with Runtime(store=f"sqlite:///{path}"):
        await system()
        steps = {"name": "pipeline", "steps": demo_agents.pipeline_steps()}
        t0 = time.perf_counter()
        ids = [await start_workflow(steps, {"item": i}) for i in range(n)]
        for wid in ids:
            assert (await await_workflow(wid, timeout=600)).status == "completed"
        return n * 5 / (time.perf_counter() - t0)


async def direct(path: str, n: int) -> float:
    async with Runtime(store=f"sqlite:///{path}"):
        await system()
        t0 = time.perf_counter()
        for i in range(n):
            doc = await run("fetch-1", "fetch", {"item": i})
            parsed = await run("parse-1", "parse", {"doc": doc})
            enriched = await run("enrich-1", "enrich", {"doc": doc})
            score = await run("score-1", "score", {"parsed": parsed, "enriched": enriched})
            await run("store-1", "store", {"item": i, "score": score})
        return n * 5 / (time.perf_counter() - t0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=300)
    args = parser.parse_args()
    demo_agents.STAGE_TIME = 0.0  # no simulated work: the machinery itself is measured
    with tempfile.TemporaryDirectory() as tmp:
        w = await workflows(os.path.join(tmp, "w.db"), args.workflows)
        d = await direct(os.path.join(tmp, "d.db"), args.workflows)
    print(
        f"workflow steps/s: {w:,.0f} (concurrent workflows, durable); direct run() of the same "
        f"actions in turn: {d:,.0f}/s; ratio {w / d:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
