"""A process: one asyncio task with a mailbox, links, monitors and an exit reason.

Exit-signal semantics (as in OTP): when a process exits with ``reason``, each linked process that
traps exits receives ``Exit(pid, reason)``; one that does not is killed with the same reason,
unless the reason is ``normal``. ``exit(pid, "kill")`` cannot be trapped and ends the target
with reason ``killed``. Each monitor delivers ``Down(ref, pid, reason)`` once. Messages between
one pair of processes arrive in send order, exit signals included. When a process ends, every
call queued in its mailbox or in flight fails with ``ProcessExited``: no caller is left hanging.

This module holds the mechanism; the public functions are in ``foundation.kernel.api``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation.errors import InitError, MailboxFull, ProcessExited, format_reason
from foundation.kernel.context import PROCESS
from foundation.kernel.envelopes import (
    Cast,
    From,
    Request,
    StateRequest,
    StopRequest,
    SyncRequest,
    SysMsg,
)
from foundation.kernel.messages import UNSET, Down, Exit
from foundation.kernel.pid import Pid, Ref

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime

__all__ = [
    "Cast",
    "ExitNow",
    "From",
    "Process",
    "ProcessInfo",
    "Request",
    "StateRequest",
    "StopRequest",
    "SyncRequest",
    "SysMsg",
]

log = logging.getLogger("foundation.kernel")

STARTING = "starting"
RUNNING = "running"
WAITING = "waiting"
EXITED = "exited"


class ExitNow(BaseException):
    """Internal: unwinds a plain process that was asked to stop with ``reason``."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of one process, as ``Runtime.processes()`` reports it."""

    pid: Pid
    name: str | None
    behaviour: str
    mailbox: int
    status: str
    restarts: int
    links: tuple[Pid, ...]
    monitors: tuple[Pid, ...]
    monitored_by: tuple[Pid, ...]
    trap_exit: bool
    parent: Pid | None


class Process:
    """The kernel's record of one process (users hold its ``Pid``, never this object)."""

    __slots__ = (
        "behaviour",
        "deferred",
        "exit_fut",
        "inflight",
        "is_supervisor",
        "last_state",
        "links",
        "mailbox",
        "max_mailbox",
        "monitors_in",
        "monitors_out",
        "name",
        "on_exit",
        "parent",
        "pending_exit",
        "pid",
        "reason",
        "restarts",
        "runtime",
        "server",
        "start_fut",
        "started",
        "status",
        "task",
        "trap_exit",
        "via",
        "waiter",
    )

    def __init__(
        self,
        runtime: Runtime,
        pid_id: int,
        *,
        behaviour: str,
        trap_exit: bool,
        max_mailbox: int | None,
        parent: Process | None,
    ) -> None:
        self.runtime = runtime
        self.pid = Pid(runtime.node, pid_id, self)
        self.behaviour = behaviour
        self.trap_exit = trap_exit
        self.max_mailbox = max_mailbox
        self.parent = parent
        # Created on the first message (most idle processes never need one); never dropped.
        self.mailbox: deque[Any] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.name: str | None = None
        self.via: Any = None
        self.task: asyncio.Task[None] | None = None
        self.status = STARTING
        self.started = False
        self.pending_exit: Any = UNSET
        self.reason: Any = None
        self.links: set[Process] = set()
        self.monitors_in: dict[Ref, Process] | None = None
        self.monitors_out: dict[Ref, Process] | None = None
        self.inflight: Request | None = None
        self.deferred: set[From] | None = None
        self.exit_fut: asyncio.Future[Any] | None = None
        self.on_exit: list[Callable[[Any], None]] | None = None
        # What a starter awaits until init has finished (GenServer.start); failed by ``finish``.
        self.start_fut: asyncio.Future[Any] | None = None
        self.restarts = 0
        self.server: Any = None
        self.last_state: Any = UNSET
        self.is_supervisor = False

    def __repr__(self) -> str:
        return f"<Process {self.pid!r} {self.behaviour} {self.status}>"

    # -- delivery -------------------------------------------------------------------------

    def deliver(self, msg: Any) -> None:
        """Append a user message (respecting ``max_mailbox``) and wake the process."""
        mb = self.mailbox
        if mb is None:
            mb = self.mailbox = deque()
        elif self.max_mailbox is not None and len(mb) >= self.max_mailbox:
            raise MailboxFull(
                f"mailbox of {self.describe()} is full ({self.max_mailbox} messages)",
                context={"pid": self.pid, "max_mailbox": self.max_mailbox},
            )
        mb.append(msg)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def deliver_system(self, msg: Any) -> None:
        """Append a kernel message (exit signals, monitors, system requests): never bounded."""
        mb = self.mailbox
        if mb is None:
            mb = self.mailbox = deque()
        mb.append(msg)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def wake(self) -> None:
        """Wake the process if it waits for a message (the delivery paths have this inlined)."""
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def describe(self) -> str:
        return f"{self.pid!r} ({self.name})" if self.name else repr(self.pid)

    # -- exit signals -----------------------------------------------------------------------

    def signal_exit(self, sender: Pid | None, reason: Any, *, linked: bool) -> None:
        """Deliver an exit signal from ``sender`` (a link, or an explicit ``exit``)."""
        if self.status is EXITED:
            return
        is_str = isinstance(reason, str)
        if not linked and is_str and reason == "kill":
            self.kill_with("killed")
            return
        if self.trap_exit:
            self.deliver_system(Exit(sender, reason))
            return
        if is_str and reason == "normal" and (linked or sender is not self.pid):
            return
        self.kill_with(reason)

    def kill_with(self, reason: Any) -> None:
        """End the process with ``reason`` at its next suspension point (cannot be trapped)."""
        if self.status is EXITED:
            return
        if self.pending_exit is UNSET or reason == "killed":
            self.pending_exit = reason
        task = self.task
        if self.started and task is not None and not task.done():
            task.cancel()

    # -- life ---------------------------------------------------------------------------------

    async def main(self, body: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        """The task's coroutine: run ``body``, turn how it ended into an exit reason, finish."""
        PROCESS.set(self)
        reason: Any = "normal"
        try:
            if self.pending_exit is UNSET:
                self.started = True
                self.status = RUNNING
                coro = body(*args)
                del args  # the body keeps what it needs; an idle process holds no more
                result = await coro
                if result is not None:
                    reason = result
        except asyncio.CancelledError:
            reason = "killed"
        except ExitNow as stop:
            reason = stop.reason
        except Exception as exc:
            reason = exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: finish, then let it fly
            self.finish(exc)
            raise
        if self.pending_exit is not UNSET:
            reason = self.pending_exit
        if self.status is not EXITED:  # GenServer.stop may have run the exit already
            self.finish(reason)

    def finish(self, reason: Any) -> None:
        """Exit processing: fail callers, signal links, fire monitors, free the pid."""
        if self.status is EXITED:
            return
        self.status = EXITED
        self.reason = reason
        self.waiter = None
        pid = self.pid
        rt = self.runtime
        rt.procs.pop(pid.id, None)  # Runtime.forget, inlined: every exit runs it
        rt.top.pop(pid.id, None)
        if self.name is not None and rt.names.get(self.name) is self:
            del rt.names[self.name]
        start_fut = self.start_fut
        if start_fut is not None:
            self.start_fut = None
            if not start_fut.done():  # killed or crashed before init finished
                start_fut.set_exception(
                    InitError(
                        f"{self.behaviour} exited during init: {format_reason(reason)}",
                        reason=reason,
                        context={"pid": pid},
                    )
                )
        inflight = self.inflight
        if inflight is not None:
            self.inflight = None
            self._fail_request(inflight, reason)
        if self.mailbox:
            for msg in self.mailbox:
                if isinstance(msg, Request):
                    self._fail_request(msg, reason)
            self.mailbox.clear()
        if self.deferred:
            for caller in self.deferred:
                self._fail_request(caller, reason)
            self.deferred = None
        links = self.links
        self.links = set()
        for other in links:
            other.links.discard(self)
            other.signal_exit(pid, reason, linked=True)
        watching = self.monitors_out
        if watching:
            self.monitors_out = None
            for ref, target in watching.items():
                target.drop_monitor_in(ref)
        watchers = self.monitors_in
        if watchers:
            self.monitors_in = None
            for ref, watcher in watchers.items():
                watcher.drop_monitor_out(ref)
                watcher.deliver_system(Down(ref, pid, reason))
        pid._proc = None
        if self.exit_fut is not None and not self.exit_fut.done():
            self.exit_fut.set_result(reason)
        callbacks = self.on_exit
        self.on_exit = None
        if callbacks:
            for cb in callbacks:
                cb(reason)
        rt.exited(self, reason)

    def _fail_request(self, req: Request, reason: Any) -> None:
        fut = req.fut
        if fut.done():
            return
        what = "call to" if isinstance(req, From) else "request to"
        fut.set_exception(
            ProcessExited(
                f"{what} {self.describe()} failed: the process exited with reason "
                f"{format_reason(reason)} before it replied",
                reason=reason,
                context={"pid": self.pid, "name": self.name},
            )
        )

    def link(self, other: Process) -> None:
        """Link this process and ``other`` (both ways)."""
        self.links.add(other)
        other.links.add(self)

    def unlink(self, other: Process) -> None:
        """Remove the link between this process and ``other`` (no-op if none)."""
        self.links.discard(other)
        other.links.discard(self)

    def add_monitor(self, ref: Ref, target: Process) -> None:
        """Record that this process watches ``target`` under ``ref`` (both sides)."""
        if self.monitors_out is None:
            self.monitors_out = {}
        self.monitors_out[ref] = target
        if target.monitors_in is None:
            target.monitors_in = {}
        target.monitors_in[ref] = self

    def remove_monitor(self, ref: Ref) -> bool:
        """Stop watching under ``ref`` (both sides); True if the monitor was active."""
        target = self.monitors_out.pop(ref, None) if self.monitors_out else None
        if target is None:
            return False
        target.drop_monitor_in(ref)
        return True

    def drop_monitor_in(self, ref: Ref) -> None:
        if self.monitors_in:
            self.monitors_in.pop(ref, None)

    def drop_monitor_out(self, ref: Ref) -> None:
        if self.monitors_out:
            self.monitors_out.pop(ref, None)

    def exit_future(self) -> asyncio.Future[Any]:
        """A future resolved with the exit reason when this process has exited."""
        fut = self.exit_fut
        if fut is None:
            fut = self.exit_fut = self.runtime.loop.create_future()
            if self.status is EXITED:
                fut.set_result(self.reason)
        return fut

    def add_exit_callback(self, cb: Callable[[Any], None]) -> None:
        """Run ``cb(reason)`` synchronously when this process exits (kernel use only)."""
        if self.on_exit is None:
            self.on_exit = []
        self.on_exit.append(cb)

    def remove_exit_callback(self, cb: Callable[[Any], None]) -> None:
        """Forget an exit callback (no-op if it already ran or was never added)."""
        callbacks = self.on_exit
        if callbacks is not None and cb in callbacks:
            callbacks.remove(cb)
            if not callbacks:
                self.on_exit = None

    async def wait_exited(self, timeout: float | None) -> bool:
        """Wait until this process has exited or ``timeout`` clock-seconds pass; True if exited.

        Woken straight from ``finish`` (no future callback in between), which saves a loop
        iteration on every stop.
        """
        if self.status is EXITED:
            return True
        if timeout is not None and timeout <= 0:
            return False
        rt = self.runtime
        waiter: asyncio.Future[bool] = rt.loop.create_future()

        def on_exit(_: Any) -> None:
            if not waiter.done():
                waiter.set_result(True)

        callbacks = self.on_exit  # add_exit_callback, inlined (every GenServer.stop runs this)
        if callbacks is None:
            callbacks = self.on_exit = []
        callbacks.append(on_exit)
        timer = None if timeout is None else rt.clock.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self.on_exit is not None:  # None once finish has run the callbacks
                self.remove_exit_callback(on_exit)

    # -- introspection ------------------------------------------------------------------------

    def info(self) -> ProcessInfo:
        status = self.status
        if status is RUNNING and self.waiter is not None:
            status = WAITING
        return ProcessInfo(
            pid=self.pid,
            name=self.name,
            behaviour=self.behaviour,
            mailbox=len(self.mailbox) if self.mailbox else 0,
            status=status,
            restarts=self.restarts,
            links=tuple(p.pid for p in self.links),
            monitors=tuple(p.pid for p in (self.monitors_out or {}).values()),
            monitored_by=tuple(p.pid for p in (self.monitors_in or {}).values()),
            trap_exit=self.trap_exit,
            parent=self.parent.pid if self.parent is not None else None,
        )


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
