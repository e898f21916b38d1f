"""Calls, casts and replies: how any process talks to a GenServer.

``call`` puts a request with a future in the server's mailbox and waits for the answer under a
deadline that costs no loop timer of its own (calls due in the same millisecond share one
bucket, ``CallDeadlines``); ``cast`` only appends; ``reply`` answers a call that ``handle_call``
deferred with ``NoReply``. Errors: ``CallTimeout``, ``NoProcess``, ``ProcessExited`` (the
server exited before answering), ``MailboxFull``.
"""

from __future__ import annotations

from math import ceil, inf
from typing import Any

from foundation.errors import InvalidArgument, NoProcess
from foundation.kernel.context import PROCESS, current_runtime
from foundation.kernel.envelopes import Cast, From
from foundation.kernel.pid import Pid

__all__ = ["answer", "call", "cast", "check_timeout", "reply"]


def check_timeout(timeout: object, action: str, target: object) -> None:
    """Refuse a timeout that is not a number of seconds >= 0 (``None``: wait forever), naming
    the ``action`` on ``target`` it was given for."""
    if timeout is not None and (
        (type(timeout) is not float and type(timeout) is not int) or not 0 <= timeout < inf
    ):
        raise InvalidArgument(
            f"{action} {target!r}: invalid timeout {timeout!r} (seconds >= 0, or None to wait "
            "forever)",
            context={"target": target, "timeout": repr(timeout)},
        )


async def call(dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Send ``request`` to a GenServer and wait for its reply (``timeout=None`` waits forever).

    Raises ``CallTimeout``, ``NoProcess`` (dead target or unknown name), ``ProcessExited``
    (the target exited before replying) or ``MailboxFull``.
    """
    if type(dest) is Pid:
        proc = dest._proc
    else:
        proc = current_runtime().resolve(dest)
    if proc is None:
        raise NoProcess(
            f"call to {dest!r}: no such process"
            + (
                " (it is not alive)"
                if type(dest) is Pid
                else " (no process registered under that name)"
            ),
            context={"target": dest},
        )
    me = PROCESS.get()
    if me is proc:
        raise InvalidArgument(f"{proc.describe()} cannot call itself (it would wait forever)")
    if timeout is not None and (
        (type(timeout) is not float and type(timeout) is not int) or not 0 <= timeout < inf
    ):  # check_timeout's test, inlined (the hottest path), before anything is delivered
        check_timeout(timeout, "call to", dest)
    rt = proc.runtime
    fut = rt.loop.create_future()
    req = From(fut, me.pid if me is not None else None, request, dest, timeout)
    proc.deliver(req)
    if timeout is None:
        return await fut
    # CallDeadlines.add, inlined: this is the hottest path of the kernel.
    deadlines = rt.deadlines
    key = ceil((deadlines.now() + timeout) * 1000.0)
    bucket = deadlines.buckets.get(key)
    if bucket is None:
        bucket = deadlines.open(key)
    bucket.add(req)
    try:
        return await fut
    finally:
        bucket.discard(req)


def cast(dest: Any, request: Any) -> None:
    """Send ``request`` to a GenServer's ``handle_cast`` without waiting.

    Ordered before any later call or cast from the same sender. Raises ``NoProcess`` if the
    target is not alive and ``MailboxFull`` if its bounded mailbox is full.
    """
    if type(dest) is Pid:
        proc = dest._proc
    else:
        proc = current_runtime().resolve(dest)
    if proc is None:
        raise NoProcess(f"cast to {dest!r}: no such process", context={"target": dest})
    proc.deliver(Cast(request))


def reply(caller: From, value: Any) -> None:
    """Answer a call that ``handle_call`` deferred with ``NoReply`` (a second answer is ignored).

    Inside a server that holds replies until its state is durable (a persistent server), the
    answer is sent once the running handler's state has been saved.
    """
    me = PROCESS.get()
    if me is not None:
        server = me.server
        if server is not None and server._held_replies is not None:
            server._held_replies.append((caller, value))
            return
    answer(caller, value)


def answer(caller: From, value: Any) -> None:
    """Answer a deferred call now, whatever the current server holds (``reply``'s last step)."""
    fut = caller.fut
    if not fut.done():
        fut.set_result(value)
    server = caller._server
    if server is not None:
        caller._server = None
        if server.deferred:
            server.deferred.discard(caller)
