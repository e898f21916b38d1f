"""RateLimiter: token buckets and fixed windows per (limiter, key), decided atomically.

A limiter is a named policy; each key under it (a user, a tenant, an API) has its own state:

- ``TokenBucket(capacity, refill_rate)``: up to ``capacity`` tokens, refilled continuously at
  ``refill_rate`` tokens per second; a request takes ``tokens`` of them.
- ``FixedWindow(limit, scale)``: at most ``limit`` tokens per window of ``scale`` seconds, the
  windows aligned on multiples of ``scale`` (the seed's RateLimiter: bucket key
  ``now - now mod scale``).

**Atomicity.** One ``RateLimiter`` server owns every limiter's state and decides each request
inside a single ``handle_call``: check and consume are one step of the one process that owns
the buckets, so no two callers can both see the last token (the seed's audit finding A1: it
incremented, then decremented when over the limit, so concurrent callers exceeded it). A denial
changes nothing, and a key's first request creates its state in the same step. 200 concurrent
requests against a limit of 100 give exactly 100 allowed and 100 denied.

- ``try_acquire`` answers at once (True or False); ``check`` raises ``RateLimited`` with
  ``retry_after``, the seconds until the request could pass.
- ``acquire(..., timeout=)`` waits for its tokens. Waiters queue per key in arrival order, and
  the server arms one runtime-clock timer for the moment the first of them can be served (no
  polling); a waiter that gave up is never served, so its tokens are never spent. While some
  are queued, ``try_acquire`` does not overtake them. On timeout: ``RateLimited``.
- Idle keys (a full bucket, an ended window, nobody waiting) are equal to fresh ones, so the
  server drops them every ``cleanup_interval`` seconds (and on ``cleanup()``).
- ``status``, ``stats``; ``reset`` (the seed's ``reset_for_testing``) refills a limiter's keys.

``foundation.services.redis_rate_limiter.RedisRateLimiter`` has the same API and policies over
Redis, for limits shared by several OS processes or machines.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from foundation.errors import (
    CallTimeout,
    InvalidArgument,
    LimiterNotFound,
    RateLimited,
)
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call, cast, reply
from foundation.kernel.messages import NoReply, Reply
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.kernel.timers import TimerRef, cancel_timer, send_after

__all__ = [
    "FixedWindow",
    "LimitStatus",
    "RateLimiter",
    "RateLimiterStats",
    "TokenBucket",
]

_EPS = 1e-9


def _positive(value: Any, what: str, *, integer: bool = False) -> None:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        raise InvalidArgument(f"invalid {what}: {value!r} ({'an int' if integer else 'a'} > 0)")


class _Key:
    """One key's state: ``level`` (tokens left, or tokens used in the window) at time ``at``."""

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

    def fresh(self, now: float) -> _Key:
        return _Key(float(self.capacity), now)

    def _refill(self, k: _Key, now: float) -> None:
        if now > k.at:
            k.level = min(float(self.capacity), k.level + (now - k.at) * self.refill_rate)
            k.at = now

    def take(self, k: _Key, now: float, n: int) -> float:
        """Consume ``n`` tokens and return 0.0, or return the seconds until ``n`` are there."""
        self._refill(k, now)
        if k.level + _EPS >= n:
            k.level = max(0.0, k.level - n)
            return 0.0
        return (n - k.level) / self.refill_rate

    def status(self, k: _Key, now: float) -> tuple[int, float]:
        self._refill(k, now)
        return math.floor(k.level + _EPS), (self.capacity - k.level) / self.refill_rate

    def idle(self, k: _Key, now: float) -> bool:
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

    def fresh(self, now: float) -> _Key:
        return _Key(0.0, math.floor(now / self.scale) * self.scale)

    def _roll(self, k: _Key, now: float) -> None:
        start = math.floor(now / self.scale) * self.scale
        if start != k.at:
            k.at, k.level = start, 0.0

    def take(self, k: _Key, now: float, n: int) -> float:
        self._roll(k, now)
        if k.level + n <= self.limit:
            k.level += n
            return 0.0
        return k.at + self.scale - now

    def status(self, k: _Key, now: float) -> tuple[int, float]:
        self._roll(k, now)
        return self.limit - int(k.level), k.at + self.scale - now

    def idle(self, k: _Key, now: float) -> bool:
        self._roll(k, now)
        return k.level == 0


Policy = TokenBucket | FixedWindow


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """A key's limit, the tokens it has left now, and the seconds until it is fully reset."""

    limit: int
    remaining: int
    reset_after: float


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """The server's limiters, live keys, queued waiters and decision counters."""

    limiters: int
    keys: int
    waiting: int
    allowed: int
    denied: int
    cleaned: int


def _check_policy(policy: Any) -> Policy:
    if not isinstance(policy, TokenBucket | FixedWindow):
        raise InvalidArgument(f"invalid rate limit policy: {policy!r} (TokenBucket or FixedWindow)")
    return policy


def _check_tokens(tokens: Any, policy: Policy, limiter: str) -> None:
    _positive(tokens, "tokens", integer=True)
    if tokens > policy.limit:
        raise InvalidArgument(
            f"{tokens} tokens can never pass limiter {limiter!r} (its limit is {policy.limit})"
        )


def _denied(limiter: str, key: Any, tokens: int, wait: float) -> RateLimited:
    return RateLimited(
        f"rate limit {limiter!r} denied {tokens} token(s) for key {key!r}; retry in {wait:.3g}s",
        retry_after=wait,
        context={"limiter": limiter, "key": key, "tokens": tokens},
    )


class _State:
    def __init__(self, limiters: dict[str, Policy], cleanup_interval: float) -> None:
        self.limiters = limiters
        self.keys: dict[str, dict[Hashable, _Key]] = {name: {} for name in limiters}
        self.cleanup_interval = cleanup_interval
        self.counts = {"allowed": 0, "denied": 0, "cleaned": 0}


class RateLimiter(GenServer):
    """The local rate limiter service; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: Any = "rate_limiter",
        limiters: Mapping[str, Policy] | None = None,
        cleanup_interval: float = 300.0,
    ) -> Any:
        """Start the service with ``limiters`` (name to policy), linked to the caller."""
        configs = {str(n): _check_policy(p) for n, p in (limiters or {}).items()}
        _positive(cleanup_interval, "cleanup_interval")
        args = (configs, float(cleanup_interval))
        return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

    # -- API ------------------------------------------------------------------------------------

    @staticmethod
    async def configure(limiter: str, policy: Policy, *, server: Any = "rate_limiter") -> None:
        """Add a limiter, or replace its policy (its keys start afresh; waiters stay queued)."""
        unwrap(await call(server, ("configure", limiter, _check_policy(policy))))

    @staticmethod
    async def remove(limiter: str, *, server: Any = "rate_limiter") -> None:
        """Remove a limiter; its waiters get ``LimiterNotFound``."""
        unwrap(await call(server, ("remove", limiter)))

    @staticmethod
    async def try_acquire(
        limiter: str, key: Hashable, tokens: int = 1, *, server: Any = "rate_limiter"
    ) -> bool:
        """Take ``tokens`` now if they are there: True if allowed, False if denied."""
        return bool(unwrap(await call(server, ("take", limiter, key, tokens))) == 0.0)

    @staticmethod
    async def check(
        limiter: str, key: Hashable, tokens: int = 1, *, server: Any = "rate_limiter"
    ) -> None:
        """Take ``tokens`` now, or raise ``RateLimited`` with ``retry_after``."""
        wait = unwrap(await call(server, ("take", limiter, key, tokens)))
        if wait > 0.0:
            raise _denied(limiter, key, tokens, wait)

    @staticmethod
    async def acquire(
        limiter: str,
        key: Hashable,
        tokens: int = 1,
        *,
        timeout: float | None = None,
        server: Any = "rate_limiter",
    ) -> None:
        """Wait (runtime clock) until ``tokens`` are granted; ``RateLimited`` after ``timeout``."""
        if timeout is not None and timeout <= 0:
            return await RateLimiter.check(limiter, key, tokens, server=server)
        try:
            unwrap(await call(server, ("acquire", limiter, key, tokens), timeout=timeout))
        except CallTimeout:
            cast(server, ("withdrawn", limiter, key))  # let the next waiter move up at once
            raise _denied(limiter, key, tokens, 0.0) from None
        return None

    @staticmethod
    async def status(limiter: str, key: Hashable, *, server: Any = "rate_limiter") -> LimitStatus:
        """The key's limit, remaining tokens and seconds until it is fully reset."""
        return unwrap(await call(server, ("status", limiter, key)))  # type: ignore[no-any-return]

    @staticmethod
    async def reset(limiter: str, *, server: Any = "rate_limiter") -> None:
        """Start every key of ``limiter`` afresh (the seed's ``reset_for_testing``)."""
        unwrap(await call(server, ("reset", limiter)))

    @staticmethod
    async def cleanup(*, server: Any = "rate_limiter") -> int:
        """Drop idle keys now; returns how many."""
        return unwrap(await call(server, ("cleanup",)))  # type: ignore[no-any-return]

    @staticmethod
    async def stats(*, server: Any = "rate_limiter") -> RateLimiterStats:
        """Counters of the service."""
        return unwrap(await call(server, ("stats",)))  # type: ignore[no-any-return]

    # -- server -----------------------------------------------------------------------------------

    async def init(self, args: tuple[dict[str, Policy], float]) -> _State:
        state = _State(*args)
        send_after(self.pid, "cleanup", state.cleanup_interval)
        return state

    def _policy(self, state: _State, limiter: Any) -> Policy:
        policy = state.limiters.get(limiter)
        if policy is None:
            raise LimiterNotFound(
                f"no rate limiter named {limiter!r} is configured", context={"limiter": limiter}
            )
        return policy

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        try:
            return self._handle(request, caller, state)
        except (InvalidArgument, LimiterNotFound) as err:
            return Reply(Failed(err), state)

    def _handle(self, request: Any, caller: From, state: _State) -> Any:
        op, args = request[0], request[1:]
        now = current_runtime().clock.now()
        if op in ("take", "acquire"):
            limiter, key, n = args
            policy = self._policy(state, limiter)
            _check_tokens(n, policy, limiter)
            keys = state.keys[limiter]
            k = keys.get(key)
            if k is None:
                k = keys[key] = policy.fresh(now)
            if k.waiters:
                self._grant_waiters(state, limiter, key, k, now)  # drop waiters that gave up
            wait = policy.take(k, now, n) if not k.waiters else -1.0
            if wait == 0.0:
                state.counts["allowed"] += 1
                return Reply(0.0, state)
            if op == "take":
                state.counts["denied"] += 1
                if wait < 0:  # queued waiters go first: come back after the first is served
                    first = k.timer.when - now if k.timer is not None else 0.0
                    wait = max(first, policy.take(_Key(k.level, k.at), now, n), _EPS)
                return Reply(wait, state)
            k.waiters.append((caller, n))
            self._grant_waiters(state, limiter, key, k, now)
            return NoReply(state)
        if op == "status":
            policy = self._policy(state, args[0])
            k = state.keys[args[0]].get(args[1]) or policy.fresh(now)
            return Reply(LimitStatus(policy.limit, *policy.status(k, now)), state)
        if op in ("configure", "reset"):
            limiter = args[0]
            policy = args[1] if op == "configure" else self._policy(state, limiter)
            state.limiters[limiter] = policy
            old = state.keys.get(limiter, {})
            state.keys[limiter] = {}
            for key, k in old.items():
                self._requeue(state, limiter, key, k, policy, now)
            return Reply(None, state)
        if op == "remove":
            self._policy(state, args[0])
            del state.limiters[args[0]]
            for k in state.keys.pop(args[0]).values():
                self._fail_waiters(k, args[0])
            return Reply(None, state)
        if op == "cleanup":
            return Reply(self._cleanup(state, now), state)
        if op == "stats":
            live = sum(len(ks) for ks in state.keys.values())
            waiting = sum(len(k.waiters) for ks in state.keys.values() for k in ks.values())
            c = state.counts
            stats = RateLimiterStats(
                len(state.limiters), live, waiting, c["allowed"], c["denied"], c["cleaned"]
            )
            return Reply(stats, state)
        raise InvalidArgument(f"rate limiter: unknown request {request!r}")

    def _requeue(
        self, state: _State, limiter: str, key: Hashable, old: _Key, policy: Policy, now: float
    ) -> None:
        if old.timer is not None:
            cancel_timer(old.timer)
        if not old.waiters:
            return
        k = state.keys[limiter][key] = policy.fresh(now)
        for caller, n in old.waiters:
            if n > policy.limit:
                reply(caller, Failed(InvalidArgument(f"{n} tokens exceed {limiter!r}'s limit")))
            else:
                k.waiters.append((caller, n))
        self._grant_waiters(state, limiter, key, k, now)

    def _fail_waiters(self, k: _Key, limiter: str) -> None:
        if k.timer is not None:
            cancel_timer(k.timer)
        for caller, _ in k.waiters:
            reply(caller, Failed(LimiterNotFound(f"rate limiter {limiter!r} was removed")))

    def _grant_waiters(
        self, state: _State, limiter: str, key: Hashable, k: _Key, now: float
    ) -> None:
        """Grant queued waiters in order while their tokens are there; else arm one timer."""
        if k.timer is not None:
            cancel_timer(k.timer)
            k.timer = None
        policy = state.limiters[limiter]
        while k.waiters:
            caller, n = k.waiters[0]
            if caller.fut.done():  # it gave up (timeout) or died: never spend tokens on it
                k.waiters.popleft()
                continue
            wait = policy.take(k, now, n)
            if wait > 0.0:
                k.timer = send_after(self.pid, ("wake", limiter, key), wait)
                return
            k.waiters.popleft()
            state.counts["allowed"] += 1
            reply(caller, None)

    def _cleanup(self, state: _State, now: float) -> int:
        removed = 0
        for limiter, keys in state.keys.items():
            policy = state.limiters[limiter]
            idle = [key for key, k in keys.items() if not k.waiters and policy.idle(k, now)]
            for key in idle:
                del keys[key]
            removed += len(idle)
        state.counts["cleaned"] += removed
        return removed

    async def handle_cast(self, request: Any, state: _State) -> Any:
        _, limiter, key = request  # ("withdrawn", limiter, key): a waiter gave up
        k = state.keys.get(limiter, {}).get(key)
        if k is not None and k.waiters:
            self._grant_waiters(state, limiter, key, k, current_runtime().clock.now())
        return state

    async def handle_info(self, msg: Any, state: _State) -> Any:
        now = current_runtime().clock.now()
        if msg == "cleanup":
            self._cleanup(state, now)
            send_after(self.pid, "cleanup", state.cleanup_interval)
            return state
        if isinstance(msg, tuple) and msg[0] == "wake":
            k = state.keys.get(msg[1], {}).get(msg[2])
            if k is not None:
                k.timer = None
                self._grant_waiters(state, msg[1], msg[2], k, now)
            return state
        return await super().handle_info(msg, state)
