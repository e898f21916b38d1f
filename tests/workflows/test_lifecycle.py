"""A workflow's life: cancel, empty, unknown ids, timeouts, failing steps, retries, corrupt
records, the coordinator's memory and a whole-runtime restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foundation import Runtime, Supervisor
from foundation.agents import set_health, start_agent
from foundation.errors import CallTimeout, InvalidArgument, StateCorrupt, WorkflowNotFound
from foundation.persistence import MemoryStore, SQLiteStore
from foundation.testing import crash, wait_until
from foundation.workflows import (
    COORDINATOR,
    WorkflowSystem,
    await_workflow,
    cancel_workflow,
    list_workflows,
    start_workflow,
    workflow_status,
)
from foundation.workflows.process import workflow_name

from ._support import Worker, check_five, five_steps, in_fresh_runtime, start_system


def runners(runtime: Runtime) -> list[Any]:
    return [p for p in runtime.processes() if p.behaviour == "_run_step"]


def one_step(action: str, params: dict[str, Any] | None = None, **step: Any) -> dict[str, Any]:
    return {
        "name": action,
        "steps": [{"id": "s", "agent": "w0", "action": action, "params": params or {}, **step}],
    }


async def test_cancel_really_stops_the_running_steps(runtime: Runtime) -> None:
    await start_system(runtime)
    wid = await start_workflow(five_steps(), {"x": 1})
    await runtime.clock.sleep(1.5)  # b and c are running
    assert len(runners(runtime)) == 2
    assert await cancel_workflow(wid) == "cancelled"
    assert runners(runtime) == []
    assert runtime.whereis(workflow_name(wid)) is None
    status = await workflow_status(wid)
    assert status.status == "cancelled"
    assert [s.status for s in status.steps.values()] == [
        "completed", "running", "running", "pending", "pending"
    ]  # fmt: skip
    assert (await await_workflow(wid)).status == "cancelled"
    assert await cancel_workflow(wid) == "cancelled"  # again: its status, nothing else


async def test_a_cancel_holds_while_the_workflow_or_the_coordinator_restarts(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    first = await start_workflow(five_steps(), {"x": 1})
    second = await start_workflow(five_steps(), {"x": 2})
    await runtime.clock.sleep(0.5)
    crash(runtime.whereis(workflow_name(first)))  # type: ignore[arg-type]
    assert await cancel_workflow(first) == "cancelled"
    crash(runtime.whereis(COORDINATOR))  # type: ignore[arg-type]
    assert await cancel_workflow(second) == "cancelled"
    assert runners(runtime) == []
    assert (await list_workflows("cancelled")).keys() == {first, second}


async def test_a_finished_workflow_is_not_cancelled(runtime: Runtime) -> None:
    await start_system(runtime)
    wid = await start_workflow(five_steps(seconds=0.1), {"x": 1})
    await await_workflow(wid)
    assert await cancel_workflow(wid) == "completed"


async def test_an_empty_workflow_completes_at_once(runtime: Runtime) -> None:
    await start_system(runtime)
    start = runtime.clock.now()
    wid = await start_workflow({"name": "empty", "steps": []})
    entry = await await_workflow(wid)
    assert entry.status == "completed"
    assert entry.error is None
    assert runtime.clock.now() == start
    assert runtime.whereis(workflow_name(wid)) is None


async def test_unknown_workflow_ids_are_workflow_not_found(runtime: Runtime) -> None:
    await start_system(runtime)
    with pytest.raises(WorkflowNotFound, match="'nope'"):
        await await_workflow("nope")
    with pytest.raises(WorkflowNotFound):
        await workflow_status("nope")
    with pytest.raises(WorkflowNotFound):
        await cancel_workflow("nope")


async def test_await_workflow_times_out_with_call_timeout_and_the_workflow_goes_on(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    wid = await start_workflow(five_steps(), {"x": "hello"})
    with pytest.raises(CallTimeout, match=f"await_workflow '{wid}': no answer within 1.0s"):
        await await_workflow(wid, timeout=1.0)
    assert (await await_workflow(wid)).status == "completed"
    await check_five(wid)


async def test_starting_with_the_same_id_again_starts_nothing(runtime: Runtime) -> None:
    await start_system(runtime)
    assert await start_workflow(five_steps(), {"x": 1}, workflow_id="order-7") == "order-7"
    assert await start_workflow(five_steps(), {"x": 1}, workflow_id="order-7") == "order-7"
    assert (await await_workflow("order-7")).status == "completed"
    assert len(await list_workflows()) == 1


async def test_a_step_with_bad_params_fails_its_workflow_and_others_go_on(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    good = await start_workflow(five_steps(), {"x": 5})
    bad = await start_workflow(one_step("total", {"values": "x"}))
    entry = await await_workflow(bad)
    assert entry.status == "failed"
    assert entry.error is not None
    assert "step 's' failed: invalid params for 'w0'.total: values" in entry.error
    step = (await workflow_status(bad)).steps["s"]
    assert step.attempts == 1  # a ValidationError is not retried
    assert step.error is not None and step.error["code"] == "validation_error"
    assert (await await_workflow(good)).status == "completed"


async def test_a_business_error_is_not_retried_and_an_unknown_action_fails_clearly(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    refused = await start_workflow(one_step("refuse"))
    unknown = await start_workflow(one_step("fly"))
    assert "never acceptable" in ((await await_workflow(refused)).error or "")
    assert (await workflow_status(refused)).steps["s"].attempts == 1
    assert "has no action 'fly'" in ((await await_workflow(unknown)).error or "")


async def test_retryable_errors_are_retried_by_the_step_policy(runtime: Runtime) -> None:
    await start_system(runtime)
    retry = {"max_attempts": 5, "backoff": 1.0, "multiplier": 2}
    start = runtime.clock.now()
    wid = await start_workflow(one_step("flaky", {"key": "k1", "failures": 2}, retry=retry))
    assert (await await_workflow(wid)).status == "completed"
    step = (await workflow_status(wid)).steps["s"]
    assert (step.result, step.attempts) == (3, 3)  # fail twice then succeed: 3 calls
    assert runtime.clock.now() - start == pytest.approx(3.0)  # waits of 1 s then 2 s
    given_up = await start_workflow(
        one_step("flaky", {"key": "k2", "failures": 10}, retry={"max_attempts": 3})
    )
    entry = await await_workflow(given_up)
    assert entry.status == "failed"
    assert "call 3 of 'k2' refused (after 3 attempts)" in (entry.error or "")


async def test_a_step_waits_for_a_healthy_agent_with_its_capability(runtime: Runtime) -> None:
    await start_system(runtime, agents=1)
    await set_health("w0", "unhealthy")  # registered, so the workflow is valid, but not usable
    retry = {"max_attempts": 100, "backoff": 0.5, "multiplier": 1}
    step = {"id": "s", "capability": "fetch", "action": "work", "retry": retry}
    wid = await start_workflow({"steps": [step]})
    await runtime.clock.sleep(3)
    status = (await workflow_status(wid)).steps["s"]
    assert status.status == "running"
    await set_health("w0", "healthy")
    assert (await await_workflow(wid)).status == "completed"
    assert (await workflow_status(wid)).steps["s"].agent == "w0"


async def test_a_step_waits_for_its_agent_to_start(runtime: Runtime) -> None:
    await start_system(runtime, agents=1)
    retry = {"max_attempts": 100, "backoff": 0.5, "multiplier": 1}
    wid = await start_workflow({"steps": [{"id": "s", "agent": "w9", "action": "work",
                                           "retry": retry}]})  # fmt: skip
    await runtime.clock.sleep(3)
    await start_agent(Worker, "w9")
    assert (await await_workflow(wid)).status == "completed"
    step = (await workflow_status(wid)).steps["s"]
    assert step.agent == "w9"
    assert step.attempts == 8  # 0, 0.5, ..., 3.0 refused (NoProcess), then run at 3.5


async def test_a_result_that_cannot_be_stored_fails_the_step_clearly(runtime: Runtime) -> None:
    await start_system(runtime)
    wid = await start_workflow(one_step("blob"))
    entry = await await_workflow(wid)
    assert entry.status == "failed"
    assert "'w0'.blob returned a result that is not JSON-ready" in (entry.error or "")


async def test_a_corrupt_record_is_a_clear_error_and_others_are_served(runtime: Runtime) -> None:
    await start_system(runtime)
    wid = await start_workflow(five_steps(seconds=0.1), {"x": 1})
    await await_workflow(wid)
    rec = await runtime.store.load(f"workflow/{wid}")
    await runtime.store.save(f"workflow/{wid}", {"steps": "garbage"}, rec.version)
    with pytest.raises(StateCorrupt, match=f"workflow '{wid}' no longer validates"):
        await workflow_status(wid)
    assert (await await_workflow(wid)).status == "completed"  # the coordinator remembers
    crash(runtime.whereis(COORDINATOR))  # type: ignore[arg-type]
    other = await start_workflow(five_steps(seconds=0.1), {"x": 2})
    assert (await await_workflow(other)).status == "completed"
    with pytest.raises(StateCorrupt, match=f"workflow '{wid}' no longer validates"):
        await await_workflow(wid)  # a restarted coordinator reads the record


def test_a_running_workflow_whose_record_is_corrupt_fails_at_the_restart() -> None:
    store = MemoryStore()
    waiting = one_step("work", {"seconds": 0.1})
    waiting["steps"][0].update(agent="late", retry={"max_attempts": 10_000, "backoff": 0.01})

    async def first(rt: Runtime) -> list[str]:
        await start_system(rt, rt.store)
        return [await start_workflow(waiting) for _ in range(2)]

    async def second(rt: Runtime, bad: str, good: str) -> None:
        rec = await store.load(f"workflow/{bad}")
        await store.save(f"workflow/{bad}", {"status": 7}, rec.version)  # type: ignore[union-attr]
        await start_system(rt, rt.store)
        await start_agent(Worker, "late")
        entry = await await_workflow(bad)
        assert entry.status == "failed"
        assert f"workflow '{bad}' no longer validates" in (entry.error or "")
        assert (await await_workflow(good)).status == "completed"
        assert (await list_workflows("failed")).keys() == {bad}

    bad, good = in_fresh_runtime(store, first)
    in_fresh_runtime(store, lambda rt: second(rt, bad, good))


async def test_the_coordinator_keeps_a_bounded_number_of_finished_workflows(
    runtime: Runtime,
) -> None:
    await start_system(runtime, keep_finished=3)
    ids = [await start_workflow({"name": f"e{i}", "steps": []}) for i in range(6)]
    for wid in ids:
        await await_workflow(wid)
    assert len(await list_workflows("completed")) == 3
    entry = await await_workflow(ids[0])  # answered from its record
    assert (entry.status, entry.name) == ("completed", "e0")
    assert (await workflow_status(ids[0])).status == "completed"


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_workflow_half_done_when_the_runtime_stops_finishes_after_a_restart(
    backend: str, tmp_path: Path
) -> None:
    def store() -> Any:
        return memory if backend == "memory" else SQLiteStore(tmp_path / "wf.db")

    memory = MemoryStore()
    definition = five_steps("r", seconds=0.01)
    # e needs an agent that only the second runtime has: it is still trying at the stop
    definition["steps"][4] = {
        **definition["steps"][4],
        "capability": None,
        "agent": "late",
        "retry": {"max_attempts": 10_000, "backoff": 0.005, "max_backoff": 0.02},
    }

    async def first(rt: Runtime) -> str:
        await start_system(rt, rt.store)
        wid = await start_workflow(definition, {"x": "again"})
        await wait_until(lambda: rt.whereis(workflow_name(wid)) is not None, timeout=30)

        async def d_done() -> bool:
            return (await workflow_status(wid)).steps["d"].status == "completed"

        while not await d_done():
            await rt.clock.sleep(0.01)
        return wid

    async def second(rt: Runtime, wid: str) -> None:
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

    wid = in_fresh_runtime(store(), first)
    in_fresh_runtime(store(), lambda rt: second(rt, wid))


async def test_a_second_workflow_system_runs_its_own_workflows(runtime: Runtime) -> None:
    await start_system(runtime)
    await Supervisor.start_link(WorkflowSystem.child_specs(name="ops", supervisor="ops.sup"))
    mine = await start_workflow(five_steps(seconds=0.1), {"x": 1}, coordinator="ops")
    theirs = await start_workflow(five_steps(seconds=0.1), {"x": 2})
    assert (await await_workflow(mine, coordinator="ops")).status == "completed"
    assert (await await_workflow(theirs)).status == "completed"
    assert (await list_workflows(coordinator="ops")).keys() == {mine}
    assert (await list_workflows()).keys() == {theirs}
    crash(runtime.whereis("ops"))  # type: ignore[arg-type]
    assert (await list_workflows(coordinator="ops")).keys() == {mine}  # from the records
    slow = await start_workflow(five_steps(), {"x": 3}, coordinator="ops")
    crash(runtime.whereis(COORDINATOR))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="is run by the coordinator 'ops'"):
        await await_workflow(slow)
    assert (await await_workflow(slow, coordinator="ops")).status == "completed"
