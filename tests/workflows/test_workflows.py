"""The seed's end-to-end scenarios: workflows finish through crashes of any part, each step
result recorded exactly once."""

from __future__ import annotations

import random

import pytest

from foundation import Runtime, Supervisor, spawn
from foundation.agents import AgentSupervisor, find_agents, start_agent
from foundation.cli import demo_agents
from foundation.cli.demo_agents import expected_results
from foundation.kernel.api import wait_exit
from foundation.testing import assert_emitted, crash, restarted, wait_until
from foundation.workflows import (
    COORDINATOR,
    WorkflowSystem,
    await_workflow,
    list_workflows,
    start_workflow,
    workflow_status,
)
from foundation.workflows.process import workflow_name
from foundation.workflows.supervisor import WORKFLOW_SUPERVISOR

from ._support import RecordingStore, check_five, five_steps, start_system


async def test_a_five_step_workflow_with_parallel_steps_completes_with_five_results(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    start = runtime.clock.now()
    wid = await start_workflow(five_steps(), {"x": "hello"})
    assert (await list_workflows("running")).keys() == {wid}
    entry = await await_workflow(wid)
    assert entry.status == "completed"
    await check_five(wid)
    # a (1s), then b and c in parallel (1s), d (0.5s), e (1s)
    assert runtime.clock.now() - start == pytest.approx(3.5, abs=0.1)
    assert (await list_workflows("completed")).keys() == {wid}
    assert await list_workflows("running") == {}
    assert runtime.whereis(workflow_name(wid)) is None  # it stopped when done
    status = await workflow_status(wid)
    assert {k: s.attempts for k, s in status.steps.items()} == dict.fromkeys("abcde", 1)
    assert status.finished_at is not None


async def test_it_survives_killing_the_agents_the_workflow_process_and_the_coordinator(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    store = runtime.store
    assert isinstance(store, RecordingStore)
    start = runtime.clock.now()
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
    assert store.completions(wid) == dict.fromkeys("abcde", 1)
    assert runtime.clock.now() - start < 10  # the seed: completes within 10 s with 5 results


async def test_a_killed_workflow_supervisor_takes_the_coordinator_along_and_all_resume(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    ids = [await start_workflow(five_steps(), {"x": i}) for i in range(3)]
    await runtime.clock.sleep(1.5)
    coordinator = runtime.whereis(COORDINATOR)
    old = [runtime.whereis(workflow_name(w)) for w in ids]
    crash(runtime.whereis(WORKFLOW_SUPERVISOR))  # type: ignore[arg-type]
    await restarted(COORDINATOR, coordinator)
    await wait_until(lambda: all(runtime.whereis(workflow_name(w)) is not None for w in ids))
    assert not {runtime.whereis(workflow_name(w)) for w in ids} & set(old)  # all new processes
    for i, wid in enumerate(ids):
        assert (await await_workflow(wid)).status == "completed"
        await check_five(wid, x=i)
        assert runtime.store.completions(wid) == dict.fromkeys("abcde", 1)  # type: ignore[attr-defined]


async def test_completed_steps_never_run_again_after_a_workflow_crash(runtime: Runtime) -> None:
    await start_system(runtime, agents=1)
    wid = await start_workflow(five_steps("t"), {"x": 1})
    await runtime.clock.sleep(3.2)  # one agent: a, b, c done one after the other; d running
    crash(runtime.whereis(workflow_name(wid)))  # type: ignore[arg-type]
    assert (await await_workflow(wid)).status == "completed"
    state = (await runtime.store.load("agent/Worker/w0")).data
    assert state["runs"] == {"t": 4}  # a, b, c, e: each once (d is `total`)
    assert state["keys"] == {f"{wid}:{s}": 1 for s in "abce"}
    status = await workflow_status(wid)
    assert {k: s.attempts for k, s in status.steps.items()} == {
        "a": 1, "b": 1, "c": 1, "d": 2, "e": 1
    }  # fmt: skip


async def test_a_step_running_at_a_crash_runs_again_with_the_same_idempotency_key(
    runtime: Runtime,
) -> None:
    await start_system(runtime, agents=1)
    wid = await start_workflow(five_steps("k"), {"x": 1})
    await runtime.clock.sleep(0.5)  # a is running
    crash(runtime.whereis(workflow_name(wid)))  # type: ignore[arg-type]
    assert (await await_workflow(wid)).status == "completed"
    keys = (await runtime.store.load("agent/Worker/w0")).data["keys"]
    # the first run of a finished in the agent after the crash; the second is the retry
    assert keys[f"{wid}:a"] == 2
    assert runtime.store.completions(wid) == dict.fromkeys("abcde", 1)  # type: ignore[attr-defined]


async def test_a_hundred_workflows_lose_nothing_under_twenty_random_kills(
    runtime: Runtime,
) -> None:
    await start_system(runtime, agents=4)
    store = runtime.store
    assert isinstance(store, RecordingStore)
    ids = [
        await start_workflow(five_steps(seconds=0.01), {"x": i}, workflow_id=f"wf-{i}")
        for i in range(100)
    ]
    rng = random.Random(20)
    kills: list[str] = []

    async def chaos() -> None:
        for _ in range(20):
            await runtime.clock.sleep(rng.uniform(0.005, 0.05))
            targets = [(f"w{i}", runtime.whereis(f"w{i}")) for i in range(4)]
            targets += [(w, runtime.whereis(workflow_name(w))) for w in rng.sample(ids, 3)]
            targets.append(("coordinator", runtime.whereis(COORDINATOR)))
            live = [t for t in targets if t[1] is not None]
            what, pid = rng.choice(live)
            kills.append(what)
            crash(pid)  # type: ignore[arg-type]

    monkey = spawn(chaos)
    for i, wid in enumerate(ids):
        entry = await await_workflow(wid, timeout=600)
        assert entry.status == "completed", entry.error
        await check_five(wid, x=i)
        assert store.completions(wid) == dict.fromkeys("abcde", 1)
    await wait_exit(monkey)
    assert len(kills) == 20
    assert len(await list_workflows("completed")) == 100


async def test_the_demo_pipeline_on_task_agents_survives_their_kills(runtime: Runtime) -> None:
    runtime.store = RecordingStore()
    await Supervisor.start_link(
        [*AgentSupervisor.child_specs(), *WorkflowSystem.child_specs()], max_restarts=100
    )
    for cls, count in demo_agents.worker_types():
        for i in range(count):
            await start_agent(cls, f"{cls.capabilities[0]}-{i + 1}")
    steps = {"name": "pipeline", "steps": demo_agents.pipeline_steps()}
    ids = [await start_workflow(steps, {"item": i}) for i in range(10)]
    await runtime.clock.sleep(demo_agents.STAGE_TIME / 2)
    for agent in find_agents():  # every TaskAgent, each in the middle of a step
        crash(agent.pid)
    crash(runtime.whereis(workflow_name(ids[0])))  # type: ignore[arg-type]
    crash(runtime.whereis(COORDINATOR))  # type: ignore[arg-type]
    with assert_emitted(("foundation", "workflow", "stop")) as emitted:
        for i, wid in enumerate(ids):
            assert (await await_workflow(wid)).status == "completed"
            status = await workflow_status(wid)
            assert {k: s.result for k, s in status.steps.items()} == expected_results(i)
            assert runtime.store.completions(wid) == dict.fromkeys(expected_results(i), 1)
    stops = emitted.matching(("foundation", "workflow", "stop"), None)
    assert {m["status"] for _, _, m in stops} == {"completed"}
