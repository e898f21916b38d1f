"""A virtual clock: time that only moves when everything is idle, or when a test moves it.

``VirtualTimeLoop`` is an asyncio selector loop whose ``time()`` is virtual. When no callback is
ready and the next timer lies in the future, it does not sleep: if no real work is in flight
outside the loop (threads, marked with ``clock.external()``) and no I/O is ready, it jumps
straight to that timer ("autojump"). A 30-second backoff or a 5-minute schedule therefore runs
in microseconds, with the same result every run. ``asyncio.sleep``, ``asyncio.timeout`` and every
kernel timer follow it, since they all read ``loop.time()``.

When nothing at all can happen any more (no timer, no ready callback, no I/O source, no external
work) the loop reports a deadlock instead of blocking forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
from collections.abc import Callable, Iterator
from typing import Any

from foundation.errors import InvalidArgument
from foundation.kernel.clock import Timer

__all__ = ["VirtualClock", "VirtualTimeLoop"]


class _JumpingSelector:
    """Wraps the loop's selector: a wait for a future timer becomes a jump in virtual time."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if timeout == 0 or loop.external_work > 0 or not loop.autojump:
            return self._inner.select(timeout)
        events = self._inner.select(0)
        if events:
            return events
        if timeout is None:
            if len(self._inner.get_map()) <= 1 and loop.on_deadlock is not None:
                loop.on_deadlock()
                return []
            return self._inner.select(None)
        loop.vtime += timeout
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, with autojump when idle (see the module docstring)."""

    def __init__(self, *, autojump: bool = True) -> None:
        super().__init__()
        self.vtime = 0.0
        self.autojump = autojump
        self.external_work = 0
        self.on_deadlock: Callable[[], None] | None = None
        inner: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _JumpingSelector(inner, self)

    def time(self) -> float:
        return self.vtime


class VirtualClock:
    """The runtime clock of tests: ``now()``, timers and ``advance(seconds)`` on virtual time."""

    def __init__(self) -> None:
        self._loop: VirtualTimeLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if not isinstance(loop, VirtualTimeLoop):
            raise InvalidArgument(
                "VirtualClock needs the runtime to run on a VirtualTimeLoop "
                "(the `runtime` fixture of foundation.testing sets one up)"
            )
        self._loop = loop

    @property
    def loop(self) -> VirtualTimeLoop:
        if self._loop is None:
            raise InvalidArgument("the VirtualClock is not attached to a running runtime yet")
        return self._loop

    @property
    def autojump(self) -> bool:
        return self.loop.autojump

    @autojump.setter
    def autojump(self, value: bool) -> None:
        self.loop.autojump = value

    def now(self) -> float:
        return self.loop.vtime

    def advance(self, seconds: float) -> None:
        """Move virtual time forward; timers now due run at the loop's next iteration."""
        if seconds < 0:
            raise InvalidArgument(f"cannot move a clock backwards: advance({seconds})")
        self.loop.vtime += seconds

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self.loop.call_at(when, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        return self.loop.call_later(delay, callback, *args)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @contextlib.contextmanager
    def external(self) -> Iterator[None]:
        loop = self.loop
        loop.external_work += 1
        try:
            yield
        finally:
            loop.external_work -= 1
