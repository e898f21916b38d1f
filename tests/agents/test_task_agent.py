"""TaskAgent: a task leaves the durable queue only when done; in-flight tasks survive crashes."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import pytest

from foundation import Runtime, Supervisor
from foundation.agents import AgentSupervisor, TaskAgent, TaskRecord, run, start_agent
from foundation.errors import NotFound, Overloaded, ReceiveTimeout, ValidationError
from foundation.kernel.api import receive
from foundation.persistence import MemoryStore
from foundation.testing import crash, get_state, restarted


class Worker(TaskAgent):
    """Tasks: ``work`` takes ``seconds`` of (virtual) time, ``fail`` raises."""

    capabilities = ("work",)
    max_concurrent = 2
    task_timeout = 60.0
    max_error_threshold = 3
    max_queue = 20

    async def perform(self, task: TaskRecord) -> Any:
        seconds = task.payload.get("seconds", 0)
        if seconds:
            with contextlib.suppress(ReceiveTimeout):
                await receive(timeout=seconds)
        if task.type == "fail":
            raise RuntimeError(f"task {task.id} fails on purpose")
        if task.type == "opaque":
            return object()
        return {"attempt": task.attempts, "key": task.idempotency_key, **task.payload}


class Slow(Worker):
    task_timeout = 5.0


async def start_system(runtime: Runtime) -> MemoryStore:
    store = MemoryStore()
    runtime.store = store
    await Supervisor.start_link(AgentSupervisor.child_specs())
    return store


async def queue(agent: str, type_: str = "work", **payload: Any) -> str:
    task_id = await run(agent, "queue_task", {"type": type_, "payload": payload})
    assert isinstance(task_id, str)
    return task_id


async def test_queued_tasks_complete_and_their_outcomes_are_kept(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    ids = [await queue("w", n=i) for i in range(5)]
    await TaskAgent.complete_all_sync("w")
    for i, task_id in enumerate(ids):
        status = await run("w", "task_status", {"id": task_id})
        assert status["status"] == "completed"
        assert status["result"] == {"attempt": 1, "key": task_id, "n": i}
    stats = await run("w", "stats")
    assert (stats.queued, stats.running, stats.processed, stats.failed) == (0, 0, 5, 0)


async def test_at_most_max_concurrent_tasks_run_at_once(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    for _ in range(5):
        await queue("w", seconds=10)
    stats = await run("w", "stats")
    assert (stats.running, stats.queued) == (2, 3)
    start = runtime.clock.now()
    await TaskAgent.complete_all_sync("w", timeout=100)
    assert runtime.clock.now() - start == pytest.approx(30.0)  # three rounds of two


async def test_g1_3f4_a_killed_task_agent_comes_back_with_the_same_ten_queued_tasks(
    runtime: Runtime,
) -> None:
    store = await start_system(runtime)
    pid = await start_agent(Worker, "w")
    await run("w", "pause")
    ids = [await queue("w", n=i) for i in range(10)]
    crash(pid)
    await restarted("w", pid)
    state = await get_state("w")
    assert [t.id for t in state.queue] == ids
    assert (await run("w", "stats")).paused
    await run("w", "resume")
    await TaskAgent.complete_all_sync("w")
    assert (await run("w", "stats")).processed == 10
    assert (await store.load("agent/Worker/w")).data["queue"] == []  # type: ignore[union-attr]


async def test_tasks_in_flight_at_a_crash_run_again_with_the_next_attempt_number(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    pid = await start_agent(Worker, "w")
    first = await queue("w", seconds=10)
    second = await queue("w", seconds=10)
    assert (await run("w", "stats")).running == 2
    crash(pid)  # the runners die with their agent
    await restarted("w", pid)
    await TaskAgent.complete_all_sync("w", timeout=100)
    for task_id in (first, second):
        status = await run("w", "task_status", {"id": task_id})
        assert (status["status"], status["attempts"]) == ("completed", 2)
        assert status["result"]["attempt"] == 2
        assert status["result"]["key"] == task_id


async def test_a_failing_task_is_recorded_as_failed_and_the_agent_keeps_running(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    pid = await start_agent(Worker, "w")
    bad = await queue("w", "fail")
    opaque = await queue("w", "opaque")
    good = await queue("w")
    await TaskAgent.complete_all_sync("w")
    failed = await run("w", "task_status", {"id": bad})
    assert failed["status"] == "failed"
    assert "fails on purpose" in failed["error"]["message"]
    assert (await run("w", "task_status", {"id": opaque}))["status"] == "failed"
    assert (await run("w", "task_status", {"id": good}))["status"] == "completed"
    assert runtime.is_alive(pid)


async def test_consecutive_errors_pause_the_agent_until_resumed(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    await run("w", "pause")
    for _ in range(4):
        await queue("w", "fail")
    later = await queue("w")
    await run("w", "resume")
    await TaskAgent.complete_all_sync("w")
    stats = await run("w", "stats")
    assert stats.paused
    assert stats.pause_reason == "3 consecutive task errors"
    assert stats.failed == 4  # the fourth was already running when the third paused it
    assert (await run("w", "task_status", {"id": later}))["status"] == "queued"
    await run("w", "resume")
    await TaskAgent.complete_all_sync("w")
    assert (await run("w", "task_status", {"id": later}))["status"] == "completed"


async def test_a_task_over_its_timeout_fails_with_a_timeout_error(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Slow, "s")
    task_id = await queue("s", seconds=50)
    await TaskAgent.complete_all_sync("s", timeout=100)
    status = await run("s", "task_status", {"id": task_id})
    assert (status["status"], status["error"]["code"]) == ("failed", "timeout")


async def test_an_idempotency_key_queues_a_task_once(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    params = {"type": "work", "idempotency_key": "order-7"}
    first = await run("w", "queue_task", params)
    assert await run("w", "queue_task", params) == first
    await TaskAgent.complete_all_sync("w")
    assert await run("w", "queue_task", params) == first
    assert (await run("w", "stats")).processed == 1


async def test_high_priority_tasks_go_to_the_front(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    await run("w", "pause")
    normal = await queue("w")
    urgent = await run("w", "queue_task", {"type": "work", "priority": "high"})
    state = await get_state("w")
    assert [t.id for t in state.queue] == [urgent, normal]


async def test_a_full_queue_is_refused_with_overloaded(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    await run("w", "pause")
    for _ in range(Worker.max_queue):
        await queue("w")
    with pytest.raises(Overloaded, match="full"):
        await queue("w")


async def test_bad_requests_are_clear_errors(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Worker, "w")
    with pytest.raises(ValidationError, match="type"):
        await run("w", "queue_task", {"payload": {}})
    with pytest.raises(NotFound, match="no task"):
        await run("w", "task_status", {"id": "w-999"})


class Unimplemented(TaskAgent):
    capabilities: ClassVar[tuple[str, ...]] = ("nothing",)


async def test_an_agent_without_perform_fails_its_tasks_saying_so(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Unimplemented, "u")
    task_id = await run("u", "queue_task", {"type": "x"})
    await TaskAgent.complete_all_sync("u")
    status = await run("u", "task_status", {"id": task_id})
    assert "must override perform" in status["error"]["message"]
