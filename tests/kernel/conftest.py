"""Shared test processes for kernel tests."""

from __future__ import annotations

import asyncio
from typing import Any

from foundation import GenServer, Reply, Stop


class Worker(GenServer):
    """A worker that logs its lifecycle into a shared list and stops or crashes on request."""

    trap_exit = True

    async def init(self, args: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
        name, log = args
        log.append(("start", name))
        return (name, log)

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        if request == "ping":
            return Reply("pong", state)
        if request == "crash":
            raise RuntimeError(f"{state[0]} crashed")
        if isinstance(request, tuple) and request[0] == "stop":
            return Stop(request[1], state, reply="ok")
        return Reply(None, state)

    async def terminate(self, reason: Any, state: Any) -> None:
        state[1].append(("stop", state[0], reason if isinstance(reason, str | tuple) else "crash"))


class Stubborn(GenServer):
    """Traps exits and never finishes terminating: only a kill stops it."""

    trap_exit = True

    async def terminate(self, reason: Any, state: Any) -> None:
        await asyncio.Event().wait()  # never set: only a kill ends this process
