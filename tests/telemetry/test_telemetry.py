"""Telemetry: one event stream, handlers by event, spans with trace ids, metrics, exporters."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from foundation import GenServer, Reply, Runtime, Supervisor, call
from foundation.errors import AlreadyRegistered, InvalidArgument
from foundation.telemetry import (
    Counter,
    Distribution,
    LastValue,
    Metrics,
    OTelBridge,
    Sum,
    attach,
    attach_many,
    current_span,
    detach,
    execute,
    list_handlers,
    span,
    to_prometheus,
)
from foundation.testing import crash, restarted

Seen = list[tuple[tuple[str, ...], dict[str, Any], dict[str, Any], Any]]


def recorder(seen: Seen) -> Any:
    def handler(event: Any, measurements: Any, meta: Any, config: Any) -> None:
        seen.append((event, measurements, meta, config))

    return handler


async def test_attached_handlers_get_their_events_and_only_theirs(runtime: Runtime) -> None:
    seen: Seen = []
    attach("h1", ("app", "a"), recorder(seen), config={"x": 1})
    attach_many("h2", ["app.b", ("app", "c")], recorder(seen))
    execute(("app", "a"), {"n": 1}, {"who": "me"})
    execute("app.b")
    execute(("app", "zzz"), {"n": 2})
    assert [(e, m, c) for e, m, _, c in seen] == [
        (("app", "a"), {"n": 1}, {"x": 1}),
        (("app", "b"), {}, None),
    ]
    assert {h.id for h in list_handlers("app")} == {"h1", "h2"}
    assert detach("h1") is True
    assert detach("h1") is False
    execute(("app", "a"))
    assert len(seen) == 2


async def test_a_handler_that_raises_is_detached_and_never_breaks_the_emitter(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    seen: Seen = []

    def bad(*_: Any) -> None:
        raise RuntimeError("broken handler")

    attach("bad", "app.x", bad)
    attach("good", "app.x", recorder(seen))
    with caplog.at_level(logging.ERROR, logger="foundation.telemetry"):
        execute("app.x")
        execute("app.x")
    assert len(seen) == 2
    assert [h.id for h in list_handlers()] == ["good"]
    assert "broken handler" in caplog.text


async def test_bad_attachments_are_clear_errors(runtime: Runtime) -> None:
    attach("h", "a.b", recorder([]))
    with pytest.raises(AlreadyRegistered):
        attach("h", "a.c", recorder([]))
    with pytest.raises(InvalidArgument):
        attach("x", (), recorder([]))
    with pytest.raises(InvalidArgument):
        attach("y", "a.b", "not callable")  # type: ignore[arg-type]


def test_execute_outside_a_runtime_is_a_no_op() -> None:
    execute("nothing.here", {"n": 1})


async def test_spans_emit_start_and_stop_with_duration_and_nest_trace_ids(
    runtime: Runtime,
) -> None:
    seen: Seen = []
    attach_many("s", ["job.start", "job.stop", "step.start", "step.stop"], recorder(seen))
    with span("job", {"id": 7}) as outer:
        async with span("step") as inner:
            assert current_span() == inner
        assert current_span() == outer
    assert current_span() is None
    assert [".".join(e) for e, *_ in seen] == ["job.start", "step.start", "step.stop", "job.stop"]
    job_stop = seen[3]
    assert job_stop[1]["duration"] >= 0
    assert job_stop[2]["id"] == 7
    step_meta = seen[1][2]
    assert step_meta["trace_id"] == outer.trace_id
    assert step_meta["parent_id"] == outer.span_id
    assert outer.parent_id is None


async def test_a_span_records_an_exception_and_reraises_it(runtime: Runtime) -> None:
    seen: Seen = []
    attach_many("s", ["work.stop", "work.exception"], recorder(seen))

    @span("work")
    async def work(fail: bool) -> str:
        if fail:
            raise ValueError("nope")
        return "ok"

    assert await work(False) == "ok"
    with pytest.raises(ValueError, match="nope"):
        await work(True)
    assert [e[-1] for e, *_ in seen] == ["stop", "exception"]
    assert seen[1][2]["kind"] == "ValueError"

    @span("work")
    def sync_work() -> int:
        return 3

    assert sync_work() == 3
    assert len(seen) == 3


class Boom(GenServer):
    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        return Reply(state, state)


async def test_the_kernel_emits_process_and_supervisor_events_on_the_same_stream(
    runtime: Runtime,
) -> None:
    seen: Seen = []
    attach_many(
        "k",
        [("foundation", "process", "start"), ("foundation", "supervisor", "restart")],
        recorder(seen),
    )
    await Supervisor.start_link([Boom.child_spec(0, name="boom")])
    old = runtime.whereis("boom")
    assert old is not None
    crash(old)
    await restarted("boom", old)
    restarts = [m for e, _, m, _ in seen if e[-1] == "restart"]
    assert len(restarts) == 1
    assert restarts[0]["id"] == "boom"
    starts = [m["name"] for e, _, m, _ in seen if e[-1] == "start"]
    assert starts.count("boom") == 2


async def test_metrics_count_sum_keep_last_and_bucket_by_tags(runtime: Runtime) -> None:
    metrics = Metrics.attach(
        [
            Counter("req.count", "http.request", tags=("route",)),
            Sum("req.bytes", "http.request", measurement="bytes"),
            LastValue("req.last", "http.request", measurement="bytes"),
            Distribution("req.time", "http.request", measurement="seconds", buckets=(0.1, 1.0)),
        ]
    )
    for route, size, secs in [("/a", 10, 0.05), ("/a", 20, 0.5), ("/b", 5, 3.0)]:
        execute("http.request", {"bytes": size, "seconds": secs}, {"route": route})
    snap = metrics.snapshot()
    assert snap["req.count"] == {("/a",): 2, ("/b",): 1}
    assert snap["req.bytes"] == {(): 35.0}
    assert snap["req.last"] == {(): 5.0}
    assert snap["req.time"][()]["buckets"] == [1, 1, 1]
    text = to_prometheus(metrics)
    assert 'req_count_total{route="/a"} 2.0' in text
    assert 'req_time_bucket{le="1.0"} 2.0' in text
    metrics.detach()
    execute("http.request", {"bytes": 1, "seconds": 0.0}, {"route": "/a"})
    assert metrics.snapshot()["req.count"][("/a",)] == 2
    with pytest.raises(InvalidArgument, match="needs a measurement"):
        Metrics.attach([Sum("bad", "x.y")])


async def test_the_opentelemetry_bridge_turns_spans_into_otel_spans(runtime: Runtime) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bridge = OTelBridge.attach(["db.query"], provider.get_tracer("test"))
    with span("db.query", {"table": "users"}):
        pass
    with pytest.raises(KeyError), span("db.query"):
        raise KeyError("missing")
    bridge.detach()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["db.query", "db.query"]
    assert spans[0].attributes is not None
    assert spans[0].attributes["table"] == "users"
    assert spans[1].status.status_code.name == "ERROR"
    _ = call
