"""The runtime's clock: every kernel timer goes through it, so a virtual clock can replace it.

Call timeouts, restart windows, ``send_after``, shutdown timeouts and every service's schedule
read ``now()`` and arm timers with ``call_at``/``call_later`` here, never through ``time`` or the
loop directly. ``RealClock`` is the event loop's monotonic clock; ``foundation.testing`` plugs in a
virtual one. ``external()`` marks real work in flight outside the loop (a thread, a subprocess),
during which a virtual clock must not jump ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

__all__ = ["Clock", "RealClock", "Timer", "wait_future"]


@runtime_checkable
class Timer(Protocol):
    """A pending timer; ``cancel()`` is idempotent."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """What the kernel needs of a clock (seconds, as floats, on a monotonic scale)."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the loop the runtime runs on; called once by the runtime at start."""

    def now(self) -> float:
        """The current time in seconds."""

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the loop at time ``when``."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the loop ``delay`` seconds from now."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""

    def external(self) -> contextlib.AbstractContextManager[None]:
        """Mark real work in flight outside the event loop for the duration of the block."""


class RealClock:
    """The event loop's own clock (``loop.time()``, monotonic)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Hot paths (every call's deadline) read the time: bind the loop's own methods (the
        # standard loop's ``time()`` is ``time.monotonic()`` behind a Python frame: skip it).
        standard = getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
        self.now = time.monotonic if standard else loop.time  # type: ignore[method-assign]
        self.call_at = loop.call_at  # type: ignore[method-assign]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
            self.attach(loop)
        return loop

    def now(self) -> float:
        return self.loop.time()

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self.loop.call_at(when, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self.loop.call_later(delay, callback, *args)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @contextlib.contextmanager
    def external(self) -> Iterator[None]:
        yield


def _set_waiter(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


async def wait_future(clock: Clock, fut: asyncio.Future[Any], timeout: float | None) -> bool:
    """Wait until ``fut`` is done or ``timeout`` clock-seconds pass; True if it is done.

    ``fut`` itself is never cancelled and its exception is never raised here: the caller decides
    what a timeout or a failure means. ``timeout=None`` waits for as long as it takes.
    """
    if fut.done():
        return True
    if timeout is not None and timeout <= 0:
        return False
    waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_done(_: asyncio.Future[Any]) -> None:
        _set_waiter(waiter, True)

    timer = None if timeout is None else clock.call_later(timeout, _set_waiter, waiter, False)
    fut.add_done_callback(on_done)
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()
        fut.remove_done_callback(on_done)
