"""Rate limit policies: token buckets and fixed windows, as pure functions of the time.

``TokenBucket(capacity, refill_rate)`` and ``FixedWindow(limit, scale)`` are frozen values; each
key's state is a small ``KeyState``, and ``take(state, now, n)``, ``status`` and ``idle`` are
pure functions of that state and a time read from the caller's clock (nothing here reads a
clock). ``take`` consumes ``n`` tokens and answers 0.0, or consumes nothing and answers how many
seconds until ``n`` tokens could pass: a denial never changes the state (the seed's audit
finding A1). ``RateLimiter`` (one process owns every key) and ``RedisRateLimiter`` (a Lua script
restating these rules, run atomically by Redis) decide with them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from foundation.errors import InvalidArgument, RateLimited
from foundation.kernel.process import From
from foundation.kernel.timers import TimerRef

__all__ = [
    "FixedWindow",
    "KeyState",
    "LimitStatus",
    "Policy",
    "TokenBucket",
    "check_policy",
    "check_tokens",
    "rate_limited",
]

_EPS = 1e-9
# A denial never says "retry in less than a microsecond": float rounding near a refill or a
# window boundary could otherwise give a wait so small that the clock would not move at all.
_MIN_WAIT = 1e-6


def _positive(value: Any, what: str, *, integer: bool = False) -> None:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        raise InvalidArgument(f"invalid {what}: {value!r} ({'an int' if integer else 'a'} > 0)")


class KeyState:
    """One key's state: ``level`` (tokens left, or used in the window) as of time ``at``; and,
    for the process that owns it, the callers queued for tokens and the timer armed for them."""

    __slots__ = ("at", "level", "timer", "waiters")

    def __init__(self, level: float, at: float) -> None:
        self.level = level
        self.at = at
        self.waiters: deque[tuple[From, int]] = deque()
        self.timer: TimerRef | None = None


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """``capacity`` tokens at most, refilled at ``refill_rate`` tokens per second."""

    capacity: int
    refill_rate: float

    def __post_init__(self) -> None:
        _positive(self.capacity, "capacity", integer=True)
        _positive(self.refill_rate, "refill_rate")

    @property
    def limit(self) -> int:
        return self.capacity

    def fresh(self, now: float) -> KeyState:
        return KeyState(float(self.capacity), now)

    def _refill(self, k: KeyState, now: float) -> None:
        if now > k.at:
            k.level = min(float(self.capacity), k.level + (now - k.at) * self.refill_rate)
            k.at = now

    def take(self, k: KeyState, now: float, n: int) -> float:
        """Consume ``n`` tokens and return 0.0, or return the seconds until ``n`` are there."""
        self._refill(k, now)
        if k.level + _EPS >= n:
            k.level = max(0.0, k.level - n)
            return 0.0
        return max((n - k.level) / self.refill_rate, _MIN_WAIT)

    def status(self, k: KeyState, now: float) -> tuple[int, float]:
        self._refill(k, now)
        return math.floor(k.level + _EPS), (self.capacity - k.level) / self.refill_rate

    def idle(self, k: KeyState, now: float) -> bool:
        self._refill(k, now)
        return k.level + _EPS >= self.capacity


@dataclass(frozen=True, slots=True)
class FixedWindow:
    """``limit`` tokens per window of ``scale`` seconds (windows start at multiples of it)."""

    limit: int
    scale: float = 60.0

    def __post_init__(self) -> None:
        _positive(self.limit, "limit", integer=True)
        _positive(self.scale, "scale")

    def fresh(self, now: float) -> KeyState:
        return KeyState(0.0, math.floor(now / self.scale) * self.scale)

    def _roll(self, k: KeyState, now: float) -> None:
        start = math.floor(now / self.scale) * self.scale
        if start != k.at:
            k.at, k.level = start, 0.0

    def take(self, k: KeyState, now: float, n: int) -> float:
        self._roll(k, now)
        if k.level + n <= self.limit:
            k.level += n
            return 0.0
        return max(k.at + self.scale - now, _MIN_WAIT)

    def status(self, k: KeyState, now: float) -> tuple[int, float]:
        self._roll(k, now)
        return self.limit - int(k.level), k.at + self.scale - now

    def idle(self, k: KeyState, now: float) -> bool:
        self._roll(k, now)
        return k.level == 0


Policy = TokenBucket | FixedWindow


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """A key's limit, the tokens it has left now, and the seconds until it is fully reset."""

    limit: int
    remaining: int
    reset_after: float


def check_policy(policy: Any) -> Policy:
    if not isinstance(policy, TokenBucket | FixedWindow):
        raise InvalidArgument(f"invalid rate limit policy: {policy!r} (TokenBucket or FixedWindow)")
    return policy


def check_tokens(tokens: Any, policy: Policy, limiter: str) -> None:
    _positive(tokens, "tokens", integer=True)
    if tokens > policy.limit:
        raise InvalidArgument(
            f"{tokens} tokens can never pass limiter {limiter!r} (its limit is {policy.limit})"
        )


def rate_limited(limiter: str, key: Any, tokens: int, wait: float) -> RateLimited:
    return RateLimited(
        f"rate limit {limiter!r} denied {tokens} token(s) for key {key!r}; retry in {wait:.3g}s",
        retry_after=wait,
        context={"limiter": limiter, "key": key, "tokens": tokens},
    )
