"""The process primitives: spawn, send, receive, link, monitor, exit, names.

They work from inside any process and, where they need no calling process, from the body of
``async with Runtime()``. A name is a ``str`` registered with ``name=`` at start; ``("via",
registry, key)`` resolves through a Registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from foundation.errors import CallTimeout, InvalidArgument, NoProcess, NotInProcess
from foundation.kernel.clock import wait_future
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import Process, StopRequest
from foundation.kernel.receive import receive_in
from foundation.kernel.runtime import Runtime

__all__ = [
    "ExitWaiter",
    "current_pid",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "message_queue_len",
    "monitor",
    "receive",
    "register",
    "send",
    "spawn",
    "spawn_link",
    "unlink",
    "unregister",
    "wait_exit",
    "whereis",
]


def _behaviour_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _spawn(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    *,
    link: bool,
    name: str | None,
    trap_exit: bool,
    max_mailbox: int | None,
) -> Pid:
    if not callable(fn):
        raise InvalidArgument(f"spawn needs an async function, got {fn!r}")
    rt = current_runtime()
    parent = current_process()
    if link and parent is None:
        raise NotInProcess("spawn_link needs a calling process to link to (use spawn)")

    async def body(*a: Any) -> None:
        result = fn(*a)
        if not asyncio.iscoroutine(result):
            raise InvalidArgument(f"spawn: {fn!r} is not an async function (returned {result!r})")
        await result

    proc = rt.spawn_process(
        body,
        args,
        behaviour=_behaviour_name(fn),
        parent=parent,
        link=link,
        name=name,
        trap_exit=trap_exit,
        max_mailbox=max_mailbox,
    )
    return proc.pid


def spawn(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: str | None = None,
    trap_exit: bool = False,
    max_mailbox: int | None = None,
) -> Pid:
    """Start a process running ``await fn(*args)``; it exits ``normal`` when ``fn`` returns."""
    return _spawn(fn, args, link=False, name=name, trap_exit=trap_exit, max_mailbox=max_mailbox)


def spawn_link(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: str | None = None,
    trap_exit: bool = False,
    max_mailbox: int | None = None,
) -> Pid:
    """Like ``spawn``, linked to the calling process in the same step."""
    return _spawn(fn, args, link=True, name=name, trap_exit=trap_exit, max_mailbox=max_mailbox)


def _need_process(what: str) -> Process:
    proc = current_process()
    if proc is None:
        raise NotInProcess(f"{what} must be called from inside a process")
    return proc


def _target(rt: Runtime, dest: Any) -> Process:
    proc = rt.resolve(dest)
    if proc is None:
        if type(dest) is Pid:
            raise NoProcess(f"{dest!r} is not alive", context={"target": dest})
        raise NoProcess(f"no process is registered as {dest!r}", context={"target": dest})
    return proc


def send(dest: Any, msg: Any) -> None:
    """Put ``msg`` in the mailbox of ``dest`` (a pid or name) for its ``handle_info``/``receive``.

    Raises ``NoProcess`` if the target is not alive and ``MailboxFull`` if its bounded mailbox is
    full: a message is never dropped silently.
    """
    rt = current_runtime()
    _target(rt, dest).deliver(msg)


async def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """Take the calling process's next message, or the first one ``match`` accepts.

    Raises ``ReceiveTimeout`` after ``timeout`` seconds (runtime clock) without one. Only for
    plain processes (``spawn``); a GenServer receives through its callbacks.
    """
    proc = _need_process("receive")
    if proc.server is not None:
        raise InvalidArgument("receive() cannot be used in a GenServer: use handle_info")
    return await receive_in(proc, timeout, match)


def link(dest: Any) -> None:
    """Link the calling process with ``dest`` (both ways); a dead target sends ``noproc``."""
    me = _need_process("link")
    other = me.runtime.resolve(dest)
    if other is None:
        me.signal_exit(dest if type(dest) is Pid else None, "noproc", linked=True)
        return
    if other is me:
        return
    me.link(other)


def unlink(dest: Any) -> None:
    """Remove the link between the calling process and ``dest`` (no-op if there is none)."""
    me = _need_process("unlink")
    other = me.runtime.resolve(dest)
    if other is None:
        return
    me.unlink(other)


def monitor(dest: Any) -> Ref:
    """Watch ``dest``: the caller gets ``Down(ref, pid, reason)`` once, ``noproc`` if it is dead."""
    me = _need_process("monitor")
    rt = me.runtime
    ref = rt.make_ref()
    target = rt.resolve(dest)
    if target is None:
        me.deliver_system(_down(ref, dest, "noproc"))
        return ref
    me.add_monitor(ref, target)
    return ref


def _down(ref: Ref, dest: Any, reason: Any) -> Any:
    from foundation.kernel.messages import Down

    return Down(ref, dest, reason)


def demonitor(ref: Ref, *, flush: bool = False) -> bool:
    """Stop watching; with ``flush=True`` also drop a ``Down`` for ``ref`` already queued.

    Returns True if the monitor was still active.
    """
    from foundation.kernel.messages import Down

    me = _need_process("demonitor")
    active = me.remove_monitor(ref)
    mb = me.mailbox
    if flush and mb:
        for i, msg in enumerate(mb):
            if type(msg) is Down and msg.ref is ref:
                del mb[i]
                break
    return active


def exit(dest: Any, reason: Any) -> None:
    """Send an exit signal: ``"kill"`` ends the target (reason ``killed``) and cannot be trapped.

    Otherwise a target that traps exits gets ``Exit(sender, reason)``; one that does not ends
    with ``reason``, except that ``"normal"`` is ignored. A dead target is a no-op.
    """
    rt = current_runtime()
    target = rt.resolve(dest)
    if target is None:
        return
    me = current_process()
    target.signal_exit(me.pid if me is not None else None, reason, linked=False)


def whereis(name: str) -> Pid | None:
    """The pid registered under ``name``, or None."""
    return current_runtime().whereis(name)


def register(name: str, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the calling process) under ``name``; it is freed at exit."""
    rt = current_runtime()
    proc = _need_process("register") if pid is None else _target(rt, pid)
    rt.register_name(proc, name)


def unregister(name: str) -> None:
    """Remove a name registration (no-op if the name is free)."""
    current_runtime().unregister_name(name)


def is_alive(pid: Pid) -> bool:
    """True while the process behind ``pid`` has not exited."""
    if type(pid) is not Pid:
        raise InvalidArgument(f"is_alive takes a Pid, not {pid!r}")
    return pid._proc is not None


def message_queue_len(dest: Any) -> int:
    """How many messages wait in ``dest``'s mailbox (``NoProcess`` if it is not alive)."""
    proc = _target(current_runtime(), dest)
    return len(proc.mailbox) if proc.mailbox else 0


def current_pid() -> Pid:
    """The pid of the calling process (``NotInProcess`` outside one)."""
    return _need_process("current_pid").pid


class ExitWaiter:
    """Awaitable exit reason of a process, watched from the moment it was created."""

    __slots__ = ("_clock", "_describe", "_fut", "_timeout")

    def __init__(self, rt: Runtime, proc: Process | None, timeout: float | None) -> None:
        self._clock = rt.clock
        self._timeout = timeout
        self._describe = proc.describe() if proc is not None else ""
        self._fut = proc.exit_future() if proc is not None else None

    def __await__(self) -> Generator[Any, None, Any]:
        fut = self._fut
        if fut is None:
            return "noproc"
        done = yield from wait_future(self._clock, fut, self._timeout).__await__()
        if not done:
            raise CallTimeout(
                f"{self._describe} did not exit within {self._timeout}s",
                context={"timeout": self._timeout},
            )
        return fut.result()


def wait_exit(dest: Any, timeout: float | None = None) -> ExitWaiter:
    """An awaitable of ``dest``'s exit reason (``noproc`` if it is not alive now).

    It watches from the moment ``wait_exit`` is called, so an exit between that and the
    ``await`` is not missed. For code that is not a process (a runtime body, a test); processes
    use ``monitor``. Raises ``CallTimeout`` after ``timeout`` seconds of the runtime clock.
    """
    rt = current_runtime()
    return ExitWaiter(rt, rt.resolve(dest), timeout)


def stop_request(dest: Any, reason: Any) -> Process:
    """Queue an orderly stop for ``dest`` (kernel use: ``GenServer.stop``)."""
    rt = current_runtime()
    proc = _target(rt, dest)
    proc.deliver_system(StopRequest(reason))
    return proc
