"""Circuit breaker benchmark: what a closed circuit adds to a call, against the bare call.

Run alone: ``.venv/bin/python bench/breaker_bench.py``. Asserts nothing about timings. The
baseline is ``await fn()`` for an async function that returns at once; the issue's target: a
breaker-protected call adds under 2 µs.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from foundation import Runtime
from foundation.services.circuit_breaker import CircuitBreaker

N = 100_000


async def fn() -> int:
    return 1


async def bare() -> float:
    t0 = time.perf_counter()
    for _ in range(N):
        await fn()
    return (time.perf_counter() - t0) / N * 1e6


async def protected() -> float:
    t0 = time.perf_counter()
    for _ in range(N):
        await CircuitBreaker.call("svc", fn)
    return (time.perf_counter() - t0) / N * 1e6


async def main() -> None:
    async with Runtime():
        await CircuitBreaker.start_link()
        await CircuitBreaker.configure("svc")
        b, p = [], []
        for _ in range(5):
            b.append(await bare())
            p.append(await protected())
    mb, mp = statistics.median(b), statistics.median(p)
    print(
        f"bare call: {mb:.2f} µs; through a closed breaker: {mp:.2f} µs; "
        f"added {mp - mb:.2f} µs ({mp / mb:.1f}x; target: under 2 µs added)"
    )


if __name__ == "__main__":
    asyncio.run(main())
