"""TaskSupervisor: async_, async_nolink, start_child, async_stream and run_sync, on virtual time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from foundation import (
    DynamicSupervisor,
    Exit,
    GenServer,
    Reply,
    Runtime,
    TaskSupervisor,
    call,
    cast,
    current_pid,
    exit,
    is_alive,
    receive,
    send,
    spawn,
)
from foundation.errors import CallTimeout, InvalidArgument, NoProcess, ProcessExited
from foundation.kernel.api import wait_exit
from foundation.kernel.pid import Pid
from foundation.testing import crash, sync, wait_until


class Counter(GenServer):
    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state, state)

    async def handle_cast(self, request: int, state: int) -> int:
        return state + request


class Caller(GenServer):
    """Runs ``async_nolink`` tasks from its own process and reports how they ended."""

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        sup, fn, timeout = request
        task = await TaskSupervisor.async_nolink(sup, fn)
        try:
            return Reply(("ok", await task.result(timeout)), state)
        except (ProcessExited, CallTimeout) as err:
            return Reply(("error", err), state)


def live_tasks(runtime: Runtime) -> list[Pid]:
    return [p.pid for p in runtime.processes() if p.behaviour.startswith("Task(")]


async def boom() -> None:
    raise RuntimeError("task failed")


async def forever() -> None:
    await receive()


# -- async_, async_nolink, start_child ------------------------------------------------------------


async def test_async_returns_the_result_of_an_async_or_a_plain_function(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start(name="tasks")

    async def double(x: int) -> int:
        await runtime.clock.sleep(1.0)
        return x * 2

    task = await TaskSupervisor.async_(sup, double, 21)
    assert await task == 42
    assert task.done()
    assert await (await TaskSupervisor.async_("tasks", lambda a, b: a + b, 1, 2)) == 3
    assert await (await TaskSupervisor.async_nolink(sup, double, 5)).result(timeout=2.0) == 10
    assert runtime.clock.now() == pytest.approx(2.0)
    await wait_until(lambda: not live_tasks(runtime))


async def test_a_crashing_async_task_kills_its_linked_non_trapping_caller(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()

    async def caller() -> None:
        await TaskSupervisor.async_(sup, boom)
        await receive()  # never awaits the task: the link alone ends this process

    pid = spawn(caller)
    reason = await wait_exit(pid)
    assert isinstance(reason, RuntimeError) and str(reason) == "task failed"
    assert is_alive(sup)


async def test_a_trapping_caller_gets_an_exit_message_from_its_crashed_async_task(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    seen: list[Any] = []

    async def caller() -> None:
        task = await TaskSupervisor.async_(sup, boom)
        msg = await receive()
        seen.append((msg, task.pid))
        try:
            await task
        except ProcessExited as err:
            seen.append(err)

    pid = spawn(caller, trap_exit=True)
    assert await wait_exit(pid) == "normal"
    (msg, task_pid), err = seen
    assert isinstance(msg, Exit) and msg.pid is task_pid
    assert isinstance(msg.reason, RuntimeError)
    assert isinstance(err, ProcessExited) and err.__cause__ is msg.reason


async def test_an_async_task_dies_with_its_caller(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()
    tasks: list[Pid] = []

    async def caller() -> None:
        tasks.append((await TaskSupervisor.async_(sup, forever)).pid)
        await receive()

    pid = spawn(caller)
    await wait_until(lambda: tasks)
    task_exit = wait_exit(tasks[0])
    await crash(pid)
    assert await task_exit == "killed"


async def test_an_async_task_for_a_caller_that_died_meanwhile_never_runs(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    ran: list[int] = []

    class SlowInit(GenServer):
        async def init(self, args: Any) -> Any:
            await runtime.clock.sleep(1.0)  # keeps the supervisor busy in start_child
            return args

    async def occupy() -> None:
        await DynamicSupervisor.start_child(sup, SlowInit.child_spec(None))

    async def caller() -> None:
        exit(current_pid(), "kill")  # takes effect once the start request is queued
        await TaskSupervisor.async_(sup, lambda: ran.append(1))

    spawn(occupy)
    caller_exit = wait_exit(spawn(caller))
    assert await caller_exit == "killed"
    await sync(sup)  # the supervisor has now handled the dead caller's request
    await wait_until(lambda: not live_tasks(runtime))
    assert ran == []
    assert [c.id for c in await DynamicSupervisor.which_children(sup)] == [None]  # SlowInit


async def test_async_nolink_failure_raises_process_exited_with_the_cause_and_caller_survives(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    owner = await Caller.start(None)
    status, err = await call(owner, (sup, boom, None))
    assert status == "error" and isinstance(err, ProcessExited)
    assert isinstance(err.__cause__, RuntimeError) and str(err.__cause__) == "task failed"
    assert err.reason is err.__cause__
    assert is_alive(owner)
    assert await call(owner, (sup, lambda: "fine", None)) == ("ok", "fine")


async def test_task_result_timeout_raises_call_timeout_on_the_virtual_clock_and_kills_the_task(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(sup, forever)
    with pytest.raises(CallTimeout) as err:
        await task.result(timeout=2.5)
    assert runtime.clock.now() == pytest.approx(2.5)
    assert err.value.context["pid"] is task.pid
    assert await wait_exit(task.pid) == "killed"
    with pytest.raises(ProcessExited):
        await task


async def test_a_timed_out_async_task_is_killed_without_killing_its_linked_caller(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    seen: list[Any] = []

    async def caller() -> None:
        task = await TaskSupervisor.async_(sup, forever)
        try:
            await task.result(timeout=1.0)
        except CallTimeout as err:
            seen.append(err)
        seen.append(await wait_exit(task.pid))
        await receive()

    pid = spawn(caller)
    await wait_until(lambda: len(seen) == 2)
    assert isinstance(seen[0], CallTimeout) and seen[1] == "killed"
    assert is_alive(pid)
    send(pid, "done")
    assert await wait_exit(pid) == "normal"


async def test_start_child_runs_owned_fire_and_forget_work_listed_while_it_runs(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    done: list[Any] = []

    async def job(tag: str) -> None:
        done.append((tag, await receive()))

    pid = await TaskSupervisor.start_child(sup, job, "a")
    children = await DynamicSupervisor.which_children(sup)
    assert [c.pid for c in children] == [pid]
    assert children[0].restart == "temporary"
    send(pid, "go")
    await wait_exit(pid)
    assert done == [("a", "go")]
    assert await DynamicSupervisor.which_children(sup) == []
    crashing = await TaskSupervisor.start_child(sup, boom)
    await wait_exit(crashing)
    assert await DynamicSupervisor.which_children(sup) == []  # temporary: never restarted
    assert is_alive(sup)


async def test_stopping_the_task_supervisor_stops_its_tasks(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()
    pid = await TaskSupervisor.start_child(sup, forever)
    task = await TaskSupervisor.async_nolink(sup, forever)
    await GenServer.stop(sup)
    assert not is_alive(pid)
    with pytest.raises(ProcessExited):
        await task


async def test_bad_arguments_raise_invalid_argument(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()
    for start in (TaskSupervisor.async_, TaskSupervisor.async_nolink, TaskSupervisor.start_child):
        with pytest.raises(InvalidArgument, match="callable"):
            await start(sup, "not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="callable"):
        await TaskSupervisor.run_sync(sup, 42)
    with pytest.raises(InvalidArgument, match="callable"):
        await TaskSupervisor.run_sync(sup)
    with pytest.raises(InvalidArgument, match="callable"):
        TaskSupervisor.async_stream(sup, [1], 42)  # type: ignore[arg-type]
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidArgument, match="max_concurrency"):
            TaskSupervisor.async_stream(sup, [1], abs, max_concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="timeout"):
        TaskSupervisor.async_stream(sup, [1], abs, timeout=0)
    with pytest.raises(InvalidArgument, match="iterable"):
        TaskSupervisor.async_stream(sup, 42, abs)  # type: ignore[arg-type]
    with pytest.raises(NoProcess):
        await TaskSupervisor.async_("no-such-supervisor", abs, 1)
    assert live_tasks(runtime) == []


# -- async_stream ---------------------------------------------------------------------------------


def delayed(runtime: Runtime) -> Any:
    async def fn(item: tuple[str, float]) -> str:
        name, delay = item
        await runtime.clock.sleep(delay)
        return name

    return fn


async def test_async_stream_yields_results_in_item_order_when_ordered(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()
    items = [("a", 3.0), ("b", 1.0), ("c", 2.0)]
    stream = TaskSupervisor.async_stream(sup, items, delayed(runtime), max_concurrency=3)
    assert [r async for r in stream] == ["a", "b", "c"]
    assert runtime.clock.now() == pytest.approx(3.0)


async def test_async_stream_yields_results_as_they_finish_when_unordered(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    items = [("a", 3.0), ("b", 1.0), ("c", 2.0)]
    stream = TaskSupervisor.async_stream(
        sup, items, delayed(runtime), max_concurrency=3, ordered=False
    )
    assert [r async for r in stream] == ["b", "c", "a"]


@pytest.mark.parametrize("ordered", [True, False])
async def test_async_stream_never_runs_more_than_max_concurrency_tasks_at_once(
    runtime: Runtime, ordered: bool
) -> None:
    sup = await TaskSupervisor.start()
    alive: list[int] = []

    async def work(i: int) -> int:
        alive.append(len(live_tasks(runtime)))
        await runtime.clock.sleep(1.0 + (i % 3))
        alive.append(len(live_tasks(runtime)))
        return i

    stream = TaskSupervisor.async_stream(
        sup, range(20), work, max_concurrency=4, ordered=ordered, timeout=None
    )
    results = [r async for r in stream]
    assert sorted(results) == list(range(20))
    assert max(alive) == 4
    await wait_until(lambda: not live_tasks(runtime))


async def test_async_stream_starts_no_item_before_there_is_room_for_its_result(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    stream = TaskSupervisor.async_stream(sup, items(), lambda i: i, max_concurrency=2)
    assert pulled == []  # nothing runs before the consumer asks
    assert await anext(stream) == 0
    assert pulled == [0, 1]
    assert await anext(stream) == 1
    assert pulled == [0, 1, 2]
    await stream.aclose()
    assert [r async for r in stream] == []


async def test_async_stream_per_item_timeout_raises_call_timeout(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()
    items = [("fast", 1.0), ("slow", 60.0), ("never-reached", 1.0)]
    stream = TaskSupervisor.async_stream(sup, items, delayed(runtime), max_concurrency=1, timeout=5)
    assert await anext(stream) == "fast"
    with pytest.raises(CallTimeout):
        await anext(stream)
    assert runtime.clock.now() == pytest.approx(6.0)
    await wait_until(lambda: not live_tasks(runtime))


async def test_async_stream_yields_timeouts_and_failures_with_return_exceptions(
    runtime: Runtime,
) -> None:
    sup = await TaskSupervisor.start()

    async def work(item: tuple[str, float]) -> str:
        name, delay = item
        await runtime.clock.sleep(delay)
        if name == "bad":
            raise ValueError(name)
        return name

    items = [("a", 1.0), ("slow", 60.0), ("bad", 1.0), ("b", 2.0)]
    stream = TaskSupervisor.async_stream(
        sup, items, work, max_concurrency=2, timeout=5.0, return_exceptions=True
    )
    results = [r async for r in stream]
    assert results[0] == "a" and results[3] == "b"
    assert isinstance(results[1], CallTimeout)
    assert isinstance(results[2], ProcessExited) and isinstance(results[2].__cause__, ValueError)
    await wait_until(lambda: not live_tasks(runtime))


async def test_an_item_failure_raises_and_kills_the_tasks_in_flight(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()

    async def work(i: int) -> int:
        if i == 0:
            raise ValueError("item 0")
        await receive()  # would run forever
        return i

    stream = TaskSupervisor.async_stream(sup, range(5), work, max_concurrency=3)
    with pytest.raises(ProcessExited) as err:
        await anext(stream)
    assert isinstance(err.value.__cause__, ValueError)
    await wait_until(lambda: not live_tasks(runtime))
    assert [r async for r in stream] == []


async def test_breaking_out_of_the_loop_kills_the_tasks_in_flight(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()

    async def work(i: int) -> int:
        if i:
            await receive()
        return i

    async for result in TaskSupervisor.async_stream(
        sup, range(10), work, max_concurrency=3, timeout=None
    ):  # the stream is held by the loop alone: leaving the loop drops it
        assert result == 0
        assert len(live_tasks(runtime)) == 2
        break
    await wait_until(lambda: not live_tasks(runtime))
    assert await DynamicSupervisor.which_children(sup) == []


async def test_aclose_kills_the_tasks_in_flight(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()
    stream = TaskSupervisor.async_stream(
        sup, range(10), lambda i: forever(), max_concurrency=3, timeout=None
    )
    first = asyncio.ensure_future(anext(stream))  # a consumer blocked on the first result
    await wait_until(lambda: len(live_tasks(runtime)) == 3)
    await stream.aclose()
    await wait_until(lambda: not live_tasks(runtime))
    with pytest.raises(StopAsyncIteration):
        await first


async def test_killing_the_consuming_process_kills_the_tasks_in_flight(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()

    async def consumer() -> None:
        stream = TaskSupervisor.async_stream(sup, range(10), lambda i: forever(), timeout=None)
        async for _ in stream:
            pass

    pid = spawn(consumer)
    await wait_until(lambda: len(live_tasks(runtime)) >= 2)
    await crash(pid)
    await wait_until(lambda: not live_tasks(runtime))
    assert await DynamicSupervisor.which_children(sup) == []


async def test_async_stream_takes_an_async_iterable(runtime: Runtime) -> None:
    sup = await TaskSupervisor.start()

    async def items() -> AsyncIterator[int]:
        for i in range(6):
            await runtime.clock.sleep(0.5)
            yield i

    async def square(i: int) -> int:
        return i * i

    stream = TaskSupervisor.async_stream(sup, items(), square, max_concurrency=2)
    assert [r async for r in stream] == [0, 1, 4, 9, 16, 25]


# -- run_sync -------------------------------------------------------------------------------------


class Blocking:
    """A blocking function that tells the loop when it entered and waits for a release."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.entered: asyncio.Future[int] = self.loop.create_future()
        self.release = threading.Event()
        self.finished: list[int] = []

    def __call__(self, x: int) -> int:
        self.loop.call_soon_threadsafe(self.entered.set_result, threading.get_ident())
        assert self.release.wait(timeout=30), "never released"
        self.finished.append(x)
        return x * 2


@pytest.mark.parametrize("with_sup", [True, False])
async def test_run_sync_runs_in_another_thread_while_the_loop_serves_other_calls(
    runtime: Runtime, with_sup: bool
) -> None:
    sup = await TaskSupervisor.start()
    counter = await Counter.start(0)
    blocking = Blocking()
    results: list[int] = []

    async def runner() -> None:
        if with_sup:
            results.append(await TaskSupervisor.run_sync(sup, blocking, 21))
        else:
            results.append(await TaskSupervisor.run_sync(blocking, 21))

    pid = spawn(runner)
    thread_id = await blocking.entered
    assert thread_id != threading.get_ident()
    for _ in range(3):
        cast(counter, 1)
    assert await call(counter, "get") == 3  # served while the thread is blocked
    assert results == []
    blocking.release.set()
    await wait_exit(pid)
    assert results == [42]


@pytest.mark.parametrize("with_sup", [True, False])
async def test_run_sync_raises_the_exception_of_the_blocking_function(
    runtime: Runtime, with_sup: bool
) -> None:
    sup = await TaskSupervisor.start()

    def fails(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(KeyError):
        if with_sup:
            await TaskSupervisor.run_sync(sup, fails, 1)
        else:
            await TaskSupervisor.run_sync(fails, 1)
    assert await TaskSupervisor.run_sync(sup, sum, [1, 2]) == 3


@pytest.mark.parametrize("with_sup", [True, False])
async def test_runtime_shutdown_waits_for_a_run_sync_thread(
    runtime: Runtime, with_sup: bool
) -> None:
    sup = await TaskSupervisor.start()
    blocking = Blocking()

    async def runner() -> None:
        if with_sup:
            await TaskSupervisor.run_sync(sup, blocking, 1)
        else:
            await TaskSupervisor.run_sync(blocking, 1)

    spawn(runner)
    await blocking.entered
    runtime.loop.call_soon(blocking.release.set)  # once the shutdown has begun
    await runtime.shutdown()
    assert blocking.finished == [1]
    prefix = f"foundation-{runtime.node}"
    assert [t for t in threading.enumerate() if t.name.startswith(prefix)] == []


@pytest.mark.parametrize("with_sup", [True, False])
async def test_run_sync_keeps_the_clock_from_jumping_while_its_thread_outlives_a_killed_caller(
    runtime: Runtime, with_sup: bool
) -> None:
    sup = await TaskSupervisor.start()
    blocking = Blocking()
    loop: Any = runtime.loop

    async def runner() -> None:
        if with_sup:
            await TaskSupervisor.run_sync(sup, blocking, 1)
        else:
            await TaskSupervisor.run_sync(blocking, 1)

    pid = spawn(runner)
    await blocking.entered
    await crash(pid)
    try:
        assert loop.external_work >= 1  # the thread is still blocked: real work in flight
    finally:
        blocking.release.set()
    await runtime.shutdown()  # waits for the thread; no false deadlock while it finishes
    assert blocking.finished == [1]


async def test_runtime_run_in_thread_keeps_the_clock_external_while_its_thread_runs(
    runtime: Runtime,
) -> None:
    blocking = Blocking()
    loop: Any = runtime.loop

    async def runner() -> None:
        await runtime.run_in_thread(blocking, 1)

    pid = spawn(runner)
    await blocking.entered
    await crash(pid)
    try:
        assert loop.external_work == 1  # the thread is still blocked: real work in flight
    finally:
        blocking.release.set()
    await runtime.shutdown()  # waits for the thread
    assert blocking.finished == [1]
    assert loop.external_work == 0  # released exactly when the thread finished
