"""RateLimiter: atomic check-and-consume, waiting on the runtime clock, idle-key cleanup."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from foundation import Runtime, spawn
from foundation.errors import (
    BackendUnavailable,
    InitError,
    InvalidArgument,
    LimiterNotFound,
    ProcessExited,
    RateLimited,
)
from foundation.kernel.api import wait_exit
from foundation.services.rate_limiter import (
    FixedWindow,
    LimitStatus,
    RateLimiter,
    RateLimiterStats,
    TokenBucket,
)
from foundation.services.redis_rate_limiter import RedisRateLimiter
from foundation.testing import crash, sync


async def _concurrently(n: int, fn: Any, *args: Any) -> list[Any]:
    """Run ``fn(*args)`` in ``n`` processes started together; their results, in start order."""
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        try:
            results[i] = await fn(*args)
        except Exception as exc:
            results[i] = exc

    pids = [spawn(one, i) for i in range(n)]
    for pid in pids:
        await wait_exit(pid)
    return results


@pytest.mark.parametrize(
    "policy", [FixedWindow(limit=100, scale=60), TokenBucket(capacity=100, refill_rate=0.001)]
)
async def test_race_condition_rate_limiter_concurrent_callers_never_exceed_limit(
    runtime: Runtime, policy: Any
) -> None:
    await RateLimiter.start_link(limiters={"api": policy})
    results = await _concurrently(200, RateLimiter.try_acquire, "api", "user-1")
    assert results.count(True) == 100
    assert results.count(False) == 100
    stats = await RateLimiter.stats()
    assert (stats.allowed, stats.denied) == (100, 100)


async def test_a1_denials_never_consume_tokens(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(3, 10), "b": TokenBucket(2, 1.0)})
    assert await _concurrently(10, RateLimiter.try_acquire, "w", "k") == [True] * 3 + [False] * 7
    await runtime.clock.sleep(10)  # the next window: the 7 denials left no trace
    assert await _concurrently(4, RateLimiter.try_acquire, "w", "k") == [True] * 3 + [False]
    assert await _concurrently(2, RateLimiter.try_acquire, "b", "k") == [True, True]
    await runtime.clock.sleep(0.5)
    assert await RateLimiter.try_acquire("b", "k") is False  # half a token: denied, not spent
    await runtime.clock.sleep(0.5)
    assert await RateLimiter.try_acquire("b", "k") is True


async def test_keys_of_one_limiter_are_limited_independently(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"api": FixedWindow(1, 60)})
    assert await RateLimiter.try_acquire("api", "alice") is True
    assert await RateLimiter.try_acquire("api", "bob") is True
    assert await RateLimiter.try_acquire("api", "alice") is False


async def test_fixed_windows_are_aligned_on_multiples_of_scale(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(2, 10)})
    await runtime.clock.sleep(7)
    assert await RateLimiter.try_acquire("w", "k", 2) is True
    with pytest.raises(RateLimited) as err:
        await RateLimiter.check("w", "k")
    assert err.value.retry_after == pytest.approx(3.0)  # the window [0, 10) ends at 10
    assert err.value.retryable
    await runtime.clock.sleep(3)
    await RateLimiter.check("w", "k", 2)


async def test_token_bucket_refills_continuously_and_reports_when(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"b": TokenBucket(capacity=4, refill_rate=2.0)})
    await RateLimiter.check("b", "k", 4)
    with pytest.raises(RateLimited) as err:
        await RateLimiter.check("b", "k", 3)
    assert err.value.retry_after == pytest.approx(1.5)
    status = await RateLimiter.status("b", "k")
    assert status == LimitStatus(limit=4, remaining=0, reset_after=2.0)
    await runtime.clock.sleep(1.5)
    await RateLimiter.check("b", "k", 3)
    assert (await RateLimiter.status("b", "k")).remaining == 0


async def test_acquire_waits_on_the_runtime_clock_for_the_next_token(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"b": TokenBucket(capacity=1, refill_rate=0.5)})
    granted: list[float] = []

    async def client() -> None:
        await RateLimiter.acquire("b", "k")
        granted.append(runtime.clock.now())

    pids = [spawn(client) for _ in range(4)]
    for pid in pids:
        await wait_exit(pid)
    assert granted == [0.0, 2.0, 4.0, 6.0]  # one timer per grant, exactly when due: no polling


async def test_acquire_serves_waiters_in_arrival_order(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(3, 10)})
    order: list[tuple[str, float]] = []

    async def client(name: str, tokens: int) -> None:
        await RateLimiter.acquire("w", "k", tokens)
        order.append((name, runtime.clock.now()))

    pids = [spawn(client, n, t) for n, t in [("a", 2), ("b", 3), ("c", 1), ("d", 1)]]
    for pid in pids:
        await wait_exit(pid)
    # c fits in the first window after a, but does not overtake b, who was queued first.
    assert order == [("a", 0.0), ("b", 10.0), ("c", 20.0), ("d", 20.0)]


async def test_a_waiter_that_timed_out_never_spends_tokens(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"b": TokenBucket(capacity=3, refill_rate=1.0)})
    await RateLimiter.check("b", "k", 3)
    outcomes: dict[str, Any] = {}

    async def impatient() -> None:
        try:
            await RateLimiter.acquire("b", "k", 3, timeout=1)
        except RateLimited as exc:
            outcomes["impatient"] = (exc, runtime.clock.now())

    async def patient() -> None:
        await runtime.clock.sleep(0.1)  # queued second
        await RateLimiter.acquire("b", "k", 1, timeout=10)
        outcomes["patient"] = runtime.clock.now()

    for pid in [spawn(impatient), spawn(patient)]:
        await wait_exit(pid)
    assert outcomes["impatient"][1] == pytest.approx(1.0, abs=0.002)
    # The patient caller moved up when the first gave up and got the token it needed at t=1.
    assert outcomes["patient"] == pytest.approx(1.0, abs=0.002)
    assert (await RateLimiter.status("b", "k")).remaining == 0


async def test_try_acquire_does_not_overtake_queued_waiters(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"b": TokenBucket(capacity=5, refill_rate=1.0)})
    await RateLimiter.check("b", "k", 4)  # 1 left
    waiter = spawn(RateLimiter.acquire, "b", "k", 5)
    await _queued(1)
    with pytest.raises(RateLimited) as err:
        await RateLimiter.check("b", "k", 1)
    assert err.value.retry_after == pytest.approx(4.0)
    await wait_exit(waiter)
    assert runtime.clock.now() == pytest.approx(4.0)


async def _queued(n: int) -> None:
    """Return once ``n`` callers are queued in ``acquire`` (each stats call lets them run)."""
    for _ in range(100):
        if (await RateLimiter.stats()).waiting >= n:
            return
    raise AssertionError(f"{n} acquire callers never queued")


async def test_acquire_with_zero_timeout_answers_at_once(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(1, 60)})
    await RateLimiter.acquire("w", "k", timeout=0)
    with pytest.raises(RateLimited):
        await RateLimiter.acquire("w", "k", timeout=0)
    assert runtime.clock.now() == 0.0


async def test_requests_that_can_never_pass_and_unknown_limiters_fail_clearly(
    runtime: Runtime,
) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(5, 60)})
    with pytest.raises(InvalidArgument, match="limit is 5"):
        await RateLimiter.try_acquire("w", "k", 6)
    with pytest.raises(InvalidArgument, match="tokens"):
        await RateLimiter.try_acquire("w", "k", 0)
    with pytest.raises(LimiterNotFound, match="'nope'"):
        await RateLimiter.acquire("nope", "k")
    with pytest.raises(InvalidArgument, match="refill_rate"):
        TokenBucket(1, 0)
    with pytest.raises(InvalidArgument, match="policy"):
        await RateLimiter.configure("x", "10/s")  # type: ignore[arg-type]


async def test_idle_keys_are_cleaned_up_without_changing_any_decision(runtime: Runtime) -> None:
    await RateLimiter.start_link(
        limiters={"b": TokenBucket(2, 1.0), "w": FixedWindow(1, 10)}, cleanup_interval=100
    )
    for key in range(5):
        await RateLimiter.check("b", key)
        await RateLimiter.check("w", key)
    assert (await RateLimiter.stats()).keys == 10
    assert await RateLimiter.cleanup() == 0  # nothing idle yet: all buckets and windows in use
    await runtime.clock.sleep(1)
    assert await RateLimiter.cleanup() == 5  # the buckets are full again
    await runtime.clock.sleep(99.5)  # the periodic cleanup at t=100 takes the ended windows
    await sync("rate_limiter")
    stats = await RateLimiter.stats()
    assert (stats.keys, stats.cleaned) == (0, 10)
    assert await _concurrently(3, RateLimiter.try_acquire, "b", 0) == [True, True, False]


async def test_reset_configure_and_remove(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(1, 60)})
    await RateLimiter.check("w", "k")
    await RateLimiter.reset("w")
    await RateLimiter.check("w", "k")
    waiter = spawn(RateLimiter.acquire, "w", "k")
    await _queued(1)
    await RateLimiter.configure("w", FixedWindow(2, 60))  # keys start afresh, waiters served
    await wait_exit(waiter)
    assert (await RateLimiter.status("w", "k")).remaining == 1
    results: list[Any] = []

    async def stuck() -> None:
        try:
            await RateLimiter.acquire("w", "k", 2)
        except LimiterNotFound as exc:
            results.append(exc)

    pid = spawn(stuck)
    await _queued(1)
    await RateLimiter.remove("w")
    await wait_exit(pid)
    assert len(results) == 1
    assert await RateLimiter.stats() == RateLimiterStats(0, 0, 0, 3, 0, 0)


async def test_waiters_are_answered_when_the_limiter_crashes(runtime: Runtime) -> None:
    await RateLimiter.start_link(limiters={"w": FixedWindow(1, 60)})
    limiter_pid = runtime.whereis("rate_limiter")
    await RateLimiter.check("w", "k")
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await RateLimiter.acquire("w", "k")
        except ProcessExited as exc:
            errors.append(exc)

    pid = spawn(waiter)
    await _queued(1)
    await crash(limiter_pid)
    await wait_exit(pid)
    assert len(errors) == 1


# -- the shared variant, against a real Redis ------------------------------------------------------

REDIS_URL = os.environ.get("FOUNDATION_TEST_REDIS_URL", "")


def _redis_answers(url: str) -> str | None:
    """None if Redis at ``url`` answers a PING, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {url} did not answer: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture
def redis_url() -> str:
    """The test Redis (``FOUNDATION_TEST_REDIS_URL``); skips when absent unless required."""
    required = "redis" in os.environ.get("FOUNDATION_REQUIRE_SERVICES", "").split(",")
    why = (
        "FOUNDATION_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)"
        if not REDIS_URL
        else _redis_answers(REDIS_URL)
    )
    if why is not None:
        if required:
            pytest.fail(f"Redis is required (FOUNDATION_REQUIRE_SERVICES): {why}")
        pytest.skip(why)
    return REDIS_URL


def _prefix() -> str:
    return f"foundation-test:{uuid.uuid4().hex}:"


@pytest.mark.parametrize(
    "policy", [FixedWindow(limit=100, scale=86400), TokenBucket(capacity=100, refill_rate=0.001)]
)
@pytest.mark.redis
@pytest.mark.foundation(clock="real")
async def test_redis_race_condition_sharers_never_exceed_limit(
    runtime: Runtime, redis_url: str, policy: Any
) -> None:
    prefix = _prefix()
    # Two servers, two connection pools: two "machines" sharing one budget through Redis.
    for name in ("host-a", "host-b"):
        await RedisRateLimiter.start_link(redis_url, name=name, limiters={"api": policy},
                                          prefix=prefix)  # fmt: skip
    results: list[Any] = [None] * 200

    async def one(i: int) -> None:
        server = "host-a" if i % 2 else "host-b"
        results[i] = await RedisRateLimiter.try_acquire("api", "user-1", server=server)

    pids = [spawn(one, i) for i in range(200)]
    for pid in pids:
        await wait_exit(pid)
    assert results.count(True) == 100
    assert results.count(False) == 100
    status = await RedisRateLimiter.status("api", "user-1", server="host-a")
    assert (status.limit, status.remaining) == (100, 0)
    await RedisRateLimiter.reset("api", "user-1", server="host-b")
    assert (await RedisRateLimiter.status("api", "user-1", server="host-a")).remaining == 100


@pytest.mark.redis
@pytest.mark.foundation(clock="real")
async def test_redis_denials_report_when_to_retry_and_consume_nothing(
    runtime: Runtime, redis_url: str
) -> None:
    await RedisRateLimiter.start_link(
        redis_url, limiters={"b": TokenBucket(2, 0.01), "w": FixedWindow(1, 86400)},
        prefix=_prefix(),
    )  # fmt: skip
    await RedisRateLimiter.check("b", "k", 2)
    for _ in range(5):
        with pytest.raises(RateLimited) as err:
            await RedisRateLimiter.check("b", "k")
    assert 90 < err.value.retry_after <= 100  # one token at 0.01/s
    assert (await RedisRateLimiter.status("b", "k")).remaining == 0
    assert await RedisRateLimiter.try_acquire("w", "k") is True
    assert await RedisRateLimiter.try_acquire("w", "k") is False
    with pytest.raises(RateLimited):
        await RedisRateLimiter.acquire("w", "k", timeout=1.0)  # due in hours: fails at once


@pytest.mark.redis
@pytest.mark.foundation(clock="real")
async def test_redis_acquire_waits_for_the_next_token(runtime: Runtime, redis_url: str) -> None:
    await RedisRateLimiter.start_link(
        redis_url, limiters={"b": TokenBucket(1, 40.0)}, prefix=_prefix()
    )
    start = runtime.clock.now()
    for _ in range(3):
        await RedisRateLimiter.acquire("b", "k", timeout=5)
    assert runtime.clock.now() - start >= 0.045  # two refills of 25 ms each


@pytest.mark.redis
@pytest.mark.foundation(clock="real")
async def test_redis_idle_keys_expire_by_themselves(runtime: Runtime, redis_url: str) -> None:
    import redis.asyncio as aioredis

    prefix = _prefix()
    await RedisRateLimiter.start_link(
        redis_url, limiters={"b": TokenBucket(10, 1.0), "w": FixedWindow(5, 30)}, prefix=prefix
    )
    await RedisRateLimiter.check("b", "k", 3)
    await RedisRateLimiter.check("w", "k")
    client = aioredis.from_url(redis_url)
    try:
        bucket_ttl = await client.pttl(f"{prefix}b:k")
        window_ttl = await client.pttl(f"{prefix}w:k")
    finally:
        await client.aclose()
    assert 2000 < bucket_ttl <= 4000  # full again after 3 s, plus a second of slack
    assert 0 < window_ttl <= 31000  # gone once its window is over


@pytest.mark.redis
@pytest.mark.foundation(clock="real")
async def test_redis_limiter_errors_name_what_is_wrong(runtime: Runtime, redis_url: str) -> None:
    await RedisRateLimiter.start_link(redis_url, limiters={"w": FixedWindow(2)}, prefix=_prefix())
    with pytest.raises(LimiterNotFound, match="'nope'"):
        await RedisRateLimiter.try_acquire("nope", "k")
    with pytest.raises(InvalidArgument, match="limit is 2"):
        await RedisRateLimiter.try_acquire("w", "k", 3)
    await RedisRateLimiter.configure("nope", TokenBucket(1, 1.0))
    assert await RedisRateLimiter.try_acquire("nope", "k") is True
    await RedisRateLimiter.remove("nope")
    with pytest.raises(LimiterNotFound):
        await RedisRateLimiter.status("nope", "k")


@pytest.mark.foundation(clock="real")
async def test_redis_limiter_fails_to_start_when_redis_does_not_answer(runtime: Runtime) -> None:
    with pytest.raises(InitError) as err:
        await RedisRateLimiter.start_link("redis://127.0.0.1:1/0")
    assert isinstance(err.value.reason, BackendUnavailable)
