"""TaskSupervisor: supervised one-off work, every task owned by a supervisor that sees it end.

``await TaskSupervisor.start_link(name=...)``; then, with the supervisor (pid or name) first:
``async_(sup, fn, *args)`` starts a task linked to the caller, as in OTP (a crashing task kills
a caller that does not trap exits, and a trapping one gets ``Exit(pid, reason)``; a dying caller
kills the task); ``async_nolink`` starts one the caller only awaits; ``start_child`` starts a
fire-and-forget task, still owned (listed by ``which_children`` while it runs). Awaiting a task
(``await task`` or ``await task.result(timeout)``) gives its result, or raises ``ProcessExited``
(its exit reason, with the original exception as ``__cause__``) or ``CallTimeout`` (the task is
then unlinked and killed). ``fn`` is an async function, or a plain one that must not block.

``async_stream(sup, items, fn, *, max_concurrency, ordered=True, timeout=5.0,
return_exceptions=False)`` iterates ``fn(item)`` over a sync or async iterable with at most
``max_concurrency`` live tasks and back-pressure (no item starts before there is room for its
result); results come in item order, or as they finish. A task over ``timeout`` is killed and
fails with ``CallTimeout``; a failure raises and stops the stream, unless ``return_exceptions``
yields it. Breaking out of the loop, ``aclose()`` or the consumer's exit kills the tasks in
flight. ``run_sync(sup, fn, *args)`` runs blocking ``fn(*args)`` in the runtime's bounded thread
pool from a task owned by ``sup`` (``run_sync(fn, *args)``: for the caller directly); the loop
keeps serving, ``fn``'s exception is raised as is, and shutdown waits for the thread. Bad
arguments (a non-callable, ``max_concurrency=0``) raise ``InvalidArgument``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from foundation.errors import CallTimeout, InvalidArgument, ProcessExited, format_reason
from foundation.kernel.child_spec import ChildSpec, Shutdown
from foundation.kernel.clock import wait_future
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.dynamic_supervisor import DynamicSupervisor
from foundation.kernel.pid import Pid
from foundation.kernel.process import Process

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime
    from foundation.kernel.task_stream import TaskStream

__all__ = ["Task", "TaskSupervisor"]


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: the exit that caused it is reported already."""
    if not fut.cancelled():
        fut.exception()


class Task:
    """A supervised task; ``await task`` (or ``await task.result(timeout)``) for its result."""

    __slots__ = ("_fut", "_owner", "name", "pid")

    def __init__(
        self, pid: Pid, fut: asyncio.Future[Any], name: str, owner: Process | None = None
    ) -> None:
        self.pid = pid
        self._fut = fut
        self._owner = owner
        self.name = name

    def __repr__(self) -> str:
        return f"<Task {self.pid!r} {self.name}>"

    def done(self) -> bool:
        """True once the task has a result or an error."""
        return self._fut.done()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    async def result(self, timeout: float | None = None) -> Any:
        """The task's return value; ``CallTimeout`` (and the task killed) after ``timeout``."""
        if not await wait_future(current_runtime().clock, self._fut, timeout):
            self.kill()
            raise CallTimeout(
                f"task {self.pid!r} ({self.name}) did not finish within {timeout}s; it was killed",
                context={"pid": self.pid, "timeout": timeout},
            )
        return self._fut.result()

    def kill(self) -> None:
        """End the task now (reason ``killed``), unlinked first so its caller is not killed."""
        proc = self.pid._proc
        if proc is None:
            return
        if self._owner is not None:
            proc.unlink(self._owner)
        proc.kill_with("killed")


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _check_callable(fn: Any, where: str) -> None:
    if not callable(fn):
        raise InvalidArgument(f"{where} needs a callable, got {fn!r}", context={"value": repr(fn)})


def _task_failed(fut: asyncio.Future[Any], pid: Pid, name: str) -> Callable[[Any], None]:
    def on_exit(reason: Any) -> None:
        if fut.done():
            return
        err = ProcessExited(
            f"task {pid!r} ({name}) failed: {format_reason(reason)}",
            reason=reason,
            context={"pid": pid},
        )
        if isinstance(reason, BaseException):
            err.__cause__ = reason
        fut.set_exception(err)
        fut.exception()  # the crash is logged by the kernel; an unawaited task is not an error

    return on_exit


async def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = fn(*args)
    return (await result) if inspect.isawaitable(result) else result


async def _run_task(
    fn: Callable[..., Any], args: tuple[Any, ...], fut: asyncio.Future[Any] | None
) -> None:
    result = await _call(fn, args)
    if fut is not None and not fut.done():
        fut.set_result(result)


async def _in_thread(rt: Runtime, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``rt.run_in_thread``, carried by a task that outlives a killed caller until the thread
    ends, so the clock knows real work is in flight for as long as it is."""
    inner = rt.loop.create_task(rt.run_in_thread(fn, *args))
    inner.add_done_callback(_retrieve)
    return await asyncio.shield(inner)


class TaskSupervisor(DynamicSupervisor):
    """A DynamicSupervisor of temporary task processes; see the module docstring.

    ``start``, ``start_link`` and ``child_spec`` are DynamicSupervisor's (``name=``,
    ``max_children=`` bound the tasks running at once).
    """

    @staticmethod
    async def _spawn(
        sup: Any,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        link_to: Process | None,
        fut: asyncio.Future[Any] | None,
        shutdown: Shutdown = 5.0,
    ) -> Pid:
        _check_callable(fn, "a task")
        rt = current_runtime()
        name = _fn_name(fn)

        async def start() -> Pid:
            me = current_process()  # the task supervisor
            assert me is not None
            proc = rt.spawn_process(
                _run_task, (fn, args, fut), behaviour=f"Task({name})", parent=me, link=True
            )
            if fut is not None:
                proc.add_exit_callback(_task_failed(fut, proc.pid, name))
            if link_to is not None:
                if link_to.status == "exited":  # as a link to a dead process: noproc
                    proc.signal_exit(link_to.pid, "noproc", linked=True)
                else:
                    proc.link(link_to)
            return proc.pid

        spec = ChildSpec(id=name, start=start, restart="temporary", shutdown=shutdown)
        pid = await DynamicSupervisor.start_child(sup, spec)
        assert pid is not None
        return pid

    @staticmethod
    async def async_(sup: Any, fn: Callable[..., Any], *args: Any) -> Task:
        """Run ``fn(*args)`` as a task linked to the calling process; await the returned Task."""
        fut = current_runtime().loop.create_future()
        caller = current_process()
        pid = await TaskSupervisor._spawn(sup, fn, args, link_to=caller, fut=fut)
        return Task(pid, fut, _fn_name(fn), caller)

    @staticmethod
    async def async_nolink(sup: Any, fn: Callable[..., Any], *args: Any) -> Task:
        """Run ``fn(*args)`` as a task the caller awaits but is not linked to."""
        fut = current_runtime().loop.create_future()
        pid = await TaskSupervisor._spawn(sup, fn, args, link_to=None, fut=fut)
        return Task(pid, fut, _fn_name(fn))

    @staticmethod
    async def start_child(  # type: ignore[override]
        sup: Any, fn: Callable[..., Any], *args: Any
    ) -> Pid:
        """Run ``fn(*args)`` as an owned fire-and-forget task; returns its pid."""
        return await TaskSupervisor._spawn(sup, fn, args, link_to=None, fut=None)

    @staticmethod
    async def run_sync(sup: Any, *args: Any) -> Any:
        """``run_sync(sup, fn, *args)``: run blocking ``fn(*args)`` in the runtime's bounded
        thread pool, from a task owned by ``sup``; the runtime waits for it at shutdown.

        ``run_sync(fn, *args)`` (no supervisor) runs it on behalf of the calling code directly.
        Either way an exception raised by ``fn`` is raised as is.
        """
        rt = current_runtime()
        if callable(sup):
            return await _in_thread(rt, sup, args)
        if not args:
            raise InvalidArgument(f"run_sync needs a callable, got {sup!r}")
        fn, args = args[0], args[1:]
        _check_callable(fn, "run_sync")

        async def in_thread() -> tuple[bool, Any]:
            try:
                return True, await _in_thread(rt, fn, args)
            except Exception as exc:  # handed to the caller, who raises it
                return False, exc

        in_thread.__qualname__ = f"run_sync({_fn_name(fn)})"
        task = await TaskSupervisor.async_nolink(sup, in_thread)
        ok, value = await task
        if not ok:
            raise value
        return value

    @staticmethod
    def async_stream(
        sup: Any,
        items: Iterable[Any] | AsyncIterable[Any],
        fn: Callable[[Any], Awaitable[Any] | Any],
        *,
        max_concurrency: int | None = None,
        ordered: bool = True,
        timeout: float | None = 5.0,
        return_exceptions: bool = False,
    ) -> TaskStream:
        """``async for result in async_stream(...)``: ``fn(item)`` for each item, by at most
        ``max_concurrency`` tasks (default: the CPU count); see the module docstring."""
        _check_callable(fn, "async_stream")
        limit = max_concurrency if max_concurrency is not None else (os.cpu_count() or 1)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(
                f"invalid max_concurrency: {max_concurrency!r} (an int >= 1)",
                context={"field": "max_concurrency", "value": max_concurrency},
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise InvalidArgument(
                f"invalid timeout: {timeout!r} (seconds > 0, or None)",
                context={"field": "timeout", "value": timeout},
            )
        if not isinstance(items, Iterable | AsyncIterable):
            raise InvalidArgument(f"async_stream needs an iterable of items, got {items!r}")
        from foundation.kernel.task_stream import TaskStream

        return TaskStream(sup, items, fn, limit, ordered, timeout, return_exceptions)
