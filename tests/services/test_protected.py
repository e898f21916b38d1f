"""protected_call: guards composed in order around a function that runs in the caller."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from foundation import GenServer, Runtime, current_pid, spawn
from foundation.errors import (
    CallTimeout,
    CircuitOpen,
    FoundationError,
    HttpStatusError,
    InvalidArgument,
    NotFound,
    RateLimited,
    RetryExhausted,
)
from foundation.kernel.api import wait_exit
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.http import HttpPoolConfig, HttpPools
from foundation.services.protected import protected_call, run_with_timeout
from foundation.services.rate_limiter import FixedWindow, RateLimiter, TokenBucket
from foundation.services.retry import Retry
from foundation.testing import crash, sync
from tests.services.test_http import LocalHttp


async def test_the_function_runs_in_the_caller_and_its_result_is_returned_as_is(
    runtime: Runtime,
) -> None:
    seen: list[Any] = []

    async def fn(x: int) -> tuple[str, int]:
        seen.append(current_pid())
        return ("ok", x)

    async def caller() -> None:
        seen.append(current_pid())
        seen.append(await protected_call("svc", fn, 7, retry=Retry.fixed(0), timeout=5))

    await wait_exit(spawn(caller))
    assert seen[0] == seen[1]  # the same process: no server ran it
    assert seen[2] == ("ok", 7)


async def test_a_rate_limited_attempt_never_reaches_the_function(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"api": FixedWindow(1, 60)})
    calls: list[float] = []

    async def fn() -> str:
        calls.append(runtime.clock.now())
        return "done"

    assert await protected_call("svc", fn, rate_limit="api") == "done"
    with pytest.raises(RateLimited) as err:
        await protected_call("svc", fn, rate_limit="api")
    assert err.value.retry_after == pytest.approx(60)
    assert calls == [0.0]


async def test_retry_waits_out_a_rate_limit_as_it_says(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"api": TokenBucket(1, 0.5)})
    calls: list[float] = []

    async def fn() -> str:
        calls.append(runtime.clock.now())
        return "done"

    policy = Retry.fixed(0.1, max_attempts=5)
    for _ in range(3):
        await protected_call("svc", fn, rate_limit=("api", "tenant-1"), retry=policy)
    assert calls == [0.0, 2.0, 4.0]  # each retry came back when the next token was due


async def test_a_custom_rate_limit_check_is_used_as_given(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"api": FixedWindow(2, 60)})
    check = functools.partial(RateLimiter.check, "api", "shared-key")

    async def fn() -> int:
        return 1

    assert await protected_call("a", fn, rate_limit=check) == 1
    assert await protected_call("b", fn, rate_limit=check) == 1
    with pytest.raises(RateLimited):
        await protected_call("c", fn, rate_limit=check)


async def test_timeout_runs_on_the_runtime_clock_and_is_retryable(runtime: Runtime) -> None:
    starts: list[float] = []

    async def slow() -> None:
        starts.append(runtime.clock.now())
        await runtime.clock.sleep(10)

    with pytest.raises(CallTimeout) as err:
        await protected_call("svc", slow, timeout=2)
    assert runtime.clock.now() == pytest.approx(2.0)
    assert err.value.retryable
    with pytest.raises(RetryExhausted) as exhausted:
        await protected_call("svc", slow, timeout=2, retry=Retry.fixed(1, max_attempts=3))
    assert isinstance(exhausted.value.__cause__, CallTimeout)
    assert starts == pytest.approx([0.0, 2.0, 5.0, 8.0])


async def test_a_slow_first_attempt_then_a_fast_one_succeeds(runtime: Runtime) -> None:
    delays = [5.0, 0.5]

    async def fn() -> str:
        await runtime.clock.sleep(delays.pop(0))
        return "fast enough"

    got = await protected_call("svc", fn, timeout=1, retry=Retry.fixed(0, max_attempts=2))
    assert got == "fast enough"
    assert runtime.clock.now() == pytest.approx(1.5)


async def test_a_caller_killed_mid_call_dies_rather_than_timing_out(runtime: Runtime) -> None:
    async def forever() -> None:
        await runtime.clock.sleep(3600)

    async def caller() -> None:
        await protected_call("svc", forever, timeout=100, retry=Retry.fixed(1))

    pid = spawn(caller)
    await runtime.clock.sleep(1)
    assert await crash(pid) == "killed"


async def test_non_retryable_errors_pass_through_every_guard_unchanged(runtime: Runtime) -> None:
    error = FoundationError("order 42 is invalid")

    async def fn() -> None:
        raise error

    with pytest.raises(FoundationError) as err:
        await protected_call("svc", fn, retry=Retry.fixed(0), timeout=5)
    assert err.value is error


async def test_the_breaker_sits_between_the_rate_limit_and_the_timeout(runtime: Runtime) -> None:
    """A request the limit denies never reaches the breaker (not a failure of the service);
    a call that overruns its timeout is one."""
    await RateLimiter.start_link(limiters={"api": FixedWindow(1, 60)})
    await CircuitBreaker.start_link()
    await CircuitBreaker.configure("svc", failure_threshold=1, reset_timeout=30)
    ran: list[float] = []

    async def slow() -> str:
        ran.append(runtime.clock.now())
        await runtime.clock.sleep(5)
        return "late"

    with pytest.raises(CallTimeout):
        await protected_call("svc", slow, breaker=True, timeout=1)
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "open"  # the timeout counted
    await CircuitBreaker.reset("svc")
    await protected_call("svc", ok, breaker=True, rate_limit="api")
    with pytest.raises(RateLimited):
        await protected_call("svc", ok, breaker=True, rate_limit="api")
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"  # the denial did not count
    await CircuitBreaker.trip("svc")
    with pytest.raises(CircuitOpen):
        await protected_call("svc", slow, breaker=True, timeout=1)
    assert ran == [0.0]  # an open circuit never runs the function


async def test_breaker_names_the_circuit_or_uses_the_service(runtime: Runtime) -> None:
    await CircuitBreaker.start_link()
    await CircuitBreaker.configure("shared-db", failure_threshold=1)
    with pytest.raises(OSError):
        await protected_call("orders", boom, breaker="shared-db")
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("shared-db") == "open"
    with pytest.raises(NotFound, match="'orders'"):  # breaker=True: the service's own circuit
        await protected_call("orders", ok, breaker=True, retry=Retry.fixed(0))
    assert await protected_call("orders", ok) == "ok"  # no breaker asked for: none used
    with pytest.raises(InvalidArgument, match="breaker"):
        await protected_call("orders", ok, breaker=42)  # type: ignore[call-overload]


async def test_every_guard_together_recovers_once_the_circuit_lets_a_trial_through(
    runtime: Runtime,
) -> None:
    """Retry outermost: each attempt is rate limited, then goes through the breaker, then
    the timeout. Two timeouts open the circuit; retries wait out its retry_after (never
    spinning); the half-open trial succeeds and the result comes back unwrapped."""
    await RateLimiter.start_link(limiters={"api": TokenBucket(10, 10)})
    await CircuitBreaker.start_link()
    await CircuitBreaker.configure("svc", failure_threshold=2, reset_timeout=4, success_threshold=1)
    delays = [10.0, 10.0, 0.0]
    starts: list[float] = []

    async def flaky() -> dict[str, int]:
        starts.append(runtime.clock.now())
        await runtime.clock.sleep(delays.pop(0))
        return {"answer": 42}

    policy = Retry.fixed(0.5, max_attempts=5, max_elapsed=None)
    got = await protected_call(
        "svc", flaky, breaker=True, retry=policy, rate_limit="api", timeout=1
    )
    assert got == {"answer": 42}
    # attempts at 0 and 1.5 time out (open at 2.5); the third is refused and waits 4 s
    assert starts == pytest.approx([0.0, 1.5, 6.5])
    await sync("circuit_breaker")
    assert await CircuitBreaker.state("svc") == "closed"


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise OSError("down")


async def test_run_with_timeout_returns_in_time_and_leaves_no_cancellation(
    runtime: Runtime,
) -> None:
    async def quick(x: int) -> int:
        await runtime.clock.sleep(0.5)
        return x

    assert await run_with_timeout(runtime.clock, 1.0, quick, 3) == 3
    await runtime.clock.sleep(2)  # the timer was cancelled: nothing cancels us later
    assert runtime.clock.now() == pytest.approx(2.5)


async def test_invalid_protected_call_arguments_are_rejected(runtime: Runtime) -> None:
    async def fn() -> None:
        return None

    with pytest.raises(InvalidArgument, match="timeout"):
        await protected_call("svc", fn, timeout=0)
    with pytest.raises(InvalidArgument, match="service"):
        await protected_call("", fn)
    with pytest.raises(InvalidArgument, match="rate_limit"):
        await protected_call("svc", fn, rate_limit=42)  # type: ignore[call-overload]


@pytest.mark.foundation(clock="real")
async def test_a_protected_http_call_retries_a_503_then_gets_the_answer(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url)})
        await RateLimiter.start_link(limiters={"svc": TokenBucket(10, 100.0)})
        get = functools.partial(HttpPools.get, "svc", "/flaky", raise_for_status=True)
        policy = Retry.fixed(0.01, max_attempts=5)
        response = await protected_call("svc", get, retry=policy, rate_limit="svc", timeout=5)
        assert (response.status_code, srv.seen.count("GET /flaky")) == (200, 3)
        srv.failures = 5
        with pytest.raises(RetryExhausted) as err:
            await protected_call("svc", get, retry=Retry.fixed(0.01, max_attempts=2))
        assert isinstance(err.value.__cause__, HttpStatusError)
        stats = await HttpPools.stats("svc")
        assert (stats.requests, stats.statuses) == (5, {5: 4, 2: 1})
        await GenServer.stop("http_pools")
