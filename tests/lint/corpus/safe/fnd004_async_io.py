# ruff: noqa
"""FND004 safe: async I/O in coroutines; blocking calls only in plain functions they hand off."""

import asyncio
import subprocess
from typing import Any

import httpx
import requests


def fetch_sync(url: str) -> bytes:
    return requests.get(url).content


def run_tool() -> str:
    return subprocess.run(["ls"], capture_output=True, text=True, check=True).stdout


async def handler(url: str, tasks: Any) -> bytes:
    await asyncio.sleep(0)
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    proc = await asyncio.create_subprocess_exec("ls", stdout=asyncio.subprocess.PIPE)
    await proc.communicate()
    session = requests.Session()
    session.close()
    listing = await tasks.run_sync(run_tool)
    later = lambda: requests.get(url)

    def nested() -> bytes:
        return requests.get(url).content

    return response.content + listing.encode() + bytes(callable(later) and callable(nested))


async def not_the_library(requests: list[str], input: Any) -> None:
    requests.append("x")
    input("a callable argument, not the builtin")
