"""Threads and OS processes owned by the runtime: ``runtime.worker(name)``, ``run_in_thread`` and
``run_in_process`` keep the virtual clock still exactly while their work runs outside the loop."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from typing import Any

import pytest

from foundation import GenServer, Reply, Runtime, call, spawn
from foundation.errors import InvalidArgument
from foundation.testing import crash


class Gate:
    """A blocking job: tells the loop it started, then waits for ``release``."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.entered: asyncio.Future[str] = self.loop.create_future()
        self.release = threading.Event()

    def __call__(self, x: int) -> int:
        self.loop.call_soon_threadsafe(self.entered.set_result, threading.current_thread().name)
        assert self.release.wait(timeout=30), "never released"
        return x + 1


class Counter(GenServer):
    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state + 1, state + 1)


def external_work(runtime: Runtime) -> int:
    loop: Any = runtime.loop
    return int(loop.external_work)


async def test_worker_runs_jobs_in_submission_order_on_its_own_thread(runtime: Runtime) -> None:
    worker = runtime.worker("db")
    assert runtime.worker("db") is worker  # one worker per name
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * i

    results = await asyncio.gather(*(worker.run(job, i) for i in range(20)))
    assert results == [i * i for i in range(20)]
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"foundation-db"}
    assert external_work(runtime) == 0


async def test_worker_keeps_the_clock_external_until_its_job_ends_even_if_the_caller_dies(
    runtime: Runtime,
) -> None:
    worker = runtime.worker("db")
    gate = Gate()
    counter = await Counter.start(0)

    async def runner() -> None:
        await worker.run(gate, 1)

    pid = spawn(runner)
    await gate.entered
    assert await call(counter, "inc") == 1  # the loop keeps serving while the thread blocks
    await crash(pid)
    assert external_work(runtime) == 1  # the job still runs: virtual time must hold still
    fut = worker.submit(gate, 2)
    gate.release.set()
    assert await fut == 3
    assert external_work(runtime) == 0  # released as soon as the last job finished


async def test_a_job_that_could_not_be_submitted_leaves_the_clock_free(runtime: Runtime) -> None:
    worker = runtime.worker("db")
    await worker.close()
    with pytest.raises(InvalidArgument, match="closed"):
        await worker.run(math.factorial, 3)
    assert external_work(runtime) == 0
    assert await runtime.run_in_thread(math.factorial, 3) == 6
    pool = runtime._executor
    assert pool is not None
    pool.shutdown()  # the pool closed under the runtime: submitting fails
    with pytest.raises(RuntimeError, match="shutdown"):
        await runtime.run_in_thread(math.factorial, 3)
    assert external_work(runtime) == 0


async def test_run_in_thread_releases_the_clock_when_its_thread_finishes(
    runtime: Runtime,
) -> None:
    gate = Gate()

    async def while_it_runs() -> None:
        name = await gate.entered
        assert name.startswith(f"foundation-{runtime.node}")
        assert external_work(runtime) == 1
        gate.release.set()

    result, _ = await asyncio.gather(runtime.run_in_thread(gate, 41), while_it_runs())
    assert result == 42
    assert external_work(runtime) == 0


async def test_run_in_process_runs_in_another_os_process(runtime: Runtime) -> None:
    pid = await runtime.run_in_process(os.getpid)
    assert pid != os.getpid()
    assert await runtime.run_in_process(math.factorial, 10) == 3628800
    assert external_work(runtime) == 0


async def test_no_worker_is_handed_out_once_the_runtime_stopped(runtime: Runtime) -> None:
    worker = runtime.worker("db")
    await runtime.shutdown()
    with pytest.raises(InvalidArgument, match="closed"):
        worker.submit(math.factorial, 3)
    with pytest.raises(InvalidArgument, match="cannot open a worker thread"):
        runtime.worker("other")
