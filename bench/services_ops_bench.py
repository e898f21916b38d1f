"""Operations-services benchmark: signal bus and scheduler as ratios to named baselines, one run.

Run: ``.venv/bin/python bench/services_ops_bench.py [--quick] [--rounds N] [--readme]``. Each
row times a workload and its baseline back to back on the same loop, in rounds (the order
alternates per round), and reports the medians and the ratio workload / baseline (for rates,
more than 1 means the workload is faster). It asserts nothing about timings. ``--readme``
rewrites this benchmark's results in ``bench/README.md`` (between its markers only).

- **signal publish to N subscribers** (N = 1, 10, 100), on the real clock: ``await
  SignalBus.publish(bus, "bench.tick")``, one publisher awaiting each in turn; the subscribers are GenServers whose
  ``handle_info`` does nothing. Baseline: **hand-written bus**, a GenServer ``call`` whose
  handler ``send``s the message to the same N pids from a list: the floor of any bus that is a
  process (no patterns, envelopes, monitors or back-pressure).
- **scheduler ticks at 10,000 schedules**: 10,000 periodic schedules (periods spread over 1-2 s,
  so ticks fall at many distinct times) to one registered target that counts them, over 20 s of
  virtual time; ticks delivered per second of real time. Baseline: **raw loop timers**, one
  ``clock.call_later`` callback per schedule that sends to the target and re-arms itself
  (``send`` to the same pid; no heap, no name lookup, no anchor arithmetic, no durability, and
  it drifts). Both run on the test runtime's virtual clock, so the number is the CPU cost of a
  tick, not a wait.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from foundation import GenServer, Reply, Runtime, call, send
from foundation.kernel.context import RUNTIME
from foundation.services import Scheduler, SignalBus
from foundation.testing import VirtualClock, VirtualTimeLoop

Rows = list[tuple[str, float, str, float]]
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- ops:results:start -->", "<!-- ops:results:end -->"


class Sink(GenServer):
    """Counts the messages it gets."""

    async def init(self, args: Any) -> int:
        return 0

    async def handle_call(self, request: Any, caller: Any, count: int) -> Any:
        return Reply(count, count)

    async def handle_info(self, msg: Any, count: int) -> Any:
        return count + 1


class HandBus(GenServer):
    """The baseline bus: a call whose handler sends to every pid of a fixed list."""

    async def handle_call(self, request: Any, caller: Any, pids: list[Any]) -> Any:
        for pid in pids:
            send(pid, request)
        return Reply(len(pids), pids)


def run_virtual(coro: Callable[[Runtime], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``coro(rt)`` in a fresh Runtime on a virtual clock."""
    loop = VirtualTimeLoop()
    rt = Runtime(clock=VirtualClock())

    async def main() -> Any:
        RUNTIME.set(rt)
        rt.start()
        try:
            return await coro(rt)
        finally:
            await rt.shutdown()

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def rate(n: int, op: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await op()
    return n / (time.perf_counter() - t0)


async def paired(
    rounds: int, work: Callable[[], Awaitable[float]], base: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Median rates of ``work`` and ``base``, alternating which runs first each round."""
    w: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        first, second = (base, work) if i % 2 else (work, base)
        r1, r2 = await first(), await second()
        (b if i % 2 else w).append(r1)
        (w if i % 2 else b).append(r2)
    return statistics.median(w), statistics.median(b)


async def publish_row(bus: Any, subscribers: int, n: int, rounds: int) -> tuple[float, float]:
    """Median publish and hand-written-bus rates to ``subscribers`` fresh sinks."""
    sinks = [await Sink.start() for _ in range(subscribers)]
    for pid in sinks:
        await SignalBus.subscribe(bus, "bench.*", subscriber=pid)
    hand = await HandBus.start(sinks)
    count = max(n // subscribers, 200)

    async def publish() -> Any:
        return await SignalBus.publish(bus, "bench.tick")

    async def baseline() -> Any:
        return await call(hand, "bench.tick")

    result = await paired(rounds, lambda: rate(count, publish), lambda: rate(count, baseline))
    assert (await SignalBus.stats(bus)).dead_lettered == 0
    for pid in [*sinks, hand]:
        await GenServer.stop(pid)
    return result


async def bench_publish(n: int, rounds: int, rows: Rows) -> None:
    bus = await SignalBus.start_link(name="bench_bus")
    for subscribers in (1, 10, 100):
        w, b = await publish_row(bus, subscribers, n, rounds)
        rows.append((f"signal publish, {subscribers} subscriber(s)", w,
                     f"hand-written bus, {subscribers}", b))  # fmt: skip


def scheduler_ticks(schedules: int, seconds: float) -> float:
    async def main(rt: Runtime) -> float:
        await Sink.start(name="target")
        await Scheduler.start_link(epoch=0.0)
        for i in range(schedules):
            every = 1.0 + (i % 1000) / 1000
            await Scheduler.schedule(f"s{i}", "target", "tick", every=every, durable=False)
        t0 = time.perf_counter()
        await rt.clock.sleep(seconds)
        elapsed = time.perf_counter() - t0
        return int(await call("target", "count")) / elapsed

    return float(run_virtual(main))


def timer_ticks(schedules: int, seconds: float) -> float:
    async def main(rt: Runtime) -> float:
        target = await Sink.start(name="target")
        clock = rt.clock
        running = [True]

        def fire(every: float) -> None:
            if running[0]:
                send(target, "tick")
                clock.call_later(every, fire, every)

        for i in range(schedules):
            every = 1.0 + (i % 1000) / 1000
            clock.call_later(every, fire, every)
        t0 = time.perf_counter()
        await clock.sleep(seconds)
        elapsed = time.perf_counter() - t0
        running[0] = False
        return int(await call(target, "count")) / elapsed

    return float(run_virtual(main))


def bench_scheduler(schedules: int, seconds: float, rounds: int, rows: Rows) -> None:
    w: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        if i % 2:
            b.append(timer_ticks(schedules, seconds))
            w.append(scheduler_ticks(schedules, seconds))
        else:
            w.append(scheduler_ticks(schedules, seconds))
            b.append(timer_ticks(schedules, seconds))
    rows.append((f"scheduler ticks, {schedules:,} schedules", statistics.median(w),
                 "raw loop timers, same count", statistics.median(b)))  # fmt: skip


def table(rows: Rows) -> list[str]:
    lines = [
        "| workload | ops/s | baseline | ops/s | ratio |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for name, w, base, b in rows:
        lines.append(f"| {name} | {w:,.0f} | {base} | {b:,.0f} | {w / b:.2f}x |")
    return lines


def write_readme(rows: Rows, rounds: int) -> None:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [START, "", f"Measured {when}, Python {platform.python_version()} "
            f"({platform.system()} {platform.machine()}), {rounds} rounds, medians.", "",
            *table(rows), "", END]  # fmt: skip
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(head + "\n".join(body) + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--readme", action="store_true", help="rewrite the README section")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    rows: Rows = []

    async def publish() -> None:
        async with Runtime():
            await bench_publish(2_000 if args.quick else 20_000, rounds, rows)

    asyncio.run(publish())
    bench_scheduler(1_000 if args.quick else 10_000, 5.0 if args.quick else 20.0, rounds, rows)
    for line in table(rows):
        print(line)
    if args.readme and not args.quick:
        write_readme(rows, rounds)


if __name__ == "__main__":
    main()
