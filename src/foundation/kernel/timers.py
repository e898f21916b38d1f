"""Timers on the runtime clock: ``send_after``/``cancel_timer`` and the call-deadline wheel.

Every call has a deadline, so a timer per call would dominate the cost of a call. Deadlines are
instead bucketed per millisecond: one clock timer per bucket, a set insert and discard per call.
A call times out at its deadline, rounded up to the next millisecond.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from foundation.errors import CallTimeout, FoundationError
from foundation.kernel.clock import Clock, Timer
from foundation.kernel.context import current_runtime

if TYPE_CHECKING:
    from foundation.kernel.process import From
    from foundation.kernel.runtime import Runtime

__all__ = ["CallDeadlines", "TimerRef", "cancel_timer", "send_after"]

log = logging.getLogger("foundation.kernel")

_PER_SECOND = 1000.0


class CallDeadlines:
    """Pending calls grouped by deadline bucket; a bucket's timer fails what is still pending."""

    __slots__ = ("_clock", "_handles", "buckets", "now")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.now = clock.now
        self.buckets: dict[int, set[From]] = {}
        self._handles: dict[int, Timer] = {}

    def add(self, req: From, timeout: float) -> set[From]:
        """Track ``req`` until its deadline; returns the bucket to ``discard`` it from later."""
        key = math.ceil((self.now() + timeout) * _PER_SECOND)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.open(key)
        bucket.add(req)
        return bucket

    def open(self, key: int) -> set[From]:
        """A new bucket for deadline ``key`` (milliseconds), with its timer armed."""
        bucket: set[From] = set()
        self.buckets[key] = bucket
        self._handles[key] = self._clock.call_at(key / _PER_SECOND, self._fire, key)
        return bucket

    def _fire(self, key: int) -> None:
        self._handles.pop(key, None)
        bucket = self.buckets.pop(key, ())
        for req in bucket:
            fut = req.fut
            if not fut.done():
                fut.set_exception(
                    CallTimeout(
                        f"call to {req.target!r} got no reply within {req.timeout}s",
                        context={"target": req.target, "timeout": req.timeout},
                    )
                )

    def pending(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def close(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self.buckets.clear()


class TimerRef:
    """A pending ``send_after`` timer; pass it to ``cancel_timer``."""

    __slots__ = ("dest", "handle", "id", "when")

    def __init__(self, id: int, dest: Any, when: float) -> None:
        self.id = id
        self.dest = dest
        self.when = when
        self.handle: Timer | None = None

    def __repr__(self) -> str:
        return f"#TimerRef<0.{self.id}>"


def _fire(rt: Runtime, ref: TimerRef, msg: Any) -> None:
    rt.timers.pop(ref, None)
    proc = rt.resolve(ref.dest)
    if proc is None:
        log.debug("send_after: %r is not alive; message dropped", ref.dest)
        return
    try:
        proc.deliver(msg)
    except FoundationError as err:
        log.warning("send_after to %r could not be delivered: %s", ref.dest, err)


def send_after(dest: Any, msg: Any, seconds: float) -> TimerRef:
    """Send ``msg`` to ``dest`` (pid or name, resolved when the timer fires) after ``seconds``."""
    rt = current_runtime()
    ref = TimerRef(rt.next_id(), dest, rt.clock.now() + seconds)
    ref.handle = rt.clock.call_later(max(seconds, 0.0), _fire, rt, ref, msg)
    rt.timers[ref] = ref.handle
    return ref


def cancel_timer(ref: TimerRef) -> float | bool:
    """Cancel a ``send_after``; returns the seconds that were left, or False if it already fired."""
    rt = current_runtime()
    handle = rt.timers.pop(ref, None)
    if handle is None:
        return False
    handle.cancel()
    return max(ref.when - rt.clock.now(), 0.0)
