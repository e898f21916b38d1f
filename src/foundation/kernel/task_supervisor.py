"""TaskSupervisor: supervised one-off work, every task owned by a supervisor that sees it end.

``async_`` starts a task linked to the calling process (if its task crashes, so does the
caller, unless it traps exits); ``async_nolink`` starts one the caller only awaits;
``start_child`` starts a fire-and-forget task that is still owned; ``async_stream`` maps a
function over items with at most ``max_concurrency`` tasks in flight, a per-item timeout and
back-pressure (no item is started before there is room for its result); its tasks are killed
when the consumer stops iterating or its process exits. ``run_sync`` runs a blocking function
in the runtime's bounded thread pool from a supervised task.

Awaiting a task gives its result, or raises ``ProcessExited`` (its exit reason, with the
original exception as ``__cause__``) or ``CallTimeout`` (the task is then killed).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable
from typing import Any

from foundation.errors import CallTimeout, InvalidArgument, ProcessExited, format_reason
from foundation.kernel.child_spec import ChildSpec, Shutdown
from foundation.kernel.clock import wait_future
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.dynamic_supervisor import DynamicSupervisor
from foundation.kernel.pid import Pid
from foundation.kernel.process import Process

__all__ = ["Task", "TaskSupervisor"]


class Task:
    """A supervised task; ``await task`` (or ``await task.result(timeout)``) for its result."""

    __slots__ = ("_fut", "name", "pid")

    def __init__(self, pid: Pid, fut: asyncio.Future[Any], name: str) -> None:
        self.pid = pid
        self._fut = fut
        self.name = name

    def __repr__(self) -> str:
        return f"<Task {self.pid!r} {self.name}>"

    def done(self) -> bool:
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
        """End the task now (reason ``killed``)."""
        proc = self.pid._proc
        if proc is not None:
            proc.kill_with("killed")


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


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

    return on_exit


async def _run_task(
    fn: Callable[..., Any], args: tuple[Any, ...], fut: asyncio.Future[Any] | None
) -> None:
    result = fn(*args)
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        result = await result
    if fut is not None and not fut.done():
        fut.set_result(result)


class TaskSupervisor(DynamicSupervisor):
    """A DynamicSupervisor of temporary task processes; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: Any = None, max_children: int | None = None
    ) -> Pid:
        """Start a task supervisor linked to the caller."""
        return await super().start_link(name=name, max_children=max_children, max_restarts=3)

    @classmethod
    async def start(  # type: ignore[override]
        cls, *, name: Any = None, max_children: int | None = None
    ) -> Pid:
        """Start an unlinked task supervisor."""
        return await super().start(name=name, max_children=max_children, max_restarts=3)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls, *, id: Any = None, name: Any = None, max_children: int | None = None
    ) -> ChildSpec:
        """A child spec that runs a task supervisor under another supervisor."""
        return super().child_spec(
            id=id or name or cls.__name__, name=name, max_children=max_children
        )

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
        if not callable(fn):
            raise InvalidArgument(f"a task needs a callable, got {fn!r}")
        rt = current_runtime()
        name = _fn_name(fn)

        async def start() -> Pid:
            me = current_process()  # the task supervisor
            assert me is not None
            proc = rt.spawn_process(
                _run_task, (fn, args, fut), behaviour=f"Task({name})", parent=me, link=True
            )
            if link_to is not None and link_to.status != "exited":
                proc.links.add(link_to)
                link_to.links.add(proc)
            if fut is not None:
                proc.add_exit_callback(_task_failed(fut, proc.pid, name))
            return proc.pid

        spec = ChildSpec(id=name, start=start, restart="temporary", shutdown=shutdown)
        pid = await DynamicSupervisor.start_child(sup, spec)
        assert pid is not None
        return pid

    @staticmethod
    async def async_(sup: Any, fn: Callable[..., Any], *args: Any) -> Task:
        """Run ``fn(*args)`` as a task linked to the calling process; await the returned Task."""
        fut = current_runtime().loop.create_future()
        pid = await TaskSupervisor._spawn(sup, fn, args, link_to=current_process(), fut=fut)
        return Task(pid, fut, _fn_name(fn))

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
        """
        rt = current_runtime()
        if callable(sup):
            return await rt.run_in_thread(sup, *args)
        if not args or not callable(args[0]):
            raise InvalidArgument(
                f"run_sync needs a callable after the supervisor, got {args[:1]!r}"
            )
        fn, args = args[0], args[1:]

        async def in_thread() -> Any:
            return await rt.run_in_thread(fn, *args)

        in_thread.__qualname__ = f"run_sync({_fn_name(fn)})"
        task = await TaskSupervisor.async_nolink(sup, in_thread)
        return await task

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
    ) -> AsyncIterator[Any]:
        """An async iterator of ``fn(item)`` for each item, computed by at most
        ``max_concurrency`` tasks; use it as ``async for result in async_stream(...)``.

        With ``ordered`` results come in item order, otherwise as they finish. A failed or timed
        out item raises (and stops the stream) unless ``return_exceptions``, which yields the
        error instead.
        """
        limit = max_concurrency if max_concurrency is not None else (os.cpu_count() or 1)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"invalid max_concurrency: {max_concurrency!r} (an int >= 1)")
        return _Stream(sup, items, fn, limit, ordered, timeout, return_exceptions)


class _Stream:
    """The async iterator behind ``async_stream``."""

    def __init__(
        self,
        sup: Any,
        items: Iterable[Any] | AsyncIterable[Any],
        fn: Callable[[Any], Any],
        limit: int,
        ordered: bool,
        timeout: float | None,
        return_exceptions: bool,
    ) -> None:
        self._sup = sup
        self._fn = fn
        self._limit = limit
        self._ordered = ordered
        self._timeout = timeout
        self._return_exceptions = return_exceptions
        self._sync_items = iter(items) if not isinstance(items, AsyncIterable) else None
        self._async_items = aiter(items) if isinstance(items, AsyncIterable) else None
        self._window: deque[Task] = deque()
        self._timers: dict[Pid, Any] = {}
        self._exhausted = False
        self._closed = False
        self._owner = current_process()
        if self._owner is not None:
            self._owner.add_exit_callback(self._on_owner_exit)

    def __aiter__(self) -> _Stream:
        return self

    async def _next_item(self) -> tuple[bool, Any]:
        if self._sync_items is not None:
            try:
                return True, next(self._sync_items)
            except StopIteration:
                return False, None
        assert self._async_items is not None
        try:
            return True, await anext(self._async_items)
        except StopAsyncIteration:
            return False, None

    async def _fill(self) -> None:
        rt = current_runtime()
        while not self._exhausted and len(self._window) < self._limit:
            more, item = await self._next_item()
            if not more:
                self._exhausted = True
                break
            task = await TaskSupervisor.async_nolink(self._sup, self._fn, item)
            self._window.append(task)
            if self._timeout is not None:
                self._timers[task.pid] = rt.clock.call_later(self._timeout, self._expire, task)

    def _expire(self, task: Task) -> None:
        self._timers.pop(task.pid, None)
        if not task._fut.done():
            task._fut.set_exception(
                CallTimeout(
                    f"async_stream: task {task.pid!r} took over {self._timeout}s; killed",
                    context={"pid": task.pid, "timeout": self._timeout},
                )
            )
        task.kill()

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        try:
            await self._fill()
            if not self._window:
                await self.aclose()
                raise StopAsyncIteration
            if self._ordered:
                task = self._window[0]
                await asyncio.wait([task._fut])
            else:
                done, _ = await asyncio.wait(
                    [t._fut for t in self._window], return_when="FIRST_COMPLETED"
                )
                task = next(t for t in self._window if t._fut in done)
            self._window.remove(task)
            timer = self._timers.pop(task.pid, None)
            if timer is not None:
                timer.cancel()
            exc = task._fut.exception()
        except BaseException:
            await self.aclose()
            raise
        if exc is None:
            return task._fut.result()
        if self._return_exceptions:
            return exc
        await self.aclose()
        raise exc

    def _on_owner_exit(self, reason: Any) -> None:
        self._kill_all()

    def _kill_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._window:
            if not task._fut.done():
                task._fut.cancel()
            task.kill()
        self._window.clear()

    async def aclose(self) -> None:
        """Stop the stream: kill the tasks still in flight."""
        if self._closed:
            return
        self._closed = True
        self._kill_all()
        if (
            self._owner is not None
            and self._owner.on_exit
            and self._on_owner_exit in self._owner.on_exit
        ):
            self._owner.on_exit.remove(self._on_owner_exit)
