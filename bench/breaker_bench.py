"""Circuit breaker benchmark: what a circuit adds to a call, against the bare call, in one run.

Run alone: ``.venv/bin/python bench/breaker_bench.py [--rounds N] [--n CALLS]`` (or
``.venv/bin/python bench/run.py breaker``). Asserts nothing about timings. Rows, each against
its baseline measured in the same round (medians over the rounds):

- closed circuit: ``await CircuitBreaker.call("svc", fn)`` vs ``await fn()``, for an async
  ``fn`` that returns at once. The issue's target: under 2 µs added.
- ``protected_call(service, fn, breaker=True)`` vs ``await fn()``: the guard as composed.
- open circuit: a refused call (``CircuitOpen`` raised in the caller, no server round trip) vs
  raising and catching an exception by hand: what failing fast costs.
- half-open refusal: a call refused while another caller holds the trial (a server round
  trip) vs a bare ``call`` to a GenServer that answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from foundation import GenServer, Reply, Runtime, call, spawn
from foundation.errors import CircuitOpen
from foundation.kernel.process import From
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.protected import protected_call


async def fn() -> int:
    return 1


class Echo(GenServer):
    """Answers every call at once: the baseline for one server round trip."""

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        return Reply(request, state)


async def per_call(n: int, body: Callable[[], Awaitable[Any]]) -> float:
    """Microseconds per ``await body()``, over ``n`` calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        await body()
    return (time.perf_counter() - t0) / n * 1e6


async def refused(circuit: str) -> None:
    with contextlib.suppress(CircuitOpen):
        await CircuitBreaker.call(circuit, fn)


async def raised() -> None:
    try:
        raise CircuitOpen("by hand", retry_after=1.0)
    except CircuitOpen:
        pass


async def measure(rounds: int, n: int) -> dict[str, tuple[float, float]]:
    """Per row: (Foundation µs, baseline µs), medians over the rounds."""
    samples: dict[str, list[tuple[float, float]]] = {}
    async with Runtime() as rt:
        await CircuitBreaker.start_link()
        for name in ("svc", "open", "half"):
            await CircuitBreaker.configure(name, reset_timeout=3600.0)
        echo = await Echo.start()
        await CircuitBreaker.trip("open")
        await CircuitBreaker.configure("half", reset_timeout=0.001, success_threshold=1)
        await CircuitBreaker.trip("half")
        await rt.clock.sleep(0.01)
        hold = asyncio.Event()

        async def trial() -> None:
            await CircuitBreaker.call("half", hold.wait)

        spawn(trial)
        await asyncio.sleep(0.01)
        rows: dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]], int]] = {
            "closed circuit": (lambda: CircuitBreaker.call("svc", fn), fn, n),
            "protected_call(breaker=True)": (
                lambda: protected_call("svc", fn, breaker=True), fn, n),
            "open circuit, refused": (lambda: refused("open"), raised, n),
            "half-open, refused (round trip)": (lambda: refused("half"), lambda: call(echo, 1),
                                                n // 10),
        }  # fmt: skip
        for i in range(rounds):
            for name, (ours, base, count) in rows.items():
                pair = [await per_call(count, ours), await per_call(count, base)]
                if i % 2:  # alternate the order, so drift falls on both alike
                    pair = [await per_call(count, base), await per_call(count, ours)][::-1]
                samples.setdefault(name, []).append((pair[0], pair[1]))
        hold.set()
    return {
        name: (statistics.median(a for a, _ in s), statistics.median(b for _, b in s))
        for name, s in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    results = asyncio.run(measure(args.rounds, args.n))
    print(f"{'row':34} {'Foundation':>11} {'baseline':>10} {'added':>9} {'ratio':>7}")
    for name, (ours, base) in results.items():
        print(f"{name:34} {ours:8.2f} µs {base:7.2f} µs {ours - base:6.2f} µs {ours / base:6.1f}x")
    ours, base = results["closed circuit"]
    verdict = "met" if ours - base < 2.0 else "NOT met"
    print(f"target: a closed circuit adds under 2 µs: {ours - base:.2f} µs added, {verdict}")


if __name__ == "__main__":
    main()
