"""GenServer: a process that owns a state and answers calls, casts and info messages.

Callbacks (all async but ``format_status``): ``init(args) -> state`` (or ``Continue``/``Stop``);
``handle_call(request, caller, state)`` returns ``Reply(value, state)``, ``NoReply(state)``
(answer later with ``reply(caller, value)``) or ``Stop(reason, state, reply=...)``;
``handle_cast(request, state)`` and ``handle_info(msg, state)`` return the new state, ``NoReply``,
``Continue`` or ``Stop``; ``handle_continue(arg, state)`` runs before the next message;
``terminate(reason, state)`` runs on an orderly stop, on a callback crash, and when a trapping
server gets an exit signal from its parent. Any other return value crashes the server with
``BadReturn``. ``format_status(state)`` redacts state in crash reports.

``start``/``start_link`` return once ``init`` has finished; a failing ``init`` raises
``InitError`` to the starter (which stays alive even when linked). ``call`` raises
``CallTimeout``, ``NoProcess`` or ``ProcessExited``; the caller never crashes because the callee
did, and a late reply after a timeout is discarded. ``call``, ``cast`` and ``reply`` are
``foundation.kernel.calls``'s (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from foundation.errors import (
    AlreadyStarted,
    BadReturn,
    CallTimeout,
    InitError,
    InvalidArgument,
    UnexpectedMessage,
    format_reason,
)
from foundation.kernel.api import stop_request
from foundation.kernel.calls import answer, call, cast, check_timeout, reply
from foundation.kernel.child_spec import ChildSpec, Restart, Shutdown
from foundation.kernel.context import PROCESS, RUNTIME, current_runtime
from foundation.kernel.messages import (
    UNSET,
    Continue,
    Control,
    Exit,
    Handed,
    NoReply,
    Reply,
    Stop,
)
from foundation.kernel.pid import Pid
from foundation.kernel.process import (
    EXITED,
    Cast,
    From,
    Process,
    StateRequest,
    StopRequest,
    SyncRequest,
    SysMsg,
)

__all__ = ["GenServer", "MailboxHold", "answer", "call", "cast", "reply"]

log = logging.getLogger("foundation.kernel")


class _Stopping(Exception):
    """Internal: unwinds the server loop towards ``terminate`` with a reason and state."""

    def __init__(self, reason: Any, state: Any) -> None:
        self.reason = reason
        self.state = state


class MailboxHold:
    """A server's mailbox held shut by ``GenServer.hold_mailbox`` until ``release_mailbox``.

    The loop makes a future to wait on only when a message arrives while the hold is on (the
    usual save is answered before the next message: nothing to create, set or await)."""

    __slots__ = ("error", "released", "waiter")

    def __init__(self) -> None:
        self.released = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None


def _is_via(name: Any) -> bool:
    return isinstance(name, tuple) and len(name) == 3 and name[0] == "via"


class GenServer:
    """Subclass and override the callbacks you need; start with ``start``/``start_link``."""

    trap_exit: ClassVar[bool] = False
    is_supervisor: ClassVar[bool] = False
    pid: Pid
    _held_replies: list[tuple[From, Any]] | None = None
    _hold: MailboxHold | None = None

    # -- callbacks --------------------------------------------------------------------------

    async def init(self, args: Any) -> Any:
        """Return the initial state (default: ``args``)."""
        return args

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        raise UnexpectedMessage(f"{type(self).__name__} has no handle_call for {request!r}")

    async def handle_cast(self, request: Any, state: Any) -> Any:
        raise UnexpectedMessage(f"{type(self).__name__} has no handle_cast for {request!r}")

    async def handle_info(self, msg: Any, state: Any) -> Any:
        log.warning("%s %r: unexpected message %r ignored", type(self).__name__, self.pid, msg)
        return state

    async def handle_continue(self, arg: Any, state: Any) -> Any:
        raise UnexpectedMessage(f"{type(self).__name__} has no handle_continue for {arg!r}")

    async def terminate(self, reason: Any, state: Any) -> None:
        """Clean up before the process exits (not called when it is killed)."""

    def format_status(self, state: Any) -> Any:
        """What crash reports show of the state; override to redact secrets."""
        return state

    # -- starting and stopping ---------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        args: Any = None,
        *,
        name: Any = None,
        timeout: float | None = 5.0,
        max_mailbox: int | None = None,
    ) -> Pid:
        """Start an unlinked server; returns its pid once ``init`` has finished."""
        return await cls._start(
            args, name=name, timeout=timeout, max_mailbox=max_mailbox, link=False
        )

    @classmethod
    async def start_link(
        cls,
        args: Any = None,
        *,
        name: Any = None,
        timeout: float | None = 5.0,
        max_mailbox: int | None = None,
    ) -> Pid:
        """Start a server linked to the calling process (unlinked from a runtime body)."""
        return await cls._start(
            args, name=name, timeout=timeout, max_mailbox=max_mailbox, link=True
        )

    @classmethod
    async def _start(
        cls,
        args: Any,
        *,
        name: Any,
        timeout: float | None,
        max_mailbox: int | None,
        link: bool,
        setup: Any = None,
    ) -> Pid:
        rt = RUNTIME.get()
        if rt is None:
            rt = current_runtime()  # raises NoRuntime
        check_timeout(timeout, "start of", cls.__name__)  # before any process exists
        parent = PROCESS.get()
        server = cls()
        if setup is not None:
            setup(server)
        via = None
        if name is not None:
            if _is_via(name):
                via = name
            elif not isinstance(name, str):
                raise InvalidArgument(
                    f"invalid name for {cls.__name__}: {name!r} (a str or ('via', registry, key))"
                )
        started: asyncio.Future[Pid] = rt.loop.create_future()
        proc = rt.spawn_process(
            server._serve,
            (args, started, via),
            behaviour=cls.__name__,
            parent=parent,
            link=link and parent is not None,
            name=name if via is None else None,
            trap_exit=cls.trap_exit,
            max_mailbox=max_mailbox,
            server=server,
            is_supervisor=cls.is_supervisor,
        )
        server.pid = proc.pid
        proc.start_fut = started  # failed with InitError if the process exits during init
        # Await ``started`` itself (it is ours alone), its deadline in the call-deadline wheel:
        # no timer of its own and no extra loop pass.
        bucket = None
        if timeout is not None:
            deadline = From(started, None, "init", cls, timeout)
            bucket = rt.deadlines.add(deadline, timeout)
        try:
            return await started
        except InitError as exc:
            if isinstance(exc.reason, AlreadyStarted):
                raise exc.reason from None  # a taken via name: same error as a taken local name
            raise
        except CallTimeout:
            if parent is not None:
                proc.unlink(parent)
            proc.kill_with("killed")
            raise InitError(
                f"{cls.__name__} did not finish init within {timeout}s; it was killed",
                reason="timeout",
                context={"pid": proc.pid},
            ) from None
        finally:
            if bucket is not None:
                bucket.discard(deadline)

    @classmethod
    def child_spec(
        cls,
        args: Any = None,
        *,
        id: Any = None,
        restart: Restart = "permanent",
        shutdown: Shutdown = 5.0,
        name: Any = None,
        timeout: float | None = 5.0,
        max_mailbox: int | None = None,
    ) -> ChildSpec:
        """A supervisor child spec that runs ``start_link(args, name=...)``.

        ``id`` defaults to ``name`` when it is a str, else to the class name.
        """

        async def start() -> Pid:
            return await cls.start_link(args, name=name, timeout=timeout, max_mailbox=max_mailbox)

        if id is None:
            id = name if isinstance(name, str) else cls.__name__
        return ChildSpec(id=id, start=start, restart=restart, shutdown=shutdown, type="worker")

    @staticmethod
    async def stop(target: Any, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop a server in order (``terminate`` runs) and wait until it has exited.

        A server that waits on an empty mailbox, holds no save in flight and has no
        ``terminate`` of its own has nothing left to run: it exits here and now (links, monitors,
        name and callers as for any exit), and its task ends on the loop's next pass.
        """
        if timeout is not None:
            check_timeout(timeout, "stop of", target)
        proc = target._proc if type(target) is Pid else None
        if proc is not None:
            # A server's only mailbox waiter is its loop's (receive() is refused in a server).
            waiter = proc.waiter
            server = proc.server
            if (
                waiter is not None
                and server is not None
                and server._hold is None
                and proc.pending_exit is UNSET
                and type(server).terminate is GenServer.terminate
                and not waiter.done()
            ):
                proc.finish(reason)
                waiter.set_result(None)  # the server loop sees it has exited and returns
                return
            proc.deliver_system(StopRequest(reason))
        else:
            proc = stop_request(target, reason)  # a name, or a dead pid: NoProcess
        if not await proc.wait_exited(timeout):
            raise CallTimeout(
                f"{proc.describe()} did not stop within {timeout}s",
                context={"pid": proc.pid, "timeout": timeout},
            )

    # -- the server loop ----------------------------------------------------------------------

    def _init_failed(self, proc: Process, started: asyncio.Future[Pid], reason: Any) -> Any:
        """``init`` failed or stopped: the starter gets ``InitError``; returns the exit reason."""
        parent = proc.parent
        if parent is not None:  # the starter gets the error, not an exit signal
            proc.unlink(parent)
        if not started.done():
            err = InitError(
                f"{type(self).__name__} failed in init: {format_reason(reason)}",
                reason=reason,
                context={"pid": proc.pid},
            )
            if isinstance(reason, BaseException):
                err.__cause__ = reason
            started.set_exception(err)
        return reason

    async def _serve(self, args: Any, started: asyncio.Future[Pid], via: Any) -> Any:
        proc = PROCESS.get()
        assert proc is not None
        proc.status = "starting"
        cont: Any = UNSET
        try:
            if via is not None:
                from foundation.kernel.registry import register_via

                await register_via(proc, via[1], via[2])
            state = await self.init(args)
            if isinstance(state, Control):
                if isinstance(state, Stop):
                    return self._init_failed(proc, started, state.reason)
                if not isinstance(state, Continue):
                    raise BadReturn(f"{type(self).__name__}.init returned {state!r}")
                state, cont = state.state, state.arg
        except Exception as exc:
            return self._init_failed(proc, started, exc)
        proc.status = "running"
        proc.start_fut = None
        if not started.done():
            started.set_result(proc.pid)
        del args, started, via  # an idle server keeps nothing it no longer needs
        rt = proc.runtime
        create_future = rt.loop.create_future
        trap = proc.trap_exit
        parent_pid = proc.parent.pid if proc.parent is not None else None
        handle_call = self.handle_call
        unset = UNSET
        try:
            if cont is not UNSET:
                state = await self._continue(cont, state)
            while True:
                mb = proc.mailbox
                hold = self._hold
                if hold is not None and (mb or hold.released):
                    if not hold.released:  # a message came: the change before must be final
                        waiter = hold.waiter = create_future()
                        await waiter
                    if self._hold is hold:
                        self._hold = None
                    if hold.error is not None:
                        raise hold.error  # the change before failed: crash now
                if not mb:
                    waiter = create_future()
                    proc.waiter = waiter
                    await waiter
                    if proc.status is EXITED:  # stopped in place by GenServer.stop
                        return proc.reason
                    continue
                msg = mb.popleft()
                t = type(msg)
                if t is From:
                    proc.inflight = msg
                    result = await handle_call(msg.request, msg, state)
                    if type(result) is Reply:
                        fut = msg.fut
                        if not fut.done():
                            fut.set_result(result.value)
                        proc.inflight = None
                        state = result.state
                        if result.continue_with is not unset:
                            state = await self._continue(result.continue_with, state)
                    elif type(result) is Handed:  # answered by whoever holds the reply
                        proc.inflight = None
                        state = result.state
                    else:
                        state = await self._call_result(proc, msg, result)
                elif t is Cast:
                    result = await self.handle_cast(msg.request, state)
                    if isinstance(result, Control):
                        state = await self._control(result, "handle_cast")
                    else:
                        state = result
                elif t is StopRequest:
                    return await self._terminate(proc, msg.reason, state)
                elif isinstance(msg, SysMsg):
                    state = self._system(msg, state)
                else:
                    if t is Exit and trap and msg.pid is parent_pid:
                        raise _Stopping(msg.reason, state)
                    result = await self.handle_info(msg, state)
                    if isinstance(result, Control):
                        state = await self._control(result, "handle_info")
                    else:
                        state = result
                if rt.watchers:
                    rt.notify_watchers()
        except _Stopping as stop:
            return await self._terminate(proc, stop.reason, stop.state)
        except Exception as exc:
            proc.last_state = state
            await self._terminate(proc, exc, state)
            raise

    # -- holding the mailbox -----------------------------------------------------------------

    def hold_mailbox(self) -> MailboxHold:
        """Take no further message until the returned hold is released with
        ``release_mailbox`` (for a change that is not final yet: a save in flight). Released
        with an error, the server crashes with it as soon as it sees it, message or not."""
        hold = self._hold = MailboxHold()
        return hold

    def release_mailbox(self, hold: MailboxHold, error: BaseException | None = None) -> None:
        """Let the server take messages again, or (``error``) make it crash with ``error``."""
        if hold.released:
            return
        hold.released = True
        if error is None:
            if self._hold is hold:
                self._hold = None  # the loop has nothing left to look at
        else:
            hold.error = error
        waiter = hold.waiter
        if waiter is not None:  # the loop waits for it: a message came during the change
            if not waiter.done():
                waiter.set_result(None)
        elif error is not None:  # an idle server crashes now, not at its next message
            proc = self.pid._proc
            if proc is not None:
                proc.wake()

    async def _call_result(self, proc: Process, caller: From, result: Any) -> Any:
        if type(result) is NoReply:
            proc.inflight = None
            if not caller.fut.done():
                caller._server = proc
                if proc.deferred is None:
                    proc.deferred = set()
                proc.deferred.add(caller)
            if result.continue_with is not UNSET:
                return await self._continue(result.continue_with, result.state)
            return result.state
        if type(result) is Stop:
            if result.reply is not UNSET:
                proc.inflight = None
                if not caller.fut.done():
                    caller.fut.set_result(result.reply)
            raise _Stopping(result.reason, result.state)
        raise BadReturn(
            f"{type(self).__name__}.handle_call returned {result!r} for {caller.request!r} "
            "(expected Reply, NoReply or Stop)"
        )

    async def _control(self, result: Any, where: str) -> Any:
        t = type(result)
        if t is NoReply:
            if result.continue_with is not UNSET:
                return await self._continue(result.continue_with, result.state)
            return result.state
        if t is Continue:
            return await self._continue(result.arg, result.state)
        if t is Stop:
            raise _Stopping(result.reason, result.state)
        raise BadReturn(f"{type(self).__name__}.{where} returned {result!r}")

    async def _continue(self, arg: Any, state: Any) -> Any:
        result = await self.handle_continue(arg, state)
        if isinstance(result, Control):
            return await self._control(result, "handle_continue")
        return result

    def _system(self, msg: SysMsg, state: Any) -> Any:
        if isinstance(msg, SyncRequest):
            if not msg.fut.done():
                msg.fut.set_result(None)
        elif isinstance(msg, StateRequest):
            if not msg.fut.done():
                msg.fut.set_result(state)
        elif isinstance(msg, StopRequest):  # a subclass of it (the loop takes StopRequest)
            raise _Stopping(msg.reason, state)
        return state

    async def _terminate(self, proc: Process, reason: Any, state: Any) -> Any:
        if type(self).terminate is GenServer.terminate:
            return reason  # nothing to run: skip creating and awaiting the default coroutine
        try:
            await self.terminate(reason, state)
        except Exception as exc:
            log.error(
                "%s.terminate raised while stopping %r with reason %s",
                type(self).__name__,
                proc.pid,
                format_reason(reason),
                exc_info=exc,
            )
            proc.last_state = state
            return exc
        return reason
