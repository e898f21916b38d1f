# ruff: noqa
"""FND001: tasks created and dropped."""

import asyncio
from asyncio import create_task, ensure_future


async def work() -> None: ...


async def main(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.create_task(work())  # expect: FND001
    loop.create_task(work())  # expect: FND001
    asyncio.ensure_future(work())  # expect: FND001
    create_task(work())  # expect: FND001
    ensure_future(work())  # expect: FND001
    _ = asyncio.create_task(work())  # expect: FND001
    asyncio.get_running_loop().create_task(work())  # expect: FND001


class Server:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def start(self) -> None:
        self.loop.create_task(work())  # expect: FND001
