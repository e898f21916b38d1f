# ruff: noqa
"""FND005: tests that sleep or poll the wall clock (this corpus lives under tests/)."""

import asyncio
import time
from asyncio import sleep as nap

import anyio
import trio


def test_sleeps() -> None:
    time.sleep(0.1)  # expect: FND005


async def test_async_sleeps(delay: float) -> None:
    await asyncio.sleep(0.5)  # expect: FND005
    await nap(delay)  # expect: FND005
    await nap(delay=0.25)  # expect: FND005
    await nap(1)  # expect: FND005
    await trio.sleep(1)  # expect: FND005
    await anyio.sleep(0.01)  # expect: FND005


def test_polls_the_wall_clock(done: list[bool]) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # expect: FND005
        if done:
            break
    start = time.time()
    while not done:
        if time.time() - start > 5:  # expect: FND005
            raise TimeoutError


async def test_polls_the_loop_clock(done: list[bool]) -> None:
    loop = asyncio.get_running_loop()
    while not done and loop.time() < 10:  # expect: FND005
        await asyncio.sleep(0)
    while not done:
        if asyncio.get_running_loop().time() > 10:  # expect: FND005
            break
        await asyncio.sleep(0)
