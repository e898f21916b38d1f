"""Telemetry: events, spans and metrics on the runtime's one event stream; never control flow.

``execute``/``attach``/``attach_many``/``detach`` (events), ``span`` (start/stop/exception with
durations and trace ids), ``Metrics`` with ``Counter``/``Sum``/``LastValue``/``Distribution``,
``to_prometheus`` (extra ``prometheus``) and ``OTelBridge`` (extra ``otel``). The kernel emits
``foundation.process.start``/``exit`` and ``foundation.supervisor.restart``/``escalate``.
"""

from foundation.telemetry.events import Event as Event
from foundation.telemetry.events import Handler as Handler
from foundation.telemetry.events import HandlerInfo as HandlerInfo
from foundation.telemetry.events import attach as attach
from foundation.telemetry.events import attach_many as attach_many
from foundation.telemetry.events import detach as detach
from foundation.telemetry.events import execute as execute
from foundation.telemetry.events import list_handlers as list_handlers
from foundation.telemetry.metrics import Counter as Counter
from foundation.telemetry.metrics import Distribution as Distribution
from foundation.telemetry.metrics import LastValue as LastValue
from foundation.telemetry.metrics import Metric as Metric
from foundation.telemetry.metrics import Metrics as Metrics
from foundation.telemetry.metrics import Sum as Sum
from foundation.telemetry.metrics import to_prometheus as to_prometheus
from foundation.telemetry.otel import OTelBridge as OTelBridge
from foundation.telemetry.span import SpanContext as SpanContext
from foundation.telemetry.span import current_span as current_span
from foundation.telemetry.span import span as span

__all__ = [
    "Counter",
    "Distribution",
    "Event",
    "Handler",
    "HandlerInfo",
    "LastValue",
    "Metric",
    "Metrics",
    "OTelBridge",
    "SpanContext",
    "Sum",
    "attach",
    "attach_many",
    "current_span",
    "detach",
    "execute",
    "list_handlers",
    "span",
    "to_prometheus",
]
