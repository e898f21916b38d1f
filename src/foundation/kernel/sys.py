"""System requests any process answers between its messages (as OTP's ``sys`` module).

``sync(dest)`` returns once every message sent to ``dest`` before it has been handled (a
barrier), so a test or an operator can make any cast synchronous; ``get_state(dest)`` returns a
GenServer's current state. Both queue behind earlier messages, never ahead of them.
"""

from __future__ import annotations

from typing import Any

from foundation.errors import CallTimeout, NoProcess
from foundation.kernel.clock import wait_future
from foundation.kernel.context import current_runtime
from foundation.kernel.process import Request, StateRequest, SyncRequest

__all__ = ["get_state", "sync"]


async def _request(dest: Any, req_type: type[Request], timeout: float | None, what: str) -> Any:
    rt = current_runtime()
    proc = rt.resolve(dest)
    if proc is None:
        raise NoProcess(f"{what}: {dest!r} is not alive", context={"target": dest})
    fut = rt.loop.create_future()
    proc.deliver_system(req_type(fut))
    if not await wait_future(rt.clock, fut, timeout):
        fut.cancel()  # abandoned: the target's late answer (or failure) goes nowhere
        raise CallTimeout(
            f"{what}: {proc.describe()} did not reach the request within {timeout}s",
            context={"target": dest, "timeout": timeout},
        )
    return fut.result()


async def sync(dest: Any, timeout: float | None = 5.0) -> None:
    """Wait until ``dest`` has handled every message sent to it before this call."""
    await _request(dest, SyncRequest, timeout, "sync")


async def get_state(dest: Any, timeout: float | None = 5.0) -> Any:
    """The current state of the GenServer ``dest`` (None for a plain process)."""
    return await _request(dest, StateRequest, timeout, "get_state")
