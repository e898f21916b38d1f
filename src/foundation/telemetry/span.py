"""Spans: ``start``, ``stop`` and ``exception`` events around a piece of work, with durations.

``with span(("app", "fetch"), {"url": u}):`` (or ``async with``, or ``@span(...)`` on a sync
or async function) emits ``app.fetch.start`` (``system_time``), then ``app.fetch.stop`` with
``duration`` in seconds (``time.perf_counter``: monotonic, not the runtime clock, since it
measures real work) or ``app.fetch.exception`` with ``duration``, ``kind`` and ``reason`` (the
exception is re-raised). Every span has a ``span_id`` and carries the ``trace_id`` and
``parent_id`` of the span it runs in (through a context variable, so nesting follows tasks).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from foundation.telemetry.events import Event, _event, execute

__all__ = ["SpanContext", "current_span", "span"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class SpanContext:
    """Identity of a running span: its trace, its own id and its parent's."""

    trace_id: str
    span_id: str
    parent_id: str | None


_CURRENT: contextvars.ContextVar[SpanContext | None] = contextvars.ContextVar(
    "foundation_span", default=None
)


def current_span() -> SpanContext | None:
    """The innermost span running in this context, if any."""
    return _CURRENT.get()


class span:
    """A span around a block or a function; see the module docstring."""

    __slots__ = ("_ctx", "_meta", "_start", "_token", "event")

    def __init__(self, event: Event | str, metadata: dict[str, Any] | None = None) -> None:
        self.event = _event(event)
        self._meta = dict(metadata or {})
        self._start = 0.0
        self._token: contextvars.Token[SpanContext | None] | None = None
        self._ctx: SpanContext | None = None

    def _enter(self) -> SpanContext:
        parent = _CURRENT.get()
        ctx = SpanContext(
            trace_id=parent.trace_id if parent else secrets.token_hex(8),
            span_id=secrets.token_hex(4),
            parent_id=parent.span_id if parent else None,
        )
        self._ctx = ctx
        self._token = _CURRENT.set(ctx)
        self._meta.update(trace_id=ctx.trace_id, span_id=ctx.span_id, parent_id=ctx.parent_id)
        self._start = time.perf_counter()
        execute((*self.event, "start"), {"system_time": time.time()}, self._meta)
        return ctx

    def _exit(self, exc: BaseException | None) -> None:
        duration = time.perf_counter() - self._start
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        if exc is None:
            execute((*self.event, "stop"), {"duration": duration}, self._meta)
        else:
            meta = {**self._meta, "kind": type(exc).__name__, "reason": exc}
            execute((*self.event, "exception"), {"duration": duration}, meta)

    def __enter__(self) -> SpanContext:
        return self._enter()

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> SpanContext:
        return self._enter()

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: each call of ``fn`` runs in a fresh span with this event."""
        event, meta = self.event, self._meta
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with span(event, meta):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(event, meta):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
