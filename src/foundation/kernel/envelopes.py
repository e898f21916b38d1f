"""Mailbox entries the kernel puts beside user messages: calls, casts and system requests.

A call travels as ``From`` (it carries the reply future and is what ``reply`` answers); a cast
as ``Cast``; ``SysMsg`` subclasses are handled by the kernel and never shown to callbacks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from foundation.kernel.pid import Pid

if TYPE_CHECKING:
    from foundation.kernel.process import Process

__all__ = ["Cast", "From", "Request", "StateRequest", "StopRequest", "SyncRequest", "SysMsg"]


class Request:
    """A mailbox entry that carries a reply future (a call or a system request)."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[Any]) -> None:
        self.fut = fut


class From(Request):
    """The caller of a ``call``; hand it to ``reply(caller, value)`` to answer later."""

    __slots__ = ("_server", "pid", "request", "target", "timeout")

    def __init__(
        self, fut: asyncio.Future[Any], pid: Pid | None, request: Any, target: Any, timeout: Any
    ) -> None:
        self.fut = fut
        self.pid = pid
        self.request = request
        self.target = target
        self.timeout = timeout
        self._server: Process | None = None

    def __repr__(self) -> str:
        return f"From({self.pid!r})"


class Cast:
    """A cast request in a mailbox."""

    __slots__ = ("request",)

    def __init__(self, request: Any) -> None:
        self.request = request


class SysMsg:
    """A system message: handled by the kernel, never shown to callbacks."""

    __slots__ = ()


class StopRequest(SysMsg):
    """Ask a process to stop with ``reason`` (a GenServer runs ``terminate`` first)."""

    __slots__ = ("reason",)

    def __init__(self, reason: Any) -> None:
        self.reason = reason


class SyncRequest(SysMsg, Request):
    """A barrier: answered once every message sent before it has been handled."""

    __slots__ = ()


class StateRequest(SysMsg, Request):
    """Ask for the process's current state (through ``format_status``)."""

    __slots__ = ()
