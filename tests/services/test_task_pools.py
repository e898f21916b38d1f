"""TaskPools: bounded pools whose tasks belong to their callers."""

from __future__ import annotations

import math
import threading

import pytest

from foundation import Runtime, receive, spawn
from foundation.errors import AlreadyPresent, CallTimeout, InvalidArgument, NoProcess, ProcessExited
from foundation.kernel.api import wait_exit
from foundation.services.task_pools import PoolConfig, TaskPools
from foundation.testing import crash, sync


async def test_3f7_caller_owns_and_awaits_its_task(runtime: Runtime) -> None:
    await TaskPools.start_link()

    async def double(x: int) -> int:
        return 2 * x

    task = await TaskPools.run("general", double, 21)
    assert await task == 42
    await sync("task_pools")  # the slot follows the task's monitor: let the manager see it end
    stats = await TaskPools.stats("general")
    assert (stats.running, stats.started, stats.completed) == (0, 1, 1)


async def test_a_failing_task_raises_in_its_caller_and_frees_its_slot(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={"p": PoolConfig("async", 1)})

    async def boom() -> None:
        raise ValueError("bad item")

    task = await TaskPools.run("p", boom)
    with pytest.raises(ProcessExited) as err:
        await task
    assert isinstance(err.value.__cause__, ValueError)
    await sync("task_pools")
    assert (await TaskPools.stats("p")).running == 0


async def test_pool_bound_holds_and_waiters_are_served_in_order(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={"p": PoolConfig("async", 2)})
    live = [0]
    peak = [0]
    order: list[int] = []

    async def job(i: int) -> int:
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        await runtime.clock.sleep(1)
        live[0] -= 1
        order.append(i)
        return i

    async def client(i: int) -> None:
        task = await TaskPools.run("p", job, i)
        await task

    clients = [spawn(client, i) for i in range(6)]
    for c in clients:
        await wait_exit(c)
    assert peak[0] == 2
    assert order == [0, 1, 2, 3, 4, 5]
    assert runtime.clock.now() == pytest.approx(3.0)


async def test_a_caller_that_stops_waiting_never_gets_a_slot(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={"p": PoolConfig("async", 1)})

    async def hold() -> None:
        await receive()

    blocker = await TaskPools.run("p", hold)
    with pytest.raises(CallTimeout):
        await TaskPools.run("p", hold, wait=2)
    await crash(blocker.pid)
    await sync("task_pools")
    stats = await TaskPools.stats("p")
    assert (stats.running, stats.waiting, stats.started) == (0, 0, 1)


async def test_a_killed_caller_frees_the_slot_it_held(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={"p": PoolConfig("async", 1)})

    async def forever() -> None:
        await receive()

    async def client() -> None:
        await TaskPools.run("p", forever)
        await receive()

    c = spawn(client)
    await sync(c)
    assert (await TaskPools.stats("p")).running == 1
    await crash(c)  # the task is the caller's own (nolink): it keeps the slot until it ends
    tasks = [p for p in runtime.processes() if p.behaviour.startswith("Task(")]
    for info in tasks:
        await crash(info.pid)
    await sync("task_pools")
    assert (await TaskPools.stats("p")).running == 0


async def test_map_yields_in_order_within_the_bound_with_per_item_timeout(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={"p": PoolConfig("async", 3, timeout=5)})

    async def slow_square(x: int) -> int:
        await runtime.clock.sleep(10 if x == 4 else 3 - x % 3)
        return x * x

    got: list[int] = []
    with pytest.raises(CallTimeout):
        async for value in TaskPools.map("p", range(6), slow_square):
            got.append(value)
    assert got == [0, 1, 4, 9]


async def test_thread_pool_runs_blocking_code_off_the_loop(runtime: Runtime) -> None:
    await TaskPools.start_link()
    loop_thread = threading.get_ident()
    task = await TaskPools.run("blocking_io", threading.get_ident)
    assert await task != loop_thread


@pytest.mark.foundation(clock="real")
async def test_process_pool_runs_cpu_bound_code_in_another_os_process(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={"cpu": PoolConfig("process", 2, timeout=60)})
    task = await TaskPools.run("cpu", math.factorial, 20)
    assert await task == math.factorial(20)


async def test_pool_management_errors_are_clear(runtime: Runtime) -> None:
    await TaskPools.start_link(pools={})
    with pytest.raises(NoProcess, match="no task pool named 'x'"):
        await TaskPools.run("x", print)
    await TaskPools.create_pool("x", PoolConfig())
    with pytest.raises(AlreadyPresent):
        await TaskPools.create_pool("x", PoolConfig())
    with pytest.raises(InvalidArgument):
        PoolConfig("fibers")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        PoolConfig(max_concurrency=0)
    await TaskPools.shutdown_pool("x")
    with pytest.raises(NoProcess):
        await TaskPools.stats("x")
