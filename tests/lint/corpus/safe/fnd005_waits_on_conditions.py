# ruff: noqa
"""FND005 safe: tests wait for conditions on the virtual clock, never for wall time."""

import asyncio
import time
from typing import Any


async def test_yields_to_the_loop() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0.0)


async def test_waits_for_the_condition(runtime: Any, wait_until: Any, server: Any) -> None:
    await wait_until(lambda: server.count == 3)
    event = asyncio.Event()
    event.set()
    await asyncio.wait_for(event.wait(), timeout=1)


def test_reads_the_clock_once() -> None:
    started = time.monotonic()
    assert time.monotonic() >= started


def test_loops_without_the_clock(items: list[int]) -> None:
    while items:
        items.pop()
