"""CircuitBreaker: the state machine on the runtime clock, and the seed's defects as regressions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from foundation import GenServer, Runtime, Supervisor, current_pid, receive, spawn
from foundation.errors import CircuitOpen, InvalidArgument, NoProcess, NotFound, RetryExhausted
from foundation.kernel.api import wait_exit
from foundation.kernel.supervision import Failed
from foundation.services.breaker_config import BreakerConfig
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.protected import protected_call
from foundation.services.retry import Retry
from foundation.telemetry import attach
from foundation.testing import assert_emitted, crash, restarted, sync

EVENT = ("foundation", "circuit_breaker", "state_change")


async def breaker(runtime: Runtime, **config: Any) -> None:
    await CircuitBreaker.start_link()
    cfg = {"failure_threshold": 2, "window": 10.0, "reset_timeout": 5.0, "success_threshold": 1}
    await CircuitBreaker.configure("svc", **{**cfg, **config})


async def fail() -> None:
    raise OSError("service down")


async def ok(value: Any = "fine") -> Any:
    return value


async def failures(n: int, circuit: str = "svc") -> None:
    for _ in range(n):
        with pytest.raises(OSError):
            await CircuitBreaker.call(circuit, fail)
    await sync("circuit_breaker")


# -- the state machine ---------------------------------------------------------------------------


async def test_failures_within_the_window_open_the_circuit_which_refuses_at_once(
    runtime: Runtime,
) -> None:
    await breaker(runtime)
    await failures(2)
    assert await CircuitBreaker.state("svc") == "open"
    ran: list[int] = []
    with pytest.raises(CircuitOpen) as info:
        await CircuitBreaker.call("svc", lambda: ran.append(1))
    assert ran == []
    assert info.value.retryable
    assert info.value.retry_after == pytest.approx(5.0)
    await runtime.clock.sleep(2)
    with pytest.raises(CircuitOpen) as info:
        await CircuitBreaker.call("svc", ok)
    assert info.value.retry_after == pytest.approx(3.0)


async def test_failures_outside_the_window_do_not_add_up(runtime: Runtime) -> None:
    await breaker(runtime)
    await failures(1)
    await runtime.clock.sleep(11)
    await failures(1)
    assert await CircuitBreaker.state("svc") == "closed"


async def test_ignored_exceptions_never_count(runtime: Runtime) -> None:
    await breaker(runtime, ignore=(KeyError,))

    async def missing() -> None:
        raise KeyError("not a failure of the service")

    for _ in range(5):
        with pytest.raises(KeyError):
            await CircuitBreaker.call("svc", missing)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_only_the_configured_exception_types_count(runtime: Runtime) -> None:
    await breaker(runtime, failures=(ConnectionError,))

    async def bad_input() -> None:
        raise ValueError("the caller's mistake, not the service's")

    for _ in range(3):
        with pytest.raises(ValueError):
            await CircuitBreaker.call("svc", bad_input)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_half_open_is_observable_and_announced_when_the_reset_timeout_passes(
    runtime: Runtime,
) -> None:
    """Seed 3F-6: half_open could not be observed. It is a state, on time, with telemetry."""
    await breaker(runtime)
    seen: list[tuple[str, str, float]] = []
    attach(
        "t", EVENT, lambda e, _m, md, _c: seen.append((md["from"], md["to"], runtime.clock.now()))
    )
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    assert CircuitBreaker.peek("svc") == "half_open"  # no caller needed to notice
    assert await CircuitBreaker.state("svc") == "half_open"
    assert seen == [("closed", "open", 0.0), ("open", "half_open", 5.0)]


async def test_half_open_closes_after_success_threshold_trials(runtime: Runtime) -> None:
    await breaker(runtime, success_threshold=3)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    for expected in ("half_open", "half_open", "closed"):
        assert await CircuitBreaker.call("svc", ok, 1) == 1
        await sync("circuit_breaker")
        assert await CircuitBreaker.state("svc") == expected


async def test_a_failed_trial_opens_the_circuit_again_for_a_full_reset_timeout(
    runtime: Runtime,
) -> None:
    await breaker(runtime, success_threshold=2)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    await CircuitBreaker.call("svc", ok)
    await failures(1)
    assert await CircuitBreaker.state("svc") == "open"
    with pytest.raises(CircuitOpen) as info:
        await CircuitBreaker.call("svc", ok)
    assert info.value.retry_after == pytest.approx(5.0)


async def test_half_open_allows_one_trial_at_a_time(runtime: Runtime) -> None:
    """Seed 3F-6: exactly one trial call; every other caller is refused meanwhile."""
    await breaker(runtime, success_threshold=2, trial_retry_after=0.25)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    trials: list[float] = []

    async def slow() -> str:
        trials.append(runtime.clock.now())
        await runtime.clock.sleep(1)
        return "trial done"

    async def trial() -> None:
        assert await CircuitBreaker.call("svc", slow) == "trial done"

    first = spawn(trial)
    await runtime.clock.sleep(0.1)
    for _ in range(3):
        with pytest.raises(CircuitOpen, match="trial call is running") as info:
            await CircuitBreaker.call("svc", slow)
        assert info.value.retry_after == 0.25
    await wait_exit(first)
    await sync("circuit_breaker")
    assert trials == [5.0]
    assert await CircuitBreaker.state("svc") == "half_open"  # one success of two
    await CircuitBreaker.call("svc", slow)  # the next trial
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_a_trial_whose_caller_dies_or_is_cancelled_frees_the_trial(runtime: Runtime) -> None:
    await breaker(runtime)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)

    async def hang() -> None:
        await CircuitBreaker.call("svc", receive)

    await sync(caller := spawn(hang))
    with pytest.raises(CircuitOpen):
        await CircuitBreaker.call("svc", ok)
    await crash(caller)
    await sync("circuit_breaker")

    async def interrupted() -> None:
        raise asyncio.CancelledError  # not an outcome of the service: frees the trial

    with pytest.raises(asyncio.CancelledError):
        await CircuitBreaker.call("svc", interrupted)
    await sync("circuit_breaker")
    assert await CircuitBreaker.call("svc", ok, "third") == "third"
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_an_outcome_from_before_a_transition_is_ignored(runtime: Runtime) -> None:
    """A call let through while closed that fails after the circuit moved on says nothing
    about the new generation: it neither reopens a closed circuit nor spends a trial."""
    await breaker(runtime, failure_threshold=1)

    async def slow_failure() -> None:
        async def work() -> None:
            await runtime.clock.sleep(10)
            raise OSError("late")

        with pytest.raises(OSError):
            await CircuitBreaker.call("svc", work)

    late = spawn(slow_failure)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    assert await CircuitBreaker.call("svc", ok) == "fine"  # the trial closes it
    await wait_exit(late)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def test_every_transition_is_a_telemetry_event(runtime: Runtime) -> None:
    await breaker(runtime)
    seen: list[tuple[str, str, str]] = []
    attach("t", EVENT, lambda e, m, md, _c: seen.append((md["name"], md["from"], md["to"])))
    await failures(2)
    await runtime.clock.sleep(5)
    await CircuitBreaker.call("svc", ok)
    await sync("circuit_breaker")
    await CircuitBreaker.trip("svc")
    await CircuitBreaker.reset("svc")
    assert seen == [
        ("svc", "closed", "open"),
        ("svc", "open", "half_open"),
        ("svc", "half_open", "closed"),
        ("svc", "closed", "open"),
        ("svc", "open", "closed"),
    ]
    with assert_emitted(EVENT, lambda _, md: md == {"name": "svc", "from": "closed", "to": "open"}):
        await CircuitBreaker.trip("svc")


async def test_listeners_hear_every_transition_with_one_monitor_each(runtime: Runtime) -> None:
    await breaker(runtime)
    for i in range(20):
        await CircuitBreaker.configure(f"c{i}")
    heard: list[tuple[str, str, str]] = []

    async def listener() -> None:
        for i in range(20):
            await CircuitBreaker.listen(f"c{i}")
        while True:
            heard.append(await receive())

    pid = spawn(listener)
    await sync(pid)
    bp = runtime.whereis("circuit_breaker")
    assert bp is not None
    info = {i.pid: i for i in runtime.processes()}
    assert info[bp].monitors == (pid,)  # one monitor however many circuits (seed G1-#13)
    await CircuitBreaker.trip("c3")
    await sync(pid)
    assert heard == [("circuit", "c3", "open")]
    await crash(pid)
    await sync("circuit_breaker")
    info = {i.pid: i for i in runtime.processes()}
    assert info[bp].monitors == ()


async def test_bad_configuration_and_unknown_circuits_are_clear_errors(runtime: Runtime) -> None:
    await breaker(runtime)
    with pytest.raises(InvalidArgument, match="failure_threshold"):
        await CircuitBreaker.configure("x", failure_threshold=0)
    with pytest.raises(InvalidArgument, match="reset_timeout"):
        BreakerConfig(reset_timeout=-1)
    with pytest.raises(InvalidArgument, match="ignore"):
        BreakerConfig(ignore=(KeyError, "oops"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="circuit name"):
        await CircuitBreaker.configure("")
    with pytest.raises(NotFound, match="configure it first"):
        await CircuitBreaker.call("nope", ok)
    with pytest.raises(NotFound, match="'nope'"):
        await CircuitBreaker.state("nope")
    assert CircuitBreaker.peek("nope") is None
    assert await CircuitBreaker.state("svc") == "closed"  # the server did not crash


async def test_remove_forgets_a_circuit(runtime: Runtime) -> None:
    await breaker(runtime)
    await CircuitBreaker.trip("svc")
    await CircuitBreaker.remove("svc")
    await CircuitBreaker.remove("never-there")
    with pytest.raises(NotFound):
        await CircuitBreaker.call("svc", ok)


async def test_record_failure_sync_is_the_seeds_synchronous_test_api(runtime: Runtime) -> None:
    await breaker(runtime)
    assert await CircuitBreaker.record_failure_sync("svc") == "closed"
    assert await CircuitBreaker.record_failure_sync("svc") == "open"


async def test_a_restarted_breaker_keeps_its_circuits_closed_and_tells_listeners(
    runtime: Runtime,
) -> None:
    await Supervisor.start_link([CircuitBreaker.child_spec()])
    await CircuitBreaker.configure("svc", failure_threshold=1, reset_timeout=30)
    heard: list[Any] = []

    async def listener() -> None:
        await CircuitBreaker.listen("svc")
        while True:
            heard.append(await receive())

    await sync(pid := spawn(listener))
    await CircuitBreaker.trip("svc")
    old = runtime.whereis("circuit_breaker")
    await crash(old)
    await restarted("circuit_breaker", old)
    assert await CircuitBreaker.state("svc") == "closed"
    assert await CircuitBreaker.call("svc", ok, 2) == 2
    await sync(pid)
    assert heard == [("circuit", "svc", "open"), ("circuit", "svc", "closed")]
    await failures(1)  # the configuration came back too: one failure opens it
    assert await CircuitBreaker.state("svc") == "open"


async def test_a_call_while_the_breaker_is_not_running_is_a_clear_error(runtime: Runtime) -> None:
    await breaker(runtime)
    await GenServer.stop("circuit_breaker")
    assert CircuitBreaker.peek("svc") is None
    with pytest.raises(NoProcess, match="circuit breaker 'circuit_breaker' is not running"):
        await CircuitBreaker.call("svc", ok)


# -- the seed's defects --------------------------------------------------------------------------


async def test_protected_function_runs_in_caller_not_server(runtime: Runtime) -> None:
    """Seed P1/3E: the breaker ran the function inside its own server, serialising every call,
    so one slow service stalled every caller. It runs in the caller; the server never waits."""
    await breaker(runtime)
    await CircuitBreaker.configure("other")
    where: list[Any] = []
    done: list[str] = []

    async def very_slow() -> None:
        async def work() -> None:
            where.append(current_pid())
            await runtime.clock.sleep(60)
            done.append("slow")

        where.append(current_pid())
        await CircuitBreaker.call("svc", work)

    slow = spawn(very_slow)
    await runtime.clock.sleep(0.1)
    assert where[0] == where[1] != runtime.whereis("circuit_breaker")
    start = runtime.clock.now()
    assert await CircuitBreaker.call("svc", ok, "same circuit") == "same circuit"
    assert await CircuitBreaker.call("other", ok, "quick") == "quick"
    assert await CircuitBreaker.state("svc") == "closed"  # the server answers meanwhile
    done.append("quick")
    assert runtime.clock.now() == start  # not stalled behind the slow call
    await wait_exit(slow)
    assert done == ["quick", "slow"]


async def test_breaker_counts_returned_errors_as_failures(runtime: Runtime) -> None:
    """Seed 3F-6: only raised exceptions counted, so a returned error was a success."""
    await breaker(runtime, is_failure=lambda r: isinstance(r, dict) and "error" in r)
    for _ in range(2):
        assert await CircuitBreaker.call("svc", ok, {"error": "boom"}) == {"error": "boom"}
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "open"
    await CircuitBreaker.configure("default", failure_threshold=2)
    await CircuitBreaker.call("default", ok, ValueError("returned, not raised"))
    await CircuitBreaker.call("default", ok, Failed(OSError("a kernel error reply")))
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("default") == "open"


async def test_retry_does_not_spin_in_half_open(runtime: Runtime) -> None:
    """Seed 3F-6: RetryService called itself again while the status stayed half_open. A retry
    waits for the breaker's retry_after and spends an attempt each time; one trial runs."""
    await breaker(runtime, trial_retry_after=0.5)
    await CircuitBreaker.trip("svc")
    await runtime.clock.sleep(5)
    calls: list[float] = []

    async def trial_in_progress() -> None:
        await CircuitBreaker.call("svc", runtime.clock.sleep, 10)

    spawn(trial_in_progress)
    await runtime.clock.sleep(0.1)

    async def service() -> str:
        calls.append(runtime.clock.now())
        return "answer"

    policy = Retry.fixed(0.01, max_attempts=4, max_elapsed=None)
    with pytest.raises(RetryExhausted) as info:
        await protected_call("svc", service, breaker=True, retry=policy)
    assert isinstance(info.value.__cause__, CircuitOpen)
    assert calls == []  # never a second trial
    assert runtime.clock.now() == pytest.approx(5.1 + 3 * 0.5)  # three waits of retry_after


async def test_retry_does_not_double_wrap_results(runtime: Runtime) -> None:
    """Seed 3F-6: retry through a breaker answered {ok, {ok, x}}; the result comes back as is,
    after waiting out an open circuit exactly as long as it said."""
    await breaker(runtime, reset_timeout=2.0)
    await CircuitBreaker.trip("svc")
    calls: list[float] = []

    async def service() -> tuple[str, int]:
        calls.append(runtime.clock.now())
        return ("ok", 42)

    policy = Retry.fixed(0.1, max_attempts=5)
    assert await protected_call("svc", service, breaker=True, retry=policy) == ("ok", 42)
    assert calls == [pytest.approx(2.0)]


def test_seed_defaults_are_configuration_not_magic_numbers() -> None:
    """Seed G1 Code Smell #7: thresholds are configuration, with the seed's values as defaults."""
    cfg = BreakerConfig()
    assert (cfg.failure_threshold, cfg.success_threshold) == (5, 3)
    assert (cfg.window, cfg.reset_timeout) == (60.0, 60.0)
    assert BreakerConfig(failure_threshold=1, reset_timeout=0.5).failure_threshold == 1
