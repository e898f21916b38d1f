"""SignalBus: patterns, synchronous publish, one monitor per subscriber, nothing dropped."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import GenServer, Reply, Runtime, call, receive, spawn
from foundation.errors import InvalidArgument, NotInProcess
from foundation.kernel.api import wait_exit
from foundation.services import Signal, SignalBus
from foundation.services.signal_bus import compile_pattern
from foundation.testing import crash, sync


class Listener(GenServer):
    """Subscribes to patterns in init and records the signal types it receives."""

    async def init(self, patterns: list[str]) -> list[str]:
        for p in patterns:
            await SignalBus.subscribe("signal_bus", p)
        return []

    async def handle_info(self, msg: Any, state: list[str]) -> Any:
        if isinstance(msg, Signal):
            return [*state, msg.type]
        return state

    async def handle_call(self, request: Any, caller: Any, state: list[str]) -> Any:
        return Reply(state, state)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("task.done", ["task.done"], ["task", "task.done.x", "job.done"]),
        ("task.*", ["task.done", "task.x"], ["task", "task.a.b", "job.done"]),
        ("task.**", ["task.done", "task.a.b.c"], ["task", "jobs.task.a"]),
        ("*.done", ["task.done", "job.done"], ["done", "a.b.done"]),
        ("a.**.z", ["a.b.z", "a.b.c.z"], ["a.z", "a.b.c"]),
    ],
)
def test_patterns_match_one_segment_with_star_and_one_or_more_with_double_star(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    regex = compile_pattern(pattern)
    for t in matches:
        assert regex.match(t) if regex else t == pattern, (pattern, t)
    for t in misses:
        assert not (regex.match(t) if regex else t == pattern), (pattern, t)


def test_malformed_patterns_and_signal_types_are_rejected() -> None:
    for bad in ("", "a..b", "a.b c", 3):
        with pytest.raises(InvalidArgument):
            compile_pattern(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dotted"):
        Signal(type="bad type")


async def test_publish_returns_the_number_of_subscribers_reached_once_each(
    runtime: Runtime,
) -> None:
    await SignalBus.start_link()
    a = await Listener.start(["task.*", "task.done"])
    b = await Listener.start(["task.**"])
    await Listener.start(["job.*"])
    assert await SignalBus.publish("signal_bus", "task.done", {"id": 1}) == 2
    assert await SignalBus.publish("signal_bus", "task.step.done") == 1
    assert await SignalBus.publish("signal_bus", "nobody.listens") == 0
    assert await call(a, "get") == ["task.done"]
    assert await call(b, "get") == ["task.done", "task.step.done"]


async def test_signals_arrive_in_publish_order(runtime: Runtime) -> None:
    await SignalBus.start_link()
    listener = await Listener.start(["n.*"])
    for i in range(50):
        await SignalBus.publish("signal_bus", f"n.s{i}")
    assert await call(listener, "get") == [f"n.s{i}" for i in range(50)]


async def test_g1_flaw13_subscriber_monitors_removed(runtime: Runtime) -> None:
    """1,000 subscribers created and killed leave zero monitors and zero subscriptions."""
    bus = await SignalBus.start_link()

    async def subscriber() -> None:
        await SignalBus.subscribe("signal_bus", "a.*")
        await SignalBus.subscribe("signal_bus", "a.**")
        await receive()

    pids = [spawn(subscriber) for _ in range(1000)]
    for pid in pids:
        await sync(pid)
    info = {i.pid: i for i in runtime.processes()}
    assert len(info[bus].monitors) == 1000  # one per subscriber, not one per pattern
    for pid in pids:
        await crash(pid)
    stats = await SignalBus.stats(bus)
    assert (stats.subscribers, stats.subscriptions) == (0, 0)
    info = {i.pid: i for i in runtime.processes()}
    assert info[bus].monitors == ()


async def test_unsubscribing_the_last_pattern_removes_the_monitor(runtime: Runtime) -> None:
    bus = await SignalBus.start_link()
    ids: list[str] = []

    async def subscriber() -> None:
        ids.append(await SignalBus.subscribe("signal_bus", "x.*"))
        ids.append(await SignalBus.subscribe("signal_bus", "y.*"))
        await receive()

    pid = spawn(subscriber)
    await sync(pid)
    assert await SignalBus.unsubscribe(bus, ids[0])
    assert {i.pid: i for i in runtime.processes()}[bus].monitors == (pid,)
    assert await SignalBus.unsubscribe(bus, ids[1])
    assert {i.pid: i for i in runtime.processes()}[bus].monitors == ()
    assert not await SignalBus.unsubscribe(bus, ids[1])


async def test_overloaded_subscriber_signals_go_to_dead_letters_not_dropped(
    runtime: Runtime,
) -> None:
    dead: list[tuple[Any, str, str]] = []

    async def sink(recipient: Any, message: Any, reason: str, meta: dict[str, Any]) -> None:
        dead.append((recipient, message.type, reason))

    await SignalBus.start_link(max_pending=3, dead_letters=sink)

    async def slow() -> None:
        await SignalBus.subscribe("signal_bus", "load.*")
        await receive(match=lambda m: m == "never")

    pid = spawn(slow)
    await sync(pid)
    reached = [await SignalBus.publish("signal_bus", f"load.m{i}") for i in range(5)]
    assert reached == [1, 1, 1, 0, 0]
    assert dead == [
        (pid, "load.m3", "subscriber_overloaded"),
        (pid, "load.m4", "subscriber_overloaded"),
    ]
    stats = await SignalBus.stats("signal_bus")
    assert (stats.published, stats.delivered, stats.dead_lettered) == (5, 3, 2)


async def test_subscribe_outside_a_process_needs_an_explicit_subscriber(runtime: Runtime) -> None:
    await SignalBus.start_link()
    with pytest.raises(NotInProcess):
        await SignalBus.subscribe("signal_bus", "a.b")
    with pytest.raises(InvalidArgument):
        await SignalBus.publish("signal_bus", "bad type!")


async def test_bad_requests_get_errors_and_the_bus_keeps_serving(runtime: Runtime) -> None:
    bus = await SignalBus.start_link()
    from foundation.kernel.supervision import unwrap

    with pytest.raises(InvalidArgument):
        unwrap(await call(bus, ("publish", "not a signal")))
    with pytest.raises(InvalidArgument):
        unwrap(await call(bus, "garbage"))
    with pytest.raises(InvalidArgument):
        await SignalBus.subscribe(bus, "a..b", subscriber=bus)

    async def quick() -> None:
        return None

    dead = spawn(quick)
    await wait_exit(dead)
    with pytest.raises(InvalidArgument, match="not alive"):
        await SignalBus.subscribe(bus, "a.b", subscriber=dead)
    assert await SignalBus.publish(bus, "a.b") == 0
