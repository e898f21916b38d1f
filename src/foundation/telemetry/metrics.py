"""Metrics defined on events: counter, sum, last value and distribution, with tags.

``metrics = Metrics.attach([Counter("agent.actions", ("foundation", "agent", "action", "stop"),
tags=("action",)), Distribution("agent.action.duration", ..., measurement="duration")])``
attaches one handler per runtime; ``metrics.snapshot()`` gives every value by metric name and
tag values. ``to_prometheus(metrics)`` renders them in Prometheus text format (extra
``prometheus``: prometheus-client).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import InvalidArgument
from foundation.telemetry.events import Event, _event, attach_many, detach

__all__ = [
    "Counter",
    "Distribution",
    "LastValue",
    "Metric",
    "Metrics",
    "Sum",
    "to_prometheus",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class Metric:
    """A metric: its name, the event it reads, the measurement (if any) and tag metadata keys."""

    name: str
    event: Event | str
    measurement: str | None = None
    tags: tuple[str, ...] = ()
    description: str = ""

    kind = "metric"


@dataclass(frozen=True)
class Counter(Metric):
    """Counts the events."""

    kind = "counter"


@dataclass(frozen=True)
class Sum(Metric):
    """Adds up a measurement."""

    kind = "sum"


@dataclass(frozen=True)
class LastValue(Metric):
    """Keeps the last value of a measurement."""

    kind = "last_value"


@dataclass(frozen=True)
class Distribution(Metric):
    """A histogram of a measurement over ``buckets`` (upper bounds)."""

    buckets: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
    kind = "distribution"


@dataclass
class _Series:
    count: int = 0
    total: float = 0.0
    last: float | None = None
    buckets: list[int] = field(default_factory=list)


class Metrics:
    """The values of a set of metrics, fed by one telemetry handler."""

    def __init__(self, definitions: Sequence[Metric], handler_id: str) -> None:
        self.definitions = list(definitions)
        self.handler_id = handler_id
        self.values: dict[str, dict[tuple[Any, ...], _Series]] = {
            m.name: {} for m in self.definitions
        }
        self._by_event: dict[Event, list[Metric]] = {}
        for m in self.definitions:
            if m.kind != "counter" and m.measurement is None:
                raise InvalidArgument(f"metric {m.name!r} ({m.kind}) needs a measurement")
            self._by_event.setdefault(_event(m.event), []).append(m)

    @classmethod
    def attach(cls, definitions: Iterable[Metric], handler_id: str | None = None) -> Metrics:
        """Start collecting ``definitions`` in the current runtime."""
        defs = list(definitions)
        names = [m.name for m in defs]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"duplicate metric names in {names}")
        metrics = cls(defs, handler_id or f"metrics-{next(_ids)}")
        attach_many(metrics.handler_id, list(metrics._by_event), metrics._handle)
        return metrics

    def detach(self) -> None:
        """Stop collecting."""
        detach(self.handler_id)

    def _handle(
        self, event: Event, measurements: dict[str, Any], meta: dict[str, Any], _: Any
    ) -> None:
        for m in self._by_event.get(event, ()):
            key = tuple(meta.get(t) for t in m.tags)
            series = self.values[m.name].get(key)
            if series is None:
                series = self.values[m.name][key] = _Series()
                if isinstance(m, Distribution):
                    series.buckets = [0] * (len(m.buckets) + 1)
            value = 1.0 if m.measurement is None else float(measurements[m.measurement])
            series.count += 1
            series.total += value
            series.last = value
            if isinstance(m, Distribution):
                series.buckets[bisect.bisect_left(m.buckets, value)] += 1

    def snapshot(self) -> dict[str, dict[tuple[Any, ...], Any]]:
        """Every metric's value per tag values: a count, a sum, a last value or a histogram."""
        out: dict[str, dict[tuple[Any, ...], Any]] = {}
        for m in self.definitions:
            per: dict[tuple[Any, ...], Any] = {}
            for key, s in self.values[m.name].items():
                if m.kind == "counter":
                    per[key] = s.count
                elif m.kind == "sum":
                    per[key] = s.total
                elif m.kind == "last_value":
                    per[key] = s.last
                else:
                    per[key] = {"count": s.count, "sum": s.total, "buckets": list(s.buckets)}
            out[m.name] = per
        return out


def to_prometheus(metrics: Metrics) -> str:
    """The metrics in Prometheus text exposition format (needs prometheus-client)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    class _Collector:
        def collect(self) -> Iterable[Any]:
            for m in metrics.definitions:
                name = m.name.replace(".", "_")
                labels = list(m.tags)
                series = metrics.values[m.name]
                fam: Any
                if m.kind in ("counter", "sum"):
                    fam = CounterMetricFamily(name, m.description or m.name, labels=labels)
                    for key, s in series.items():
                        fam.add_metric([str(k) for k in key], s.count if m.kind == "counter"
                                       else s.total)  # fmt: skip
                elif m.kind == "last_value":
                    fam = GaugeMetricFamily(name, m.description or m.name, labels=labels)
                    for key, s in series.items():
                        fam.add_metric([str(k) for k in key], s.last or 0.0)
                else:
                    assert isinstance(m, Distribution)
                    fam = HistogramMetricFamily(name, m.description or m.name, labels=labels)
                    for key, s in series.items():
                        cumulative = list(itertools.accumulate(s.buckets))
                        bounds = [str(b) for b in m.buckets] + ["+Inf"]
                        fam.add_metric(
                            [str(k) for k in key],
                            list(zip(bounds, cumulative, strict=True)),
                            sum_value=s.total,
                        )
                yield fam

    registry = CollectorRegistry()
    registry.register(_Collector())
    return generate_latest(registry).decode()
