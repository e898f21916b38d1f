"""CircuitBreaker and buffered Delivery: the seed's defects, each as a regression test."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import GenServer, NoReply, Reply, Runtime, cast, spawn
from foundation.errors import CircuitOpen, InvalidArgument, NotFound, RetryExhausted
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.services.circuit_breaker import BreakerConfig, CircuitBreaker
from foundation.services.delivery import Delivery
from foundation.services.protected import protected_call
from foundation.services.retry import Retry
from foundation.testing import assert_emitted, crash, sync


async def breaker(runtime: Runtime, **config: Any) -> None:
    await CircuitBreaker.start_link(name="circuit_breaker")
    cfg = {"failure_threshold": 2, "window": 10.0, "reset_timeout": 5.0, **config}
    await CircuitBreaker.configure("svc", **cfg)


async def fail() -> None:
    raise OSError("service down")


async def ok(value: Any = "fine") -> Any:
    return value


async def test_failures_open_the_circuit_and_an_open_circuit_refuses_at_once(
    runtime: Runtime,
) -> None:
    await breaker(runtime)
    for _ in range(2):
        with pytest.raises(OSError):
            await CircuitBreaker.call("svc", fail)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "open"
    with pytest.raises(CircuitOpen) as info:
        await CircuitBreaker.call("svc", ok)
    assert info.value.retryable
    assert info.value.retry_after == pytest.approx(5.0)


async def test_failures_outside_the_window_do_not_add_up(runtime: Runtime) -> None:
    await breaker(runtime)
    with pytest.raises(OSError):
        await CircuitBreaker.call("svc", fail)
    await runtime.clock.sleep(11)
    with pytest.raises(OSError):
        await CircuitBreaker.call("svc", fail)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_seed_breaker_counted_returned_errors_as_successes(runtime: Runtime) -> None:
    await breaker(runtime, is_failure=lambda r: isinstance(r, dict) and "error" in r)
    for _ in range(2):
        assert await CircuitBreaker.call("svc", ok, {"error": "boom"}) == {"error": "boom"}
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "open"


async def test_a_returned_exception_counts_as_a_failure_by_default(runtime: Runtime) -> None:
    await breaker(runtime)
    for _ in range(2):
        await CircuitBreaker.call("svc", ok, ValueError("returned, not raised"))
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "open"


async def test_ignored_exceptions_never_count(runtime: Runtime) -> None:
    await breaker(runtime, ignore=(KeyError,))

    async def missing() -> None:
        raise KeyError("not a failure of the service")

    for _ in range(5):
        with pytest.raises(KeyError):
            await CircuitBreaker.call("svc", missing)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_seed_half_open_was_not_observable_and_allows_one_trial_at_a_time(
    runtime: Runtime,
) -> None:
    await breaker(runtime)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    assert await CircuitBreaker.state("svc") == "half_open"
    results: list[str] = []

    async def slow_trial() -> None:
        async def work() -> str:
            await runtime.clock.sleep(1)
            return "trial done"

        results.append(await CircuitBreaker.call("svc", work))

    trial = spawn(slow_trial)
    await runtime.clock.sleep(0.1)
    with pytest.raises(CircuitOpen, match="half-open"):
        await CircuitBreaker.call("svc", ok)  # a second caller during the trial is refused
    await wait_exit(trial)
    assert results == ["trial done"]
    assert await CircuitBreaker.state("svc") == "closed"


async def test_a_failed_trial_opens_the_circuit_again(runtime: Runtime) -> None:
    await breaker(runtime)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    with pytest.raises(OSError):
        await CircuitBreaker.call("svc", fail)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "open"


async def test_seed_breaker_ran_the_protected_function_inside_its_server(
    runtime: Runtime,
) -> None:
    await breaker(runtime)
    await CircuitBreaker.configure("other")
    order: list[str] = []

    async def very_slow() -> None:
        async def work() -> None:
            await runtime.clock.sleep(60)
            order.append("slow")

        await CircuitBreaker.call("svc", work)

    slow = spawn(very_slow)
    await runtime.clock.sleep(0.1)
    start = runtime.clock.now()
    assert await CircuitBreaker.call("other", ok, "quick") == "quick"
    order.append("quick")
    assert runtime.clock.now() == start  # not stalled behind the slow call
    await wait_exit(slow)
    assert order == ["quick", "slow"]


async def test_state_changes_are_telemetry_events(runtime: Runtime) -> None:
    await breaker(runtime)
    with assert_emitted(
        ("foundation", "circuit_breaker", "state_change"),
        lambda _, m: (m["from"], m["to"]) == ("closed", "open"),
    ):
        await CircuitBreaker.trip("svc")


async def test_bad_configuration_and_unknown_circuits_are_clear_errors(runtime: Runtime) -> None:
    await breaker(runtime)
    with pytest.raises(InvalidArgument, match="failure_threshold"):
        await CircuitBreaker.configure("x", failure_threshold=0)
    with pytest.raises(NotFound, match="configure it first"):
        await CircuitBreaker.call("nope", ok)


async def test_seed_retry_looped_in_half_open_and_double_wrapped_results(
    runtime: Runtime,
) -> None:
    await breaker(runtime, reset_timeout=2.0)
    await CircuitBreaker.trip("svc")
    calls: list[float] = []

    async def service() -> str:
        calls.append(runtime.clock.now())
        return "answer"

    start = runtime.clock.now()
    policy = Retry(max_attempts=5, base=0.1, jitter=0.0)
    result = await protected_call("svc", service, breaker=True, retry=policy)
    assert result == "answer"  # not wrapped twice
    assert calls == [pytest.approx(start + 2.0)]  # waited retry_after; no spinning
    await CircuitBreaker.trip("svc")
    with pytest.raises(RetryExhausted):
        await protected_call("svc", service, breaker=True, retry=Retry(max_attempts=1))


class Inbox(GenServer):
    """Receives deliveries; answers each (the acknowledgement) unless told to go silent."""

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


async def delivery(runtime: Runtime, **kw: Any) -> None:
    await CircuitBreaker.start_link(name="circuit_breaker")
    await Inbox.start(name="inbox")
    cfg = BreakerConfig(failure_threshold=1, reset_timeout=5.0)
    await Delivery.start_link(config=cfg, timeout=1.0, **kw)


async def got() -> list[Any]:
    from foundation import call

    return await call("inbox", "got")  # type: ignore[no-any-return]


async def test_bug2_buffer_drained_on_any_close(runtime: Runtime) -> None:
    await delivery(runtime)
    assert await Delivery.send("inbox", "m0") == "delivered"
    await CircuitBreaker.configure("deliver:inbox", failure_threshold=1, reset_timeout=5.0)
    await CircuitBreaker.trip("deliver:inbox")
    for i in range(1, 4):
        assert await Delivery.send("inbox", f"m{i}") == "buffered"
    assert await Delivery.buffered("inbox") == ["m1", "m2", "m3"]
    await runtime.clock.sleep(6)  # the drainer's half-open trial delivers m1 and closes it
    assert await got() == ["m0", "m1", "m2", "m3"]
    await CircuitBreaker.trip("deliver:inbox")
    await Delivery.send("inbox", "m4")
    await CircuitBreaker.reset("deliver:inbox")  # a manual close drains too
    await sync("delivery")
    await runtime.clock.sleep(0.01)
    assert await got() == ["m0", "m1", "m2", "m3", "m4"]
    assert await Delivery.buffered("inbox") == []


async def test_messages_sent_while_others_wait_keep_fifo_order(runtime: Runtime) -> None:
    await delivery(runtime)
    await Delivery.send("inbox", "warm")
    cast("inbox", "silent")
    assert await Delivery.send("inbox", "a") == "buffered"  # times out, opens the circuit
    for m in ("b", "c"):
        assert await Delivery.send("inbox", m) == "buffered"
    cast("inbox", "speak")
    await runtime.clock.sleep(10)
    assert await got() == ["warm", "a", "b", "c"]


async def test_overflow_goes_to_the_dead_letters_oldest_first(runtime: Runtime) -> None:
    await delivery(runtime, max_buffer=3)
    await Delivery.send("inbox", "warm")
    await CircuitBreaker.trip("deliver:inbox")
    for i in range(5):
        await Delivery.send("inbox", i)
    assert await Delivery.buffered("inbox") == [2, 3, 4]
    assert await Delivery.dead_letters() == [
        ("inbox", 0, "buffer_overflow"),
        ("inbox", 1, "buffer_overflow"),
    ]


async def test_the_receivers_death_moves_its_buffer_to_the_dead_letters(
    runtime: Runtime,
) -> None:
    sunk: list[tuple[Any, Any, str]] = []

    async def sink(recipient: Any, message: Any, reason: str, meta: dict[str, Any]) -> None:
        sunk.append((recipient, message, reason))

    await delivery(runtime, dead_letters=sink)
    await Delivery.send("inbox", "warm")
    await CircuitBreaker.trip("deliver:inbox")
    for m in ("x", "y"):
        await Delivery.send("inbox", m)
    inbox = runtime.whereis("inbox")
    assert inbox is not None
    crash(inbox)
    await wait_exit(inbox)
    await sync("delivery")
    assert sunk == [("inbox", "x", "receiver_down"), ("inbox", "y", "receiver_down")]
    assert await Delivery.send("inbox", "z") == "dead"  # nobody there: straight to the sink
    assert sunk[-1] == ("inbox", "z", "noproc")
