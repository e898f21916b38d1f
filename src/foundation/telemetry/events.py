"""Telemetry events: ``execute``, ``attach``, ``attach_many``, ``detach``, on the runtime's stream.

There is one event stream per runtime: the kernel's ``Runtime.emit`` (process start and exit,
supervisor restarts and shutdowns) and ``execute`` from any layer reach the same handlers.
Handlers are attached to exact event names (tuples such as ``("foundation", "agent", "action",
"stop")``), as in Erlang's :telemetry, under a unique handler id; ``attach_many`` attaches one
handler to several events. A handler that raises is detached and logged; the emitter never
sees the error. The handler table lives in the runtime (``runtime.extensions["telemetry"]``),
never in a module global. With no handler attached an emit is a context-variable read and an
empty-list check. Telemetry observes: never wait on an event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from foundation.errors import AlreadyRegistered, InvalidArgument, NoRuntime
from foundation.kernel.context import RUNTIME
from foundation.kernel.runtime import Runtime

__all__ = [
    "Event",
    "Handler",
    "HandlerInfo",
    "attach",
    "attach_many",
    "detach",
    "execute",
    "list_handlers",
]  # fmt: skip

log = logging.getLogger("foundation.telemetry")

Event = tuple[str, ...]
Handler = Callable[[Event, dict[str, Any], dict[str, Any], Any], None]
"""``handler(event, measurements, metadata, config)``."""


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """An attached handler: its id, the events it listens to, the function and its config."""

    id: str
    events: tuple[Event, ...]
    function: Handler
    config: Any


class _Table:
    """The handlers of one runtime, indexed by event; its dispatcher is in ``event_handlers``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.by_id: dict[str, HandlerInfo] = {}
        self.by_event: dict[Event, list[HandlerInfo]] = {}
        rt.event_handlers.append(self.dispatch)

    def dispatch(self, event: Event, measurements: dict[str, Any], meta: dict[str, Any]) -> None:
        handlers = self.by_event.get(event)
        if not handlers:
            return
        for info in list(handlers):
            try:
                info.function(event, measurements, meta, info.config)
            except Exception:
                log.exception(
                    "telemetry handler %r failed on %s and was detached", info.id, ".".join(event)
                )
                self.remove(info.id)

    def remove(self, handler_id: str) -> bool:
        info = self.by_id.pop(handler_id, None)
        if info is None:
            return False
        for event in info.events:
            handlers = self.by_event.get(event, [])
            if info in handlers:
                handlers.remove(info)
            if not handlers:
                self.by_event.pop(event, None)
        return True


def _runtime() -> Runtime:
    rt = RUNTIME.get()
    if rt is None:
        raise NoRuntime("telemetry needs a running Runtime (async with Runtime(): ...)")
    return rt


def _table(rt: Runtime) -> _Table:
    table = rt.extensions.get("telemetry")
    if table is None:
        table = rt.extensions["telemetry"] = _Table(rt)
    return table


def _event(value: Any) -> Event:
    if isinstance(value, str):
        value = tuple(value.split("."))
    if not isinstance(value, tuple) or not value or not all(isinstance(p, str) for p in value):
        raise InvalidArgument(f"invalid telemetry event {value!r}: a tuple of str (or 'a.b.c')")
    return value


def execute(
    event: Event | str,
    measurements: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Emit ``event`` to the handlers attached to it (none: almost free; no runtime: no-op)."""
    rt = RUNTIME.get()
    if rt is None or not rt.event_handlers:
        return
    rt.emit(_event(event), measurements or {}, metadata or {})


def attach(handler_id: str, event: Event | str, function: Handler, config: Any = None) -> None:
    """Attach ``function`` to one event under ``handler_id`` (unique per runtime)."""
    attach_many(handler_id, [event], function, config)


def attach_many(
    handler_id: str, events: Iterable[Event | str], function: Handler, config: Any = None
) -> None:
    """Attach ``function`` to every event in ``events`` under one ``handler_id``."""
    if not callable(function):
        raise InvalidArgument(f"telemetry handler {handler_id!r} must be callable")
    names = tuple(dict.fromkeys(_event(e) for e in events))
    if not names:
        raise InvalidArgument(f"telemetry handler {handler_id!r}: no events given")
    table = _table(_runtime())
    if handler_id in table.by_id:
        raise AlreadyRegistered(f"a telemetry handler {handler_id!r} is already attached")
    info = HandlerInfo(handler_id, names, function, config)
    table.by_id[handler_id] = info
    for name in names:
        table.by_event.setdefault(name, []).append(info)


def detach(handler_id: str) -> bool:
    """Detach a handler; False if none had that id."""
    return _table(_runtime()).remove(handler_id)


def list_handlers(prefix: Event | str = ()) -> list[HandlerInfo]:
    """The attached handlers listening to an event that starts with ``prefix``."""
    want = _event(prefix) if prefix else ()
    table = _table(_runtime())
    return [
        info
        for info in table.by_id.values()
        if any(event[: len(want)] == want for event in info.events)
    ]
