"""OpenTelemetry bridge: Foundation spans become OpenTelemetry spans (extra ``otel``).

``bridge = OTelBridge.attach([("foundation", "agent", "action")], tracer)`` listens to the
``start``/``stop``/``exception`` events of those span prefixes and records one OpenTelemetry span
per Foundation span, with its metadata as attributes and the error status on an exception.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from foundation.telemetry.events import Event, _event, attach_many, detach

__all__ = ["OTelBridge"]

_ids = itertools.count(1)


class OTelBridge:
    """Records OpenTelemetry spans for Foundation spans; see the module docstring."""

    def __init__(self, tracer: Any, handler_id: str) -> None:
        self.tracer = tracer
        self.handler_id = handler_id
        self._open: dict[str, Any] = {}

    @classmethod
    def attach(cls, span_events: Iterable[Event | str], tracer: Any = None) -> OTelBridge:
        """Bridge the spans named ``span_events`` (``tracer``: default, the global tracer)."""
        if tracer is None:
            from opentelemetry import trace

            tracer = trace.get_tracer("foundation")
        bridge = cls(tracer, f"otel-{next(_ids)}")
        events = [
            (*_event(e), phase) for e in span_events for phase in ("start", "stop", "exception")
        ]
        attach_many(bridge.handler_id, events, bridge._handle)
        return bridge

    def detach(self) -> None:
        """Stop bridging."""
        detach(self.handler_id)

    def _handle(
        self, event: Event, measurements: dict[str, Any], meta: dict[str, Any], _: Any
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        span_id = meta.get("span_id")
        if span_id is None:
            return
        phase = event[-1]
        if phase == "start":
            attrs = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
            self._open[span_id] = self.tracer.start_span(".".join(event[:-1]), attributes=attrs)
            return
        otel_span = self._open.pop(span_id, None)
        if otel_span is None:
            return
        if phase == "exception":
            reason = meta.get("reason")
            if isinstance(reason, BaseException):
                otel_span.record_exception(reason)
            otel_span.set_status(Status(StatusCode.ERROR, str(meta.get("kind"))))
        otel_span.end()
