"""triotp 0.2.1 (on trio): the same workloads with ``triotp.gen_server`` and ``triotp.supervisor``.

A triotp gen_server is a module of callbacks addressed through a named mailbox (a zero-capacity
trio memory channel, so every send is a rendezvous); ``gen_server.call`` is used with its default
(no timeout). triotp has no kill signal: the crash is a cast whose handler raises. Its logging
(logbook) goes to a NullHandler.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import logbook
import trio
import trio.lowlevel
import trio.testing
from memprobe import Probe, finish
from triotp import gen_server, mailbox, supervisor


class Counter:
    """The callbacks module (triotp only needs attributes, so a class with static methods)."""

    @staticmethod
    async def init(arg: Any) -> int:
        return 0

    @staticmethod
    async def handle_call(msg: Any, caller: Any, state: int) -> tuple[Any, int]:
        return gen_server.Reply(state), state

    @staticmethod
    async def handle_cast(msg: Any, state: int) -> tuple[Any, int]:
        if msg == "crash":
            raise RuntimeError("crash requested by the benchmark")
        if msg == "stop":
            return gen_server.Stop(), state
        return gen_server.NoReply(), state + 1


_GONE = (
    mailbox.MailboxDoesNotExist,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    gen_server.GenServerExited,
)


async def _call_when_up(name: str) -> Any:
    """Call ``name``, retrying while its mailbox is not (or no longer) there."""
    while True:
        try:
            return await gen_server.call(name, "get")
        except _GONE:
            await trio.lowlevel.checkpoint()


async def _with_server(body: Callable[[str], Awaitable[float]]) -> float:
    name = "bench_counter"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gen_server.start, Counter, None, name)
        await _call_when_up(name)
        result = await body(name)
        await gen_server.cast(name, "stop")
    return result


async def call_rate(n: int) -> float:
    async def body(name: str) -> float:
        call = gen_server.call
        for _ in range(max(n // 10, 100)):
            await call(name, "get")
        t0 = time.perf_counter()
        for _ in range(n):
            await call(name, "get")
        return n / (time.perf_counter() - t0)

    return await _with_server(body)


async def cast_rate(n: int) -> float:
    async def body(name: str) -> float:
        cast = gen_server.cast
        warm = max(n // 10, 100)
        for _ in range(warm):
            await cast(name, "inc")
        await gen_server.call(name, "get")
        t0 = time.perf_counter()
        for _ in range(n):
            await cast(name, "inc")
        count = await gen_server.call(name, "get")
        elapsed = time.perf_counter() - t0
        assert count == n + warm, count
        return n / elapsed

    return await _with_server(body)


async def spawn_cycle(n: int) -> float:
    async with trio.open_nursery() as nursery:

        async def one(i: int) -> None:
            name = f"bench_{i}"
            done = trio.Event()

            async def serve() -> None:
                try:
                    await gen_server.start(Counter, None, name)
                finally:
                    done.set()

            nursery.start_soon(serve)
            await _call_when_up(name)
            await gen_server.cast(name, "stop")
            await done.wait()

        warm = max(n // 10, 10)
        for i in range(warm):
            await one(i)
        t0 = time.perf_counter()
        for i in range(n):
            await one(warm + i)
        return (time.perf_counter() - t0) / n * 1e6


async def restart_latency(n: int) -> list[float]:
    name = "bench_counter"
    spec = supervisor.child_spec(
        id=name,
        task=gen_server.start,
        args=[Counter, None, name],
        restart=supervisor.restart_strategy.PERMANENT,
    )
    opts = supervisor.options(max_restarts=10**9, max_seconds=1)
    samples = []
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.start, [spec], opts)
        await _call_when_up(name)
        warm = max(n // 10, 10)
        for i in range(n + warm):
            t0 = time.perf_counter()
            await gen_server.cast(name, "crash")
            await _call_when_up(name)
            if i >= warm:
                samples.append(time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    return samples


async def _memory(n: int, probe: Probe) -> None:
    registry = mailbox.context_mailbox_registry
    async with trio.open_nursery() as nursery:
        for _ in range(1000):
            nursery.start_soon(gen_server.start, Counter, None, None)
        await trio.testing.wait_all_tasks_blocked()
        probe.start()
        for _ in range(n):
            nursery.start_soon(gen_server.start, Counter, None, None)
        await trio.testing.wait_all_tasks_blocked()
        assert len(registry.get()) == n + 1000
        finish(probe.per_process(n), n)


def _run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    async def main() -> Any:
        mailbox._init()
        return await fn(*args)

    with logbook.NullHandler().applicationbound():
        return trio.run(main)


def memory(n: int, probe: Probe) -> None:
    _run(_memory, n, probe)


WORKLOADS: dict[str, Callable[[int], Any]] = {
    "call": lambda n: _run(call_rate, n),
    "cast": lambda n: _run(cast_rate, n),
    "spawn": lambda n: _run(spawn_cycle, n),
    "restart_crash": lambda n: _run(restart_latency, n),
}
