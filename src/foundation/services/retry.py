"""Retry: policies as plain objects and one small loop that sleeps on the runtime clock.

``await retry(fn, *args, policy=Retry.exponential())`` calls ``fn(*args)`` in the caller (never in
a server) and returns its result exactly as ``fn`` returned it: a result is never wrapped (the
seed's 3F item 6 answered ``{ok, {ok, x}}``). A failure is retried only when it is retryable:

- a ``FoundationError`` whose ``retryable`` flag is true (``CallTimeout``, ``NoProcess``,
  ``RateLimited``, ``HttpRequestFailed``, an open circuit, ...), or
- an instance of a type the policy declares in ``retry_on`` (say ``ConnectionError``).

Anything else is raised at once, as it is. When retries run out (``max_attempts`` attempts, or
the next attempt would start after ``max_elapsed`` seconds from the first), ``RetryExhausted``
is raised with the last error as its ``__cause__``.

Policies (``Retry.exponential``, ``Retry.fixed``, ``Retry.linear``, ``Retry.custom``; defaults
from the seed's RetryService) are frozen values; ``policy.delay(attempt)`` is a pure function of
the attempt number (and the policy's own random generator, for jitter: pass ``rng=Random(seed)``
to make it repeatable). An error that says when to come back (a ``retry_after`` attribute, as
``RateLimited`` and an open circuit breaker have) is retried no sooner than that: a caller
behind an open or half-open breaker waits for the breaker's own schedule and spends one attempt
per rejection, so it can never spin on a half-open circuit (the seed's RetryService re-entered
its half-open branch and looped while the status stayed half-open).

Why no library underneath: tenacity's ``AsyncRetrying`` takes a custom ``sleep`` (the runtime
clock's would do), but its elapsed-time stops (``stop_after_delay``, ``stop_before_delay``) read
``RetryCallState.seconds_since_start``, which tenacity stamps with ``time.monotonic()`` on every
attempt; a virtual clock cannot move that, so an elapsed limit would be measured in wall time
while every sleep is virtual. Its jittered waits also draw from the global ``random`` module.
Making it honour the runtime clock would mean overwriting its call-state timestamps from hooks;
the loop below is shorter than that and states every rule in one place. stamina wraps tenacity
and inherits the same clock.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from foundation.errors import FoundationError, InvalidArgument, RetryExhausted, format_reason
from foundation.kernel.context import current_runtime

__all__ = [
    "Backoff",
    "Retry",
    "retry",
]

T = TypeVar("T")
Backoff = Literal["exponential", "fixed", "linear", "custom"]


def _number(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgument(f"invalid {what}: {value!r} (a number of seconds >= 0)")
    if positive and value == 0:
        raise InvalidArgument(f"invalid {what}: {value!r} (must be > 0)")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """A retry policy: how long to wait before each retry and when to give up.

    ``backoff`` is ``exponential`` (``base * factor**(n-1)``, capped at ``max_delay``, then
    reduced by up to ``jitter`` of itself at random), ``fixed`` (``base``), ``linear``
    (``base * n``, capped at ``max_delay``) or ``custom`` (``delay_fn(n)``), where ``n`` is the
    number of the attempt that just failed. Build one with the class methods.
    """

    backoff: Backoff = "exponential"
    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.5
    max_attempts: int = 4
    max_elapsed: float | None = 30.0
    retry_on: tuple[type[BaseException], ...] = ()
    delay_fn: Callable[[int], float] | None = field(default=None, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.backoff not in ("exponential", "fixed", "linear", "custom"):
            raise InvalidArgument(
                f"invalid backoff: {self.backoff!r} (exponential, fixed, linear or custom)"
            )
        _number(self.base, "base")
        _number(self.max_delay, "max_delay")
        if _number(self.factor, "factor") < 1:
            raise InvalidArgument(f"invalid factor: {self.factor!r} (>= 1)")
        if not 0 <= _number(self.jitter, "jitter") <= 1:
            raise InvalidArgument(f"invalid jitter: {self.jitter!r} (a fraction from 0 to 1)")
        n = self.max_attempts
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidArgument(f"invalid max_attempts: {n!r} (an int >= 1)")
        if self.max_elapsed is not None:
            _number(self.max_elapsed, "max_elapsed", positive=True)
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on
        ):
            raise InvalidArgument(f"invalid retry_on: {self.retry_on!r} (a tuple of exceptions)")
        if self.backoff == "custom" and not callable(self.delay_fn):
            raise InvalidArgument(
                f"a custom backoff needs a callable delay_fn, got {self.delay_fn!r}"
            )

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def exponential(
        cls,
        base: float = 0.5,
        *,
        factor: float = 2.0,
        max_delay: float = 10.0,
        jitter: float = 0.5,
        **limits: Any,
    ) -> Retry:
        """Exponential backoff with jitter (seed: 500 ms doubling, capped at 10 s, 30 s total)."""
        return cls(
            backoff="exponential", base=base, factor=factor, max_delay=max_delay, jitter=jitter,
            **limits,
        )  # fmt: skip

    @classmethod
    def fixed(cls, delay: float = 1.0, **limits: Any) -> Retry:
        """The same delay before every retry (seed: 1 s); ``fixed(0)`` retries immediately."""
        return cls(backoff="fixed", base=delay, jitter=0.0, **limits)

    @classmethod
    def linear(cls, step: float = 0.5, *, max_delay: float = 5.0, **limits: Any) -> Retry:
        """A delay growing by ``step`` per attempt (seed: 500 ms steps, capped at 5 s)."""
        return cls(backoff="linear", base=step, max_delay=max_delay, jitter=0.0, **limits)

    @classmethod
    def custom(cls, delay: Callable[[int], float], **limits: Any) -> Retry:
        """``delay(n)`` seconds before retrying after failed attempt ``n``."""
        return cls(backoff="custom", delay_fn=delay, jitter=0.0, **limits)

    # -- the policy -------------------------------------------------------------------------

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        if self.backoff == "fixed":
            return self.base
        if self.backoff == "linear":
            return min(self.base * attempt, self.max_delay)
        if self.backoff == "custom":
            assert self.delay_fn is not None
            return _number(self.delay_fn(attempt), f"custom delay for attempt {attempt}")
        raw = min(self.base * self.factor ** (attempt - 1), self.max_delay)
        return raw * (1.0 - self.jitter * self.rng.random()) if self.jitter else raw

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried under this policy."""
        if self.retry_on and isinstance(exc, self.retry_on):
            return True
        return isinstance(exc, FoundationError) and exc.retryable


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


async def retry(
    fn: Callable[..., Awaitable[T] | T],
    *args: Any,
    policy: Retry | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn(*args)`` until it succeeds, under ``policy`` (default ``Retry.exponential()``).

    Returns ``fn``'s own result. ``on_retry(attempt, error, delay)`` is called before each wait.
    Raises a non-retryable error as it is, or ``RetryExhausted`` (``__cause__``: the last error).
    """
    policy = policy if policy is not None else Retry.exponential()
    rt = current_runtime()
    clock = rt.clock
    start = clock.now()
    attempt = 0
    while True:
        attempt += 1
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as exc:
            if not policy.retries(exc):
                raise
            elapsed = clock.now() - start
            wait = policy.delay(attempt)
            hint = getattr(exc, "retry_after", None)
            if isinstance(hint, int | float) and not isinstance(hint, bool) and hint > wait:
                wait = float(hint)
            why = None
            if attempt >= policy.max_attempts:
                why = f"{attempt} attempts"
            elif policy.max_elapsed is not None and elapsed + wait > policy.max_elapsed:
                why = f"the next attempt would start after max_elapsed={policy.max_elapsed}s"
            if why is not None:
                raise RetryExhausted(
                    f"retry of {_name(fn)} gave up after {why} ({elapsed:.3g}s): "
                    f"{format_reason(exc)}",
                    attempts=attempt,
                    context={"function": _name(fn), "elapsed": elapsed},
                ) from exc
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            if rt.event_handlers:
                rt.emit(
                    ("foundation", "retry", "attempt"),
                    {"attempt": attempt, "delay": wait},
                    {"function": _name(fn), "error": exc},
                )
            await clock.sleep(wait)
