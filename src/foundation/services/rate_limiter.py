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

The policies and their pure decision functions live in ``foundation.services.rate_limits``
(re-exported here).
``foundation.services.redis_rate_limiter.RedisRateLimiter`` has the same API and policies over
Redis, for limits shared by several OS processes or machines.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from foundation.errors import (
    CallTimeout,
    InvalidArgument,
    LimiterNotFound,
    RateLimited,
)
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call, cast, reply
from foundation.kernel.messages import NoReply, Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.kernel.timers import cancel_timer, send_after
from foundation.services.rate_limits import (
    FixedWindow,
    KeyState,
    LimitStatus,
    Policy,
    TokenBucket,
    check_policy,
    check_tokens,
    rate_limited,
)

__all__ = [
    "FixedWindow",
    "LimitStatus",
    "RateLimiter",
    "RateLimiterStats",
    "TokenBucket",
]


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """The server's limiters, live keys, queued waiters and decision counters."""

    limiters: int
    keys: int
    waiting: int
    allowed: int
    denied: int
    cleaned: int


class _State:
    def __init__(self, limiters: dict[str, Policy], cleanup_interval: float) -> None:
        self.limiters = limiters
        self.keys: dict[str, dict[Hashable, KeyState]] = {name: {} for name in limiters}
        self.cleanup_interval = cleanup_interval
        self.clock = current_runtime().clock
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
    ) -> Pid:
        """Start the service with ``limiters`` (name to policy), linked to the caller."""
        configs = {str(n): check_policy(p) for n, p in (limiters or {}).items()}
        if (
            isinstance(cleanup_interval, bool)
            or not isinstance(cleanup_interval, int | float)
            or cleanup_interval <= 0
        ):
            raise InvalidArgument(f"invalid cleanup_interval: {cleanup_interval!r} (seconds > 0)")
        args = (configs, float(cleanup_interval))
        return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        *,
        name: Any = "rate_limiter",
        limiters: Mapping[str, Policy] | None = None,
        cleanup_interval: float = 300.0,
    ) -> ChildSpec:
        """A supervisor child spec for the service."""

        async def start() -> Pid:
            return await cls.start_link(
                name=name, limiters=limiters, cleanup_interval=cleanup_interval
            )

        return ChildSpec(id=name, start=start, restart="permanent", shutdown=5.0, type="worker")

    # -- API ------------------------------------------------------------------------------------

    @staticmethod
    async def configure(limiter: str, policy: Policy, *, server: Any = "rate_limiter") -> None:
        """Add a limiter, or replace its policy (its keys start afresh; waiters stay queued)."""
        unwrap(await call(server, ("configure", limiter, check_policy(policy))))

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
            raise rate_limited(limiter, key, tokens, wait)

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
            raise RateLimited(
                f"rate limit {limiter!r} granted no {tokens} token(s) for key {key!r} "
                f"within {timeout}s",
                context={"limiter": limiter, "key": key, "tokens": tokens, "timeout": timeout},
            ) from None
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
        if request[0] == "take":  # the hot path: a known key with nobody queued on it
            _, limiter, key, n = request
            policy = state.limiters.get(limiter)
            if policy is not None:
                k = state.keys[limiter].get(key)
                if k is not None and not k.waiters and type(n) is int and 0 < n <= policy.limit:
                    wait = policy.take(k, state.clock.now(), n)
                    state.counts["allowed" if wait == 0.0 else "denied"] += 1
                    return Reply(wait, state)
        try:
            return self._handle(request, caller, state)
        except (InvalidArgument, LimiterNotFound) as err:
            return Reply(Failed(err), state)

    def _handle(self, request: Any, caller: From, state: _State) -> Any:
        op, args = request[0], request[1:]
        now = state.clock.now()
        if op in ("take", "acquire"):
            limiter, key, n = args
            policy = self._policy(state, limiter)
            check_tokens(n, policy, limiter)
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
                    wait = max(first, policy.take(KeyState(k.level, k.at), now, n))
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
        self, state: _State, limiter: str, key: Hashable, old: KeyState, policy: Policy, now: float
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

    def _fail_waiters(self, k: KeyState, limiter: str) -> None:
        if k.timer is not None:
            cancel_timer(k.timer)
        for caller, _ in k.waiters:
            reply(caller, Failed(LimiterNotFound(f"rate limiter {limiter!r} was removed")))

    def _grant_waiters(
        self, state: _State, limiter: str, key: Hashable, k: KeyState, now: float
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
            if k is not None:  # (a stale wake only re-arms the same deadline)
                self._grant_waiters(state, msg[1], msg[2], k, now)
            return state
        return await super().handle_info(msg, state)
