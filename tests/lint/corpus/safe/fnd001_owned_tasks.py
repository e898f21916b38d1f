# ruff: noqa
"""FND001 safe: every task is kept, awaited or owned by a TaskGroup."""

import asyncio
from typing import Any


async def work() -> None: ...


class Owner:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.group = asyncio.TaskGroup()

    def start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(work())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def run(self) -> None:
        async with self.group:
            self.group.create_task(work())


async def main(loop: asyncio.AbstractEventLoop) -> None:
    task = loop.create_task(work())
    await task
    await asyncio.create_task(work())
    results = await asyncio.gather(asyncio.ensure_future(work()), work())
    async with asyncio.TaskGroup() as tg:
        tg.create_task(work())
        tg.create_task(work())
    pending: list[asyncio.Task[None]] = []
    pending.append(asyncio.create_task(work()))
    await asyncio.wait(pending)


def not_a_task(registry: Any) -> None:
    registry.create_tasks()
    registry.create(work)
