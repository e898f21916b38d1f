"""Retry: only what is retryable, on the runtime clock, never wrapping a result."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pytest

from foundation import Runtime
from foundation.errors import (
    CallTimeout,
    FoundationError,
    InvalidArgument,
    RateLimited,
    RetryExhausted,
)
from foundation.services.retry import Retry, retry
from foundation.testing import assert_emitted


class Flaky:
    """Fails with the given errors in turn, then returns ``result``; records when it was called."""

    def __init__(self, runtime: Runtime, errors: list[BaseException], result: Any = "done"):
        self.runtime = runtime
        self.errors = list(errors)
        self.result = result
        self.calls: list[float] = []

    async def __call__(self, *args: Any) -> Any:
        self.calls.append(self.runtime.clock.now())
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class HalfOpen(FoundationError):
    """Raised by a stand-in breaker that rejects calls while its one trial is in flight."""

    code: ClassVar[str] = "test_half_open"
    default_retryable: ClassVar[bool] = True
    retry_after = 0.0


async def test_3f6_retry_never_double_wraps_results(runtime: Runtime) -> None:
    for result in [("ok", 42), None, {"ok": 1}, [("ok", ("ok", 1))]]:
        fn = Flaky(runtime, [CallTimeout("slow")], result)
        got = await retry(fn, policy=Retry.fixed(0))
        assert got is result
        assert len(fn.calls) == 2


async def test_3f6_retry_does_not_loop_in_half_open(runtime: Runtime) -> None:
    calls = 0

    async def behind_half_open_breaker() -> None:
        nonlocal calls
        calls += 1
        raise HalfOpen("circuit 'svc' is half-open and its trial call is in flight")

    with pytest.raises(RetryExhausted) as err:
        await retry(behind_half_open_breaker, policy=Retry.fixed(1.0, max_attempts=5))
    assert calls == 5  # bounded: every rejection spends an attempt
    assert err.value.attempts == 5
    assert runtime.clock.now() == pytest.approx(4.0)  # and waits between them: no spinning


async def test_failing_twice_then_succeeding_makes_three_calls(runtime: Runtime) -> None:
    fn = Flaky(runtime, [CallTimeout("a"), CallTimeout("b")])
    assert await retry(fn, "arg", policy=Retry.exponential(0.5, jitter=0)) == "done"
    assert fn.calls == [0.0, 0.5, 1.5]


async def test_business_errors_are_raised_at_once_and_never_retried(runtime: Runtime) -> None:
    for error in [ValueError("bad input"), FoundationError("invalid order", retryable=False)]:
        fn = Flaky(runtime, [error])
        with pytest.raises(type(error)) as err:
            await retry(fn, policy=Retry.fixed(0))
        assert err.value is error
        assert len(fn.calls) == 1


async def test_declared_exception_types_are_retried(runtime: Runtime) -> None:
    fn = Flaky(runtime, [ConnectionResetError("peer reset")])
    policy = Retry.fixed(0.1, retry_on=(ConnectionError,))
    assert await retry(fn, policy=policy) == "done"
    assert len(fn.calls) == 2


async def test_exhausted_retries_raise_with_the_last_error_as_cause(runtime: Runtime) -> None:
    errors: list[BaseException] = [CallTimeout(f"try {i}") for i in range(3)]
    fn = Flaky(runtime, errors)
    with pytest.raises(RetryExhausted, match="3 attempts") as err:
        await retry(fn, policy=Retry.fixed(1, max_attempts=3))
    assert isinstance(err.value.__cause__, CallTimeout)
    assert str(err.value.__cause__) == "try 2"
    assert err.value.attempts == 3
    assert not err.value.retryable


async def test_max_elapsed_stops_before_an_attempt_would_start_too_late(runtime: Runtime) -> None:
    fn = Flaky(runtime, [CallTimeout("x")] * 10)
    with pytest.raises(RetryExhausted, match="max_elapsed"):
        await retry(fn, policy=Retry.fixed(10, max_attempts=10, max_elapsed=25))
    assert fn.calls == [0.0, 10.0, 20.0]
    assert runtime.clock.now() == 20.0  # it did not sleep towards an attempt it would not make


async def test_delays_follow_each_policy(runtime: Runtime) -> None:
    assert [Retry.fixed(2).delay(n) for n in (1, 2, 3)] == [2, 2, 2]
    assert [Retry.linear(0.5, max_delay=1.2).delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.2]
    exp = Retry.exponential(0.5, factor=2, max_delay=3, jitter=0)
    assert [exp.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert [Retry.custom(lambda n: n * n).delay(n) for n in (1, 2, 3)] == [1, 4, 9]


async def test_jitter_stays_within_its_fraction_and_repeats_with_a_seed(runtime: Runtime) -> None:
    a = Retry.exponential(1.0, jitter=0.5, rng=random.Random(7))
    b = Retry.exponential(1.0, jitter=0.5, rng=random.Random(7))
    delays = [a.delay(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100
    assert delays == [b.delay(3) for _ in range(200)]


async def test_an_error_that_says_when_to_come_back_is_retried_no_sooner(runtime: Runtime) -> None:
    fn = Flaky(runtime, [RateLimited("limit 'api' reached", retry_after=7.5)])
    assert await retry(fn, policy=Retry.fixed(1)) == "done"
    assert fn.calls == [0.0, 7.5]


async def test_on_retry_and_telemetry_see_every_retry(runtime: Runtime) -> None:
    seen: list[tuple[int, str, float]] = []
    fn = Flaky(runtime, [CallTimeout("a"), CallTimeout("b")])
    with assert_emitted("foundation.retry.attempt") as events:
        await retry(
            fn,
            policy=Retry.fixed(0.25),
            on_retry=lambda n, exc, delay: seen.append((n, str(exc), delay)),
        )
    assert seen == [(1, "a", 0.25), (2, "b", 0.25)]
    assert len(events.events) == 2


async def test_a_plain_function_is_retried_too(runtime: Runtime) -> None:
    calls = []

    def sync_fn(x: int) -> int:
        calls.append(x)
        if len(calls) < 2:
            raise CallTimeout("first")
        return x * 2

    assert await retry(sync_fn, 21, policy=Retry.fixed(0)) == 42


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"base": -1}, "base"),
        ({"jitter": 2}, "jitter"),
        ({"factor": 0.5}, "factor"),
        ({"max_elapsed": 0}, "max_elapsed"),
        ({"retry_on": (int,)}, "retry_on"),
        ({"backoff": "random"}, "backoff"),
        ({"backoff": "custom"}, "custom"),
    ],
)
def test_invalid_policies_are_rejected_with_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        Retry(**options)
