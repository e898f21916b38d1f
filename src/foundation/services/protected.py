"""protected_call: an external call behind a circuit breaker, a retry policy, a rate limit and a
timeout, composed in one documented order.

``await protected_call(service, fn, *args, breaker=..., retry=..., rate_limit=..., timeout=...)``
runs ``fn(*args)`` in the caller (never inside a server process: the seed's breaker ran the
protected function inside its own server, so one slow service stalled every caller) and returns
its result as it is. Each guard is optional. From the outside in:

1. **retry** (a ``Retry`` policy): every attempt goes through all the guards below afresh.
   ``RateLimited``, an open circuit and ``CallTimeout`` are retryable errors, and the first two
   say when to come back (``retry_after``), which the policy honours: a caller never spins on
   a limit or on an open or half-open circuit.
2. **rate limit**: ``"limiter"`` (keyed by ``service``), ``("limiter", key)``, or any async
   callable that raises ``RateLimited`` (say ``functools.partial(RedisRateLimiter.check,
   "api", "k")``). It is checked before the breaker, so a request the limit denies never
   reaches the breaker: it cannot count as a failure of the service, nor use up a half-open
   circuit's trial call.
3. **breaker**: the circuit for ``service`` (``breaker=True``) or for a given circuit name.
4. **timeout** (seconds, on the runtime clock) around ``fn`` itself, inside the breaker, so a
   call that takes too long counts as a failure of the service; it raises ``CallTimeout``.

Errors keep their type: a non-retryable error from ``fn`` is raised as it is, and giving up
raises ``RetryExhausted`` with the last error as ``__cause__``. With no retry policy, the first
error is raised as it is.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, overload

from foundation.errors import CallTimeout, InvalidArgument
from foundation.kernel.clock import Clock
from foundation.kernel.context import current_runtime
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.rate_limiter import RateLimiter
from foundation.services.retry import Retry
from foundation.services.retry import retry as _retry

__all__ = [
    "protected_call",
    "run_with_timeout",
]

T = TypeVar("T")
RateLimit = str | tuple[str, Hashable] | Callable[[], Awaitable[Any]]


async def run_with_timeout(
    clock: Clock, timeout: float, fn: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """``await fn(*args)`` in the calling task, cancelled after ``timeout`` seconds of ``clock``
    (``CallTimeout``). A cancellation from elsewhere (the caller being killed) is not turned
    into a timeout: it propagates, as ``asyncio.timeout`` does, but on the runtime clock."""
    task = asyncio.current_task()
    if task is None:
        raise InvalidArgument("run_with_timeout needs to run inside an asyncio task")
    cancelling = task.cancelling()
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = clock.call_later(timeout, expire)
    try:
        return await fn(*args)
    except asyncio.CancelledError:
        if fired and task.uncancel() <= cancelling:
            raise CallTimeout(
                f"{getattr(fn, '__qualname__', fn)!s} did not finish within {timeout}s",
                context={"timeout": timeout},
            ) from None
        raise
    finally:
        timer.cancel()


def _limit_check(service: str, rate_limit: RateLimit) -> Callable[[], Awaitable[Any]]:
    if isinstance(rate_limit, str):
        return lambda: RateLimiter.check(rate_limit, service)
    if isinstance(rate_limit, tuple) and len(rate_limit) == 2 and isinstance(rate_limit[0], str):
        limiter, key = rate_limit
        return lambda: RateLimiter.check(limiter, key)
    if callable(rate_limit):
        return rate_limit
    raise InvalidArgument(
        f"invalid rate_limit: {rate_limit!r} (a limiter name, (limiter, key) or an async check)"
    )


@overload
async def protected_call(
    service: str,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    breaker: str | bool | None = ...,
    retry: Retry | None = ...,
    rate_limit: RateLimit | None = ...,
    timeout: float | None = ...,
) -> T: ...


@overload
async def protected_call(
    service: str,
    fn: Callable[..., T],
    *args: Any,
    breaker: str | bool | None = ...,
    retry: Retry | None = ...,
    rate_limit: RateLimit | None = ...,
    timeout: float | None = ...,
) -> T: ...


async def protected_call(
    service: str,
    fn: Callable[..., Any],
    *args: Any,
    breaker: str | bool | None = None,
    retry: Retry | None = None,
    rate_limit: RateLimit | None = None,
    timeout: float | None = None,
) -> Any:
    """Call ``fn(*args)`` for ``service`` behind the given guards; see the module docstring."""
    if not isinstance(service, str) or not service:
        raise InvalidArgument(f"invalid service: {service!r} (a non-empty str)")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise InvalidArgument(f"invalid timeout: {timeout!r} (seconds > 0, or None)")
    if breaker is True:
        circuit: str | None = service
    elif breaker is None or breaker is False:
        circuit = None
    elif isinstance(breaker, str) and breaker:
        circuit = breaker
    else:
        raise InvalidArgument(f"invalid breaker: {breaker!r} (True, a circuit name, or None)")
    rt = current_runtime()
    limit = _limit_check(service, rate_limit) if rate_limit is not None else None

    async def call_fn() -> Any:
        result = fn(*args)
        return await result if inspect.isawaitable(result) else result

    async def guarded() -> Any:
        return await run_with_timeout(rt.clock, timeout, call_fn)  # type: ignore[arg-type]

    # Without a timeout the breaker runs fn itself (one coroutine frame less per call).
    inner, inner_args = (fn, args) if timeout is None else (guarded, ())

    async def attempt() -> Any:
        if limit is not None:
            await limit()
        if circuit is not None:
            return await CircuitBreaker.call(circuit, inner, *inner_args)
        return await (call_fn() if timeout is None else guarded())

    if retry is None:
        if limit is None and circuit is not None:
            return await CircuitBreaker.call(circuit, inner, *inner_args)
        return await attempt()
    return await _retry(attempt, policy=retry)
