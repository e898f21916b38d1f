"""TaskStream: the async iterator behind ``TaskSupervisor.async_stream``.

``fn(item)`` for each item, by at most ``max_concurrency`` tasks owned by the task supervisor,
with back-pressure (no item starts before there is room for its result), results in item order
or as they finish, a per-task timeout, and the tasks in flight killed when the consumer stops
iterating, closes the stream or exits.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from foundation.errors import CallTimeout
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.pid import Pid
from foundation.kernel.process import Process
from foundation.kernel.task_supervisor import Task, TaskSupervisor, _call, _fn_name, _retrieve

__all__ = ["TaskStream"]


class TaskStream:
    """The async iterator of ``async_stream``; ``aclose()`` kills the tasks in flight. Only the
    consumer holds it strongly (callbacks, timers and tasks hold weak references), so breaking
    out of ``async for`` drops it, and dropping it kills its tasks at once."""

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
        self._closed = True  # until fully built: ``__del__`` must not touch a partial stream
        self._sup = sup
        self._limit = limit
        self._ordered = ordered
        self._timeout = timeout
        self._return_exceptions = return_exceptions
        self._sync_items = iter(items) if not isinstance(items, AsyncIterable) else None
        self._async_items = aiter(items) if isinstance(items, AsyncIterable) else None
        self._window: deque[Task] = deque()  # started, result not yet yielded, in item order
        self._running: set[Process] = set()  # tasks of this stream inside ``fn`` right now
        self._timers: dict[Pid, Any] = {}
        self._exhausted = False
        ref = weakref.ref(self)
        self._fn = _item_runner(ref, fn)
        self._owner = current_process()
        self._on_owner_exit = _owner_exit_callback(ref)
        if self._owner is not None:
            self._owner.add_exit_callback(self._on_owner_exit)
        self._closed = False

    def __aiter__(self) -> TaskStream:
        return self

    async def _next_item(self) -> tuple[bool, Any]:
        try:
            if self._sync_items is not None:
                return True, next(self._sync_items)
            assert self._async_items is not None
            return True, await anext(self._async_items)
        except (StopIteration, StopAsyncIteration):
            return False, None

    async def _fill(self) -> None:
        clock = current_runtime().clock
        while not self._exhausted and len(self._window) < self._limit:
            more, item = await self._next_item()
            if not more:
                self._exhausted = True
                break
            task = await TaskSupervisor.async_nolink(self._sup, self._fn, item)
            self._window.append(task)
            if self._timeout is not None:
                self._timers[task.pid] = clock.call_later(
                    self._timeout, _expire, weakref.ref(self), task, self._timeout
                )

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        try:
            await self._fill()
            if not self._window:
                await self.aclose()
                raise StopAsyncIteration
            task = self._window[0]
            if self._ordered:
                await asyncio.wait([task._fut])
            else:
                done, _ = await asyncio.wait(
                    [t._fut for t in self._window], return_when="FIRST_COMPLETED"
                )
                task = next((t for t in self._window if t._fut in done), task)
            if self._closed:  # closed by aclose() or the owner's exit while we waited
                raise StopAsyncIteration
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

    def _kill_all(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._window:
            if task._fut.done():
                _retrieve(task._fut)
            else:
                task._fut.cancel()
            task.kill()
        self._window.clear()
        for proc in list(self._running):
            proc.kill_with("killed")
        self._running.clear()
        owner, self._owner = self._owner, None
        callbacks = owner.on_exit if owner is not None else None
        if callbacks and self._on_owner_exit in callbacks:
            callbacks.remove(self._on_owner_exit)

    async def aclose(self) -> None:
        """Stop the stream: kill the tasks still in flight; later iteration ends at once."""
        if not self._closed:
            self._kill_all()

    def __del__(self) -> None:
        if not self._closed:
            self._kill_all()


def _item_runner(ref: weakref.ref[TaskStream], fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The task body of one item: skipped if its stream closed before it started, and known to
    the stream while it runs (so a task whose pid the consumer never got is killed too)."""

    async def run(item: Any) -> Any:
        stream = ref()
        me = current_process()
        if stream is None or stream._closed or me is None:
            return None
        stream._running.add(me)
        del stream
        try:
            return await _call(fn, (item,))
        finally:
            stream = ref()
            if stream is not None:
                stream._running.discard(me)

    run.__qualname__ = f"async_stream({_fn_name(fn)})"
    return run


def _owner_exit_callback(ref: weakref.ref[TaskStream]) -> Callable[[Any], None]:
    def on_owner_exit(reason: Any) -> None:
        stream = ref()
        if stream is not None and not stream._closed:
            stream._kill_all()

    return on_owner_exit


def _expire(ref: weakref.ref[TaskStream], task: Task, timeout: float) -> None:
    stream = ref()
    if stream is not None:
        stream._timers.pop(task.pid, None)
    if not task._fut.done():
        task._fut.set_exception(
            CallTimeout(
                f"async_stream: task {task.pid!r} ({task.name}) took over {timeout}s; killed",
                context={"pid": task.pid, "timeout": timeout},
            )
        )
    task.kill()
