"""Telemetry benchmark: the cost of an emit with 0 and 3 handlers, against an empty call.

Run alone: ``.venv/bin/python bench/telemetry_bench.py``. Asserts nothing about timings. The
baseline is a call of an empty Python function (the least any instrumentation point costs);
the issue's target: an emit with no handler attached under 1 µs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from foundation import Runtime
from foundation.telemetry import attach, execute

N = 200_000


def per_call_ns(fn: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    for _ in range(N):
        fn(*args)
    return (time.perf_counter() - t0) / N * 1e9


def empty(*_: Any) -> None:
    return None


async def main() -> None:
    async with Runtime():
        event, m, md = ("app", "request"), {"n": 1}, {"route": "/"}
        rows = []
        for _ in range(5):
            base = per_call_ns(empty, event, m, md)
            zero = per_call_ns(execute, event, m, md)
            rows.append((base, zero))
        base0 = statistics.median(r[0] for r in rows)
        zero_ns = statistics.median(r[1] for r in rows)
        for i in range(3):
            attach(f"h{i}", event, lambda *a: None)
        three = statistics.median(per_call_ns(execute, event, m, md) for _ in range(5))
        base = statistics.median(per_call_ns(empty, event, m, md) for _ in range(5))
    print(f"empty function call (baseline): {base0:.0f} ns")
    print(
        f"emit, no handler attached:      {zero_ns:.0f} ns ({zero_ns / base0:.1f}x the baseline;"
        f" target < 1,000 ns)"
    )
    print(f"emit, 3 handlers attached:      {three:.0f} ns ({three / base:.1f}x the baseline)")


if __name__ == "__main__":
    asyncio.run(main())
