"""Workflows: validated DAGs of agent actions that finish through crashes of any part."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from foundation import Runtime, Supervisor, spawn
from foundation.agents import Agent, AgentSupervisor, action, start_agent
from foundation.errors import InvalidWorkflow, UnknownCapability, ValidationError, WorkflowNotFound
from foundation.kernel.api import wait_exit
from foundation.kernel.context import current_runtime
from foundation.persistence import MemoryStore, SQLiteStore
from foundation.testing import crash, restarted, wait_until
from foundation.workflows import (
    Workflow,
    WorkflowSystem,
    await_workflow,
    cancel_workflow,
    list_workflows,
    start_workflow,
    workflow_status,
)
from foundation.workflows.process import COORDINATOR, workflow_name


class Worker(Agent):
    """Stages of a toy pipeline; each takes ``seconds`` of runtime-clock time."""

    capabilities = ("fetch", "compute")

    class State(BaseModel):
        runs: dict[str, int] = {}

    class Job(BaseModel):
        value: Any = None
        seconds: float = 1.0
        tag: str = ""

    @action
    async def work(self, params: Job, state: State) -> tuple[Any, State]:
        await current_runtime().clock.sleep(params.seconds)
        runs = {**state.runs, params.tag: state.runs.get(params.tag, 0) + 1}
        return {"echo": params.value, "by": self.agent_id}, state.model_copy(update={"runs": runs})

    class Sum(BaseModel):
        values: list[int]
        seconds: float = 0.5

    @action
    async def total(self, params: Sum, state: State) -> tuple[int, State]:
        await current_runtime().clock.sleep(params.seconds)
        return sum(params.values), state


def five_steps(tag: str = "", seconds: float = 1.0) -> dict[str, Any]:
    """a -> (b, c in parallel) -> d -> e."""

    def job(value: Any) -> dict[str, Any]:
        return {"value": value, "seconds": seconds, "tag": tag}

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


async def start_system(runtime: Runtime, store: Any = None, agents: int = 3) -> None:
    runtime.store = store if store is not None else MemoryStore()
    await Supervisor.start_link(
        [*AgentSupervisor.child_specs(), *WorkflowSystem.child_specs()], max_restarts=100
    )
    for i in range(agents):
        await start_agent(Worker, f"w{i}")


async def check_five(workflow_id: str, x: Any = "hello") -> None:
    status = await workflow_status(workflow_id)
    assert status.status == "completed", status.error
    results = {k: s.result for k, s in status.steps.items()}
    assert results["a"]["echo"] == x
    assert results["d"] == 3
    assert results["e"]["echo"] == 3
    assert all(s.status == "completed" for s in status.steps.values())


async def test_a_five_step_workflow_with_parallel_steps_completes_with_five_results(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    start = runtime.clock.now()
    wid = await start_workflow(five_steps(), {"x": "hello"})
    entry = await await_workflow(wid)
    assert entry.status == "completed"
    await check_five(wid)
    # a (1s), b and c in parallel (1s), d (0.5s), e (1s)
    assert runtime.clock.now() - start == pytest.approx(3.5, abs=0.1)
    assert (await list_workflows("completed")).keys() == {wid}
    assert runtime.whereis(workflow_name(wid)) is None  # it stopped when done


async def test_it_survives_killing_agents_the_workflow_process_and_the_coordinator(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    wid = await start_workflow(five_steps(), {"x": "hello"})
    await runtime.clock.sleep(0.5)  # step a is running on some agent
    for agent in ("w0", "w1", "w2"):
        crash(runtime.whereis(agent))  # type: ignore[arg-type]
    await runtime.clock.sleep(1.2)
    old = runtime.whereis(workflow_name(wid))
    assert old is not None
    crash(old)
    await restarted(workflow_name(wid), old)
    await runtime.clock.sleep(0.3)
    coordinator = runtime.whereis(COORDINATOR)
    assert coordinator is not None
    crash(coordinator)
    entry = await await_workflow(wid, timeout=60)
    assert entry.status == "completed"
    await check_five(wid)


async def test_completed_steps_never_run_again_after_a_workflow_crash(runtime: Runtime) -> None:
    await start_system(runtime, agents=1)
    wid = await start_workflow(five_steps("t"), {"x": 1})
    await runtime.clock.sleep(3.2)  # one agent: a, b, c done one after the other; d running
    old = runtime.whereis(workflow_name(wid))
    crash(old)  # type: ignore[arg-type]
    assert (await await_workflow(wid)).status == "completed"
    state = (await runtime.store.load("agent/Worker/w0")).data
    assert state["runs"] == {"t": 4}  # a, b, c, e: each once (d is `total`)
    status = await workflow_status(wid)
    assert {k: s.attempts for k, s in status.steps.items()} == {
        "a": 1, "b": 1, "c": 1, "d": 2, "e": 1
    }  # fmt: skip


async def test_a_hundred_workflows_lose_nothing_under_twenty_random_kills(
    runtime: Runtime,
) -> None:
    await start_system(runtime, agents=4)
    ids = [await start_workflow(five_steps(seconds=0.01), {"x": i}) for i in range(100)]
    rng = random.Random(20)

    async def chaos() -> None:
        for _ in range(20):
            await runtime.clock.sleep(rng.uniform(0.005, 0.05))
            targets = [runtime.whereis(f"w{i}") for i in range(4)]
            targets += [runtime.whereis(workflow_name(w)) for w in rng.sample(ids, 3)]
            targets.append(runtime.whereis(COORDINATOR))
            live = [t for t in targets if t is not None]
            crash(rng.choice(live))

    monkey = spawn(chaos)
    for i, wid in enumerate(ids):
        entry = await await_workflow(wid, timeout=600)
        assert entry.status == "completed", entry.error
        await check_five(wid, x=i)
    await wait_exit(monkey)
    assert len(await list_workflows("completed")) == 100


async def test_cancel_really_stops_the_running_steps(runtime: Runtime) -> None:
    await start_system(runtime)
    wid = await start_workflow(five_steps(), {"x": 1})
    await runtime.clock.sleep(0.5)
    assert await cancel_workflow(wid) == "cancelled"
    status = await workflow_status(wid)
    assert status.status == "cancelled"
    assert runtime.whereis(workflow_name(wid)) is None
    behaviours = [p.behaviour for p in runtime.processes()]
    assert "_run_step" not in " ".join(behaviours)


async def test_an_empty_workflow_completes(runtime: Runtime) -> None:
    await start_system(runtime)
    wid = await start_workflow({"name": "empty", "steps": []})
    assert (await await_workflow(wid)).status == "completed"


async def test_bad_definitions_are_clear_errors_and_start_nothing(runtime: Runtime) -> None:
    await start_system(runtime)
    step = {"capability": "fetch", "action": "work"}
    with pytest.raises(InvalidWorkflow, match=r"unknown steps \['zz'\]"):
        await start_workflow({"steps": [{**step, "id": "a", "depends_on": ["zz"]}]})
    with pytest.raises(InvalidWorkflow, match="cycle: a -> b -> a"):
        await start_workflow(
            {
                "steps": [
                    {**step, "id": "a", "depends_on": ["b"]},
                    {**step, "id": "b", "depends_on": ["a"]},
                ]
            }
        )
    with pytest.raises(InvalidWorkflow, match="duplicate"):
        await start_workflow({"steps": [{**step, "id": "a"}, {**step, "id": "a"}]})
    with pytest.raises(UnknownCapability, match="teleport"):
        await start_workflow({"steps": [{"id": "a", "capability": "teleport", "action": "x"}]})
    with pytest.raises(ValidationError, match="capability or agent"):
        await start_workflow({"steps": [{"id": "a", "action": "x"}]})
    assert await list_workflows() == {}


async def test_a_step_with_bad_params_fails_its_workflow_and_others_go_on(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    bad = await start_workflow(
        {"steps": [{"id": "s", "agent": "w0", "action": "total", "params": {"values": "x"}}]}
    )
    good = await start_workflow(five_steps(), {"x": 5})
    entry = await await_workflow(bad)
    assert entry.status == "failed"
    assert "values" in (entry.error or "")
    assert (await await_workflow(good)).status == "completed"


async def test_unknown_workflow_ids_are_workflow_not_found(runtime: Runtime) -> None:
    await start_system(runtime)
    with pytest.raises(WorkflowNotFound):
        await await_workflow("nope")
    with pytest.raises(WorkflowNotFound):
        await workflow_status("nope")
    with pytest.raises(WorkflowNotFound):
        await cancel_workflow("nope")


def test_a_workflow_half_done_when_the_runtime_stops_finishes_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wf.db"
    definition = five_steps("r", seconds=0.01)
    # e waits for an agent that only the second runtime has: the stop finds no step mid-run
    definition["steps"][4] = {
        **definition["steps"][4],
        "capability": None,
        "agent": "late",
        "retry": {"max_attempts": 10_000, "backoff": 0.005, "max_backoff": 0.02},
    }

    def step_status(workflow_id: str, step: str) -> str:
        conn = sqlite3.connect(path)
        try:
            row = conn.execute(
                "SELECT data FROM foundation_state WHERE key = ?", (f"workflow/{workflow_id}",)
            ).fetchone()
        finally:
            conn.close()
        return str(json.loads(row[0])["steps"][step]["status"]) if row else "none"

    async def first() -> str:
        async with Runtime(store=SQLiteStore(path)) as rt:
            await start_system(rt, rt.store)
            wid = await start_workflow(definition, {"x": "again"})
            await wait_until(lambda: step_status(wid, "d") == "completed", timeout=30)
            return wid

    async def second(wid: str) -> None:
        async with Runtime(store=SQLiteStore(path)) as rt:
            await start_system(rt, rt.store)
            await start_agent(Worker, "late")
            assert (await await_workflow(wid)).status == "completed"
            await check_five(wid, x="again")
            runs = [
                (await rt.store.load(f"agent/Worker/{a}")).data["runs"].get("r", 0)
                for a in ("w0", "w1", "w2", "late")
            ]
            assert sum(runs[:3]) == 3  # a, b, c before the stop, each once
            assert runs[3] == 1  # e, after the restart

    wid = asyncio.run(first())
    asyncio.run(second(wid))


def test_workflow_definitions_validate_on_their_own() -> None:
    wf = Workflow.model_validate(five_steps())
    wf.validate_graph()
    assert [s.id for s in wf.steps] == ["a", "b", "c", "d", "e"]
