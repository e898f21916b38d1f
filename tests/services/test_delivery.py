"""Delivery: buffered, ordered, never silently lost; the seed's CoordinationManager defects."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import GenServer, NoReply, Reply, Runtime, Supervisor, call, cast, spawn
from foundation.errors import InvalidArgument
from foundation.kernel.api import receive, wait_exit
from foundation.kernel.process import From
from foundation.services.breaker_config import BreakerConfig
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.delivery import Delivery
from foundation.testing import crash, restarted, sync


class Inbox(GenServer):
    """Receives deliveries; answers each (the acknowledgement) unless told to go silent, or
    to stall (answers after ``stall`` seconds)."""

    async def init(self, args: Any) -> dict[str, Any]:
        return {"got": [], "silent": False}

    async def handle_call(self, request: Any, caller: From, state: dict[str, Any]) -> Any:
        if request == "got":
            return Reply(list(state["got"]), state)
        if state["silent"]:
            return NoReply(state)  # the delivery times out: a failure of the receiver
        state["got"].append(request)
        return Reply("ack", state)

    async def handle_cast(self, request: Any, state: dict[str, Any]) -> Any:
        state["silent"] = request == "silent"
        return state


Sunk = list[tuple[Any, Any, str]]


async def start(runtime: Runtime, **kw: Any) -> None:
    await CircuitBreaker.start_link()
    await Inbox.start(name="inbox")
    cfg = BreakerConfig(failure_threshold=1, reset_timeout=5.0, success_threshold=1)
    await Delivery.start_link(**{"config": cfg, "timeout": 1.0, **kw})


async def got(inbox: Any = "inbox") -> list[Any]:
    return await call(inbox, "got")  # type: ignore[no-any-return]


async def open_circuit(receiver: Any = "inbox") -> None:
    assert await Delivery.send(receiver, "warm") == "delivered"  # the circuit exists
    await CircuitBreaker.trip(f"deliver:{receiver}")


def sink_into(sunk: Sunk) -> Any:
    async def sink(recipient: Any, message: Any, reason: str, meta: dict[str, Any]) -> None:
        assert meta == {"service": "delivery"}
        sunk.append((recipient, message, reason))

    return sink


async def test_a_closed_circuit_delivers_at_once_from_the_senders_process(
    runtime: Runtime,
) -> None:
    await start(runtime)
    assert await Delivery.send("inbox", "hello") == "delivered"
    assert await got() == ["hello"]
    assert await Delivery.buffered("inbox") == []


async def test_bug2_buffer_drained_on_any_close(runtime: Runtime) -> None:
    """Seed Bug #2: buffered messages were lost when the breaker closed. Whichever path closes
    the circuit (a successful trial, a manual reset, a restart of the breaker), the buffer is
    delivered in order."""
    await Supervisor.start_link([CircuitBreaker.child_spec()])
    await Inbox.start(name="inbox")
    cfg = BreakerConfig(failure_threshold=1, reset_timeout=5.0, success_threshold=1)
    await Delivery.start_link(config=cfg, timeout=1.0)
    await open_circuit()
    for i in range(1, 4):
        assert await Delivery.send("inbox", f"m{i}") == "buffered"
    assert await Delivery.buffered("inbox") == ["m1", "m2", "m3"]
    await runtime.clock.sleep(6)  # the drainer's half-open trial delivers m1 and closes it
    assert await got() == ["warm", "m1", "m2", "m3"]

    await CircuitBreaker.trip("deliver:inbox")
    await Delivery.send("inbox", "m4")
    await CircuitBreaker.reset("deliver:inbox")  # a manual close
    await runtime.clock.sleep(0.01)
    assert (await got())[-1] == "m4"

    await CircuitBreaker.trip("deliver:inbox")
    await Delivery.send("inbox", "m5")
    old = runtime.whereis("circuit_breaker")
    await crash(old)  # the breaker restarts with its circuits closed
    await restarted("circuit_breaker", old)
    await runtime.clock.sleep(0.01)
    assert await got() == ["warm", "m1", "m2", "m3", "m4", "m5"]
    assert await Delivery.buffered("inbox") == []
    assert await Delivery.dead_letters() == []


async def test_bug4_buffer_drains_fifo_and_overflow_dead_letters_the_oldest(
    runtime: Runtime,
) -> None:
    """Seed G1 Bug #4 (retracted, behaviour kept): FIFO drain; overflow drops the oldest, and
    here "drops" means hands it to the dead letters, never silently."""
    await start(runtime, max_buffer=3)
    await open_circuit()
    for i in range(5):
        await Delivery.send("inbox", i)
    assert await Delivery.buffered("inbox") == [2, 3, 4]
    assert await Delivery.dead_letters() == [
        ("inbox", 0, "buffer_overflow"),
        ("inbox", 1, "buffer_overflow"),
    ]
    await CircuitBreaker.reset("deliver:inbox")
    await runtime.clock.sleep(0.01)
    assert await got() == ["warm", 2, 3, 4]


async def test_the_buffer_is_bounded_at_100_by_default(runtime: Runtime) -> None:
    """Seed G1 Code Smell #7 and A9: the bound is configuration, 100 by default."""
    await CircuitBreaker.start_link()
    await Inbox.start(name="inbox")
    await Delivery.start_link()
    await open_circuit()
    for i in range(101):
        await Delivery.send("inbox", i)
    assert await Delivery.buffered("inbox") == list(range(1, 101))
    assert await Delivery.dead_letters() == [("inbox", 0, "buffer_overflow")]


async def test_messages_sent_while_others_wait_keep_fifo_order(runtime: Runtime) -> None:
    await start(runtime)
    await Delivery.send("inbox", "warm")
    cast("inbox", "silent")
    assert await Delivery.send("inbox", "a") == "buffered"  # times out, opens the circuit
    for m in ("b", "c"):
        assert await Delivery.send("inbox", m) == "buffered"
    cast("inbox", "speak")
    await runtime.clock.sleep(10)
    assert await got() == ["warm", "a", "b", "c"]


async def test_a_delivery_that_fails_during_the_drain_stays_at_the_front(
    runtime: Runtime,
) -> None:
    await start(runtime, max_attempts=10, retry_delay=1.0)
    await open_circuit()
    for m in ("a", "b"):
        await Delivery.send("inbox", m)
    cast("inbox", "silent")
    await runtime.clock.sleep(20)  # trials at 5 and 11 time out; the circuit reopens each time
    assert await Delivery.buffered("inbox") == ["a", "b"]
    cast("inbox", "speak")
    await runtime.clock.sleep(10)
    assert await got() == ["warm", "a", "b"]
    assert await Delivery.dead_letters() == []


async def test_a_delivery_failing_max_attempts_times_goes_to_the_dead_letters(
    runtime: Runtime,
) -> None:
    sunk: Sunk = []
    await start(runtime, max_attempts=2, dead_letters=sink_into(sunk))
    await open_circuit()
    for m in ("a", "b"):
        await Delivery.send("inbox", m)
    cast("inbox", "silent")
    await runtime.clock.sleep(14)  # two failed trials for "a" (at 5 and 11)
    assert sunk == [("inbox", "a", "delivery_failed:call_timeout")]
    cast("inbox", "speak")
    await runtime.clock.sleep(10)
    assert await got() == ["warm", "b"]


async def test_the_receivers_death_moves_its_buffer_to_the_dead_letters(
    runtime: Runtime,
) -> None:
    sunk: Sunk = []
    await start(runtime, dead_letters=sink_into(sunk))
    await open_circuit()
    for m in ("x", "y"):
        await Delivery.send("inbox", m)
    await crash("inbox")
    await sync("delivery")
    assert sunk == [("inbox", "x", "receiver_down"), ("inbox", "y", "receiver_down")]
    assert await Delivery.buffered("inbox") == []


async def test_a_send_to_a_receiver_that_is_not_there_is_a_dead_letter(runtime: Runtime) -> None:
    """Seed G2-#3: a raw send to a dead process vanished; here the sender is told, and the
    message is kept as a dead letter."""
    await start(runtime)
    await open_circuit()
    await crash("inbox")
    assert await Delivery.send("inbox", "z") == "dead"
    pid = spawn(receive)
    await crash(pid)
    assert await Delivery.send(pid, "w") == "dead"
    dead = await Delivery.dead_letters()
    assert dead[-2:] == [("inbox", "z", "noproc"), (pid, "w", "noproc")]
    with pytest.raises(InvalidArgument, match="receiver"):
        await Delivery.send(42, "what")  # type: ignore[arg-type]


async def test_dead_letters_are_kept_when_the_sink_fails(runtime: Runtime) -> None:
    """Seed 3F-3: a cast to a dead-letter queue that was not running lost the dead letters."""

    async def broken(recipient: Any, message: Any, reason: str, meta: dict[str, Any]) -> None:
        raise OSError("dead-letter queue unavailable")

    await start(runtime, max_buffer=1, dead_letters=broken)
    await open_circuit()
    await Delivery.send("inbox", "first")
    await Delivery.send("inbox", "second")
    assert await Delivery.dead_letters() == [("inbox", "first", "buffer_overflow")]


async def test_g1_flaw13_receiver_monitors_and_circuits_removed(runtime: Runtime) -> None:
    """Seed G1 Critical Flaw #13: monitors were never removed. 300 receivers that got messages
    (some buffered) and died leave no monitor, buffer or circuit behind."""
    await start(runtime)
    pids = [await Inbox.start() for _ in range(300)]
    for i, pid in enumerate(pids):
        assert await Delivery.send(pid, "hi") == "delivered"
        if i % 3 == 0:
            await CircuitBreaker.trip(f"deliver:{pid}")
            assert await Delivery.send(pid, "later") == "buffered"
    delivery = runtime.whereis("delivery")
    assert delivery is not None
    info = {i.pid: i for i in runtime.processes()}
    assert len(info[delivery].monitors) == 300
    for pid in pids:
        await crash(pid)
    await sync("delivery")
    await sync("circuit_breaker")
    info = {i.pid: i for i in runtime.processes()}
    assert info[delivery].monitors == ()
    assert all(CircuitBreaker.peek(f"deliver:{pid}") is None for pid in pids)
    assert len([d for d in await Delivery.dead_letters() if d[2] == "receiver_down"]) == 100


async def test_a7_a_slow_receiver_never_blocks_the_service(runtime: Runtime) -> None:
    """Seed A7: the CoordinationManager delivered inside its own server. Here a receiver that
    never answers holds up only its own sender."""
    await start(runtime, timeout=30.0)
    await Inbox.start(name="other")
    cast("inbox", "silent")
    stuck = spawn(Delivery.send, "inbox", "stuck")
    await runtime.clock.sleep(0.1)
    start_time = runtime.clock.now()
    assert await Delivery.send("other", "quick") == "delivered"
    assert runtime.clock.now() == start_time
    await wait_exit(stuck)


async def test_buffers_survive_a_crash_of_the_delivery_server(runtime: Runtime) -> None:
    await CircuitBreaker.start_link()
    await Inbox.start(name="inbox")
    cfg = BreakerConfig(failure_threshold=1, reset_timeout=5.0, success_threshold=1)
    await Supervisor.start_link([Delivery.child_spec(config=cfg)])
    await open_circuit()
    for m in ("a", "b"):
        await Delivery.send("inbox", m)
    old = runtime.whereis("delivery")
    await crash(old)
    await restarted("delivery", old)
    assert await Delivery.buffered("inbox") == ["a", "b"]
    await runtime.clock.sleep(6)
    assert await got() == ["warm", "a", "b"]


async def test_an_orderly_stop_hands_the_buffers_to_the_dead_letters(runtime: Runtime) -> None:
    sunk: Sunk = []
    await start(runtime, dead_letters=sink_into(sunk))
    await open_circuit()
    await Delivery.send("inbox", "pending")
    await GenServer.stop("delivery")
    assert sunk == [("inbox", "pending", "delivery_stopped")]


async def test_bad_options_are_refused_at_start(runtime: Runtime) -> None:
    for bad in ({"max_buffer": 0}, {"max_attempts": True}, {"timeout": -1}, {"dead_letters": 3}):
        with pytest.raises(InvalidArgument, match=next(iter(bad))):
            await Delivery.start_link(**bad)
