"""The raw asyncio baseline: a task reading an ``asyncio.Queue`` of ``(request, future)`` pairs.

The server sets each future with its counter; a cast is a pair without a future. ``timeout=True``
wraps every awaited reply in ``asyncio.timeout(5)`` (what a per-call deadline costs when it is a
loop timer). The supervisor is a task that awaits its child task and re-creates it with a new
queue under the same name; the dying child fails the requests still queued, as Foundation does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from memprobe import Probe, finish

TIMEOUT = 5.0


class Exited(Exception):
    """The server exited before it replied."""


async def server(q: asyncio.Queue[Any]) -> None:
    count = 0
    while True:
        request, fut = await q.get()
        if fut is None:
            if request is None:
                return
            if request == "crash":
                raise RuntimeError("crash requested by the benchmark")
            count += 1
        else:
            fut.set_result(count)


async def request(q: asyncio.Queue[Any], msg: Any, timeout: bool) -> Any:
    fut = asyncio.get_running_loop().create_future()
    q.put_nowait((msg, fut))
    if timeout:
        async with asyncio.timeout(TIMEOUT):
            return await fut
    return await fut


async def call_rate(n: int, timeout: bool = False) -> float:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(server(q))
    for _ in range(max(n // 10, 100)):
        await request(q, "get", timeout)
    create_future = loop.create_future
    put = q.put_nowait
    t0 = time.perf_counter()
    if timeout:
        for _ in range(n):
            fut = create_future()
            put(("get", fut))
            async with asyncio.timeout(TIMEOUT):
                await fut
    else:
        for _ in range(n):
            fut = create_future()
            put(("get", fut))
            await fut
    elapsed = time.perf_counter() - t0
    put((None, None))
    await task
    return n / elapsed


async def cast_rate(n: int, timeout: bool = False) -> float:
    q: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(server(q))
    warm = max(n // 10, 100)
    for _ in range(warm):
        q.put_nowait(("inc", None))
    await request(q, "get", timeout)
    put = q.put_nowait
    t0 = time.perf_counter()
    for _ in range(n):
        put(("inc", None))
    count = await request(q, "get", timeout)
    elapsed = time.perf_counter() - t0
    assert count == n + warm, count
    put((None, None))
    await task
    return n / elapsed


async def spawn_cycle(n: int, timeout: bool = False) -> float:
    async def one() -> None:
        q: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(server(q))
        await request(q, "get", timeout)
        q.put_nowait((None, None))
        await task

    for _ in range(max(n // 10, 10)):
        await one()
    t0 = time.perf_counter()
    for _ in range(n):
        await one()
    return (time.perf_counter() - t0) / n * 1e6


class _Supervised:
    """A one-for-one supervisor of one permanent child registered under ``name``."""

    def __init__(self, registry: dict[str, asyncio.Queue[Any]], name: str) -> None:
        self.registry = registry
        self.name = name
        self.child: asyncio.Task[None] | None = None
        self.stopping = False

    async def _child(self, q: asyncio.Queue[Any]) -> None:
        try:
            await server(q)
        finally:
            if self.registry.get(self.name) is q:
                del self.registry[self.name]
            while not q.empty():
                _, fut = q.get_nowait()
                if fut is not None and not fut.done():
                    fut.set_exception(Exited())

    async def run(self) -> None:
        while not self.stopping:
            q: asyncio.Queue[Any] = asyncio.Queue()
            self.registry[self.name] = q
            self.child = asyncio.create_task(self._child(q))
            await asyncio.wait((self.child,))
            if not self.child.cancelled():
                self.child.exception()  # retrieved: a crash is this supervisor's business


async def _served(registry: dict[str, asyncio.Queue[Any]], name: str, timeout: bool) -> None:
    while True:
        q = registry.get(name)
        if q is not None:
            try:
                await request(q, "get", timeout)
                return
            except Exited:
                pass
        await asyncio.sleep(0)


async def restart_latency(n: int, how: str, timeout: bool = False) -> list[float]:
    registry: dict[str, asyncio.Queue[Any]] = {}
    name = "bench_counter"
    sup = _Supervised(registry, name)
    sup_task = asyncio.create_task(sup.run())
    await _served(registry, name, timeout)
    samples = []
    warm = max(n // 10, 10)
    for i in range(n + warm):
        t0 = time.perf_counter()
        if how == "kill":
            assert sup.child is not None
            sup.child.cancel()
        else:
            registry[name].put_nowait(("crash", None))
        await _served(registry, name, timeout)
        if i >= warm:
            samples.append(time.perf_counter() - t0)
    sup.stopping = True
    registry[name].put_nowait((None, None))
    await sup_task
    return samples


async def memory(n: int, probe: Probe) -> None:
    """Bytes per idle queue-reader task (its queue and the task, held in a list and a set)."""
    tasks: set[asyncio.Task[None]] = set()
    queues: list[asyncio.Queue[Any]] = []

    def spawn(into: list[asyncio.Queue[Any]]) -> None:
        q: asyncio.Queue[Any] = asyncio.Queue()
        tasks.add(asyncio.create_task(server(q)))
        into.append(q)

    warm: list[asyncio.Queue[Any]] = []
    for _ in range(1000):
        spawn(warm)
    await asyncio.sleep(0)
    probe.start()
    for _ in range(n):
        spawn(queues)
    for _ in range(3):
        await asyncio.sleep(0)
    finish(probe.per_process(n), n)


def workloads(timeout: bool) -> dict[str, Any]:
    return {
        "call": lambda n: call_rate(n, timeout),
        "cast": lambda n: cast_rate(n, timeout),
        "spawn": lambda n: spawn_cycle(n, timeout),
        "restart_kill": lambda n: restart_latency(n, "kill", timeout),
        "restart_crash": lambda n: restart_latency(n, "crash", timeout),
    }
