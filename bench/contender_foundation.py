"""Foundation's side of the benchmark: the workloads on ``foundation.kernel`` (any asyncio loop).

Every call uses the default 5 s timeout; the server is a GenServer that replies with its counter
(``Reply(state, state)``) and counts casts.
"""

from __future__ import annotations

import asyncio
import cProfile
import time
from typing import Any

from memprobe import Probe, finish

from foundation.errors import NoProcess, ProcessExited
from foundation.kernel import GenServer, Reply, Runtime, Supervisor, call, cast, exit, whereis
from foundation.kernel.process import From

PROFILER: cProfile.Profile | None = None  # set by the bench to profile the measured sections


def _start() -> float:
    if PROFILER is not None:
        PROFILER.enable()
    return time.perf_counter()


def _stop(t0: float) -> float:
    elapsed = time.perf_counter() - t0
    if PROFILER is not None:
        PROFILER.disable()
    return elapsed


class Counter(GenServer):
    """The benchmark server: ``call(pid, "get")`` answers the counter, a cast increments it."""

    async def init(self, args: Any) -> int:
        return 0

    async def handle_call(self, request: Any, caller: From, state: int) -> Reply:
        return Reply(state, state)

    async def handle_cast(self, request: Any, state: int) -> int:
        if request == "crash":
            raise RuntimeError("crash requested by the benchmark")
        return state + 1


async def call_rate(n: int, timeout: float | None = 5.0) -> float:
    """Calls per second: one client, ``n`` sequential calls to one server."""
    async with Runtime():
        pid = await Counter.start()
        for _ in range(max(n // 10, 100)):
            await call(pid, "get", timeout)
        t0 = _start()
        for _ in range(n):
            await call(pid, "get", timeout)
        elapsed = _stop(t0)
        await GenServer.stop(pid)
    return n / elapsed


async def cast_rate(n: int) -> float:
    """Casts per second: ``n`` casts, then one call that returns once all were handled."""
    async with Runtime():
        pid = await Counter.start()
        for _ in range(max(n // 10, 100)):
            cast(pid, "inc")
        await call(pid, "get")
        t0 = _start()
        for _ in range(n):
            cast(pid, "inc")
        count = await call(pid, "get")
        elapsed = _stop(t0)
        assert count == n + max(n // 10, 100), count
        await GenServer.stop(pid)
    return n / elapsed


async def spawn_cycle(n: int) -> float:
    """Microseconds per process for ``n`` sequential start + one call + stop."""
    async with Runtime():
        for _ in range(max(n // 10, 10)):
            pid = await Counter.start()
            await call(pid, "get")
            await GenServer.stop(pid)
        t0 = _start()
        for _ in range(n):
            pid = await Counter.start()
            await call(pid, "get")
            await GenServer.stop(pid)
        elapsed = _stop(t0)
    return elapsed / n * 1e6


async def _served(name: str) -> None:
    """Call ``name`` until a live process answers (the crashed one fails, then it is unknown)."""
    while True:
        try:
            await call(name, "get")
            return
        except (NoProcess, ProcessExited):
            await asyncio.sleep(0)


async def restart_latency(n: int, how: str) -> list[float]:
    """Seconds from a crash (``kill``: ``exit(pid, "kill")``; ``crash``: a cast that raises) of a
    permanent child until a call to its registered name is served by the restarted child."""
    name = "bench_counter"
    async with Runtime():
        sup = await Supervisor.start(
            [Counter.child_spec(name=name)], max_restarts=10**9, max_seconds=1.0
        )
        await call(name, "get")
        samples = []
        for i in range(n + max(n // 10, 10)):
            pid = whereis(name)
            t0 = _start()
            if how == "kill":
                exit(pid, "kill")
            else:
                cast(pid, "crash")
            await _served(name)
            elapsed = _stop(t0)
            if i >= max(n // 10, 10):
                samples.append(elapsed)
        await GenServer.stop(sup)
    return samples


async def memory(n: int, probe: Probe) -> None:
    """Bytes per idle server: ``n`` started servers, each waiting for a message."""
    async with Runtime():
        warm = [await Counter.start() for _ in range(1000)]
        probe.start()
        pids = [await Counter.start() for _ in range(n)]
        for _ in range(3):
            await asyncio.sleep(0)
        finish(probe.per_process(n), n)
        del warm, pids


WORKLOADS = {
    "call": call_rate,
    "cast": cast_rate,
    "spawn": spawn_cycle,
    "restart_kill": lambda n: restart_latency(n, "kill"),
    "restart_crash": lambda n: restart_latency(n, "crash"),
}
