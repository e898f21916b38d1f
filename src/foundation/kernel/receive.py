"""Selective receive for plain processes (``spawn``): a GenServer receives through callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from foundation.errors import ReceiveTimeout
from foundation.kernel.envelopes import StateRequest, StopRequest, SyncRequest, SysMsg
from foundation.kernel.process import RUNNING, WAITING, ExitNow, Process

__all__ = ["handle_plain_sys", "receive_in"]


def handle_plain_sys(msg: SysMsg) -> None:
    """System messages for a process that is not a GenServer."""
    if isinstance(msg, SyncRequest | StateRequest):
        if not msg.fut.done():
            msg.fut.set_result(None)
    elif isinstance(msg, StopRequest):
        raise ExitNow(msg.reason)


async def receive_in(
    proc: Process, timeout: float | None = None, match: Callable[[Any], bool] | None = None
) -> Any:
    """Take the next message (or the first that ``match`` accepts), waiting if needed."""
    rt = proc.runtime
    expired = False
    timer = None

    def on_timeout() -> None:
        nonlocal expired
        expired = True
        w = proc.waiter
        if w is not None:
            proc.waiter = None
            if not w.done():
                w.set_result(None)

    try:
        while True:
            mb = proc.mailbox
            if mb is None:
                pass
            elif match is None:
                while mb:
                    msg = mb.popleft()
                    if isinstance(msg, SysMsg):
                        handle_plain_sys(msg)
                        continue
                    if rt.watchers:
                        rt.notify_watchers()
                    return msg
            else:
                i = 0
                while i < len(mb):
                    msg = mb[i]
                    if isinstance(msg, SysMsg):
                        del mb[i]
                        handle_plain_sys(msg)
                        continue
                    if match(msg):
                        del mb[i]
                        if rt.watchers:
                            rt.notify_watchers()
                        return msg
                    i += 1
            if expired:
                raise ReceiveTimeout(
                    f"{proc.describe()} received no matching message within {timeout}s",
                    context={"pid": proc.pid, "timeout": timeout},
                )
            if timeout is not None and timer is None:
                timer = rt.clock.call_later(timeout, on_timeout)
            waiter: asyncio.Future[None] = rt.loop.create_future()
            proc.waiter = waiter
            proc.status = WAITING
            try:
                await waiter
            finally:
                proc.status = RUNNING
    finally:
        if timer is not None:
            timer.cancel()
