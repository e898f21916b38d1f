"""What the operations-services tests share: a recording target and fresh virtual runtimes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from foundation import GenServer, NoReply, Reply, Runtime
from foundation.errors import PersistenceError
from foundation.kernel.context import RUNTIME, current_runtime
from foundation.kernel.process import From
from foundation.persistence import MemoryStore
from foundation.testing import VirtualClock, VirtualTimeLoop

T = TypeVar("T")


class Inbox(GenServer):
    """Records what it gets: infos as ``(message, clock time)``, calls acknowledged ("ack")
    unless it was told to be silent (``cast(inbox, True)``)."""

    async def init(self, args: Any) -> dict[str, Any]:
        return {"got": [], "silent": False}

    async def handle_call(self, request: Any, caller: From, state: dict[str, Any]) -> Any:
        if request == "got":
            return Reply(list(state["got"]), state)
        if state["silent"]:
            return NoReply(state)
        state["got"].append(request)
        return Reply("ack", state)

    async def handle_cast(self, request: Any, state: dict[str, Any]) -> Any:
        state["silent"] = request
        return state

    async def handle_info(self, msg: Any, state: dict[str, Any]) -> Any:
        state["got"].append((msg, current_runtime().clock.now()))
        return state


def in_fresh_runtime(store: Any, main: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``main(rt)`` in a new Runtime on its own virtual clock (starting at 0) with ``store``,
    then shut it down: one "OS process" of a test that restarts the whole system."""
    loop = VirtualTimeLoop()
    rt = Runtime(clock=VirtualClock(), store=store)

    async def run() -> T:
        RUNTIME.set(rt)
        rt.start()
        try:
            return await main(rt)
        finally:
            await rt.shutdown()

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


class FailingStore(MemoryStore):
    """A MemoryStore whose next ``fail_saves`` saves raise ``PersistenceError`` (and change
    nothing), as a full disk or a lost database connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_saves = 0

    async def save(self, key: str, data: dict[str, Any], expected_version: int | None,
                   *, schema_version: int = 1) -> int:  # fmt: skip
        if self.fail_saves:
            self.fail_saves -= 1
            raise PersistenceError(f"save of {key!r} failed (injected)")
        return await super().save(key, data, expected_version, schema_version=schema_version)
