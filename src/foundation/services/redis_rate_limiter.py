"""RedisRateLimiter: the RateLimiter's policies, shared through Redis by many processes.

Several OS processes or machines that point at one Redis share each (limiter, key) budget:
``TokenBucket`` and ``FixedWindow`` mean exactly what they mean in ``RateLimiter``, and the API
is the same (``try_acquire``, ``check``, ``acquire``, ``status``, ``reset``, ``configure``).
Needs the ``redis`` extra (``redis>=5``, its asyncio client).

- **Atomicity**: each decision is one Lua script, and Redis runs a script as one step: no other
  client's command runs between its read of the key and its write. A denial writes nothing; a
  key's first request creates it inside the same script. So however many sharers ask at once,
  no more than the limit is ever granted.
- **Time**: the script reads Redis's own clock (``TIME``). A runtime clock is the loop's
  monotonic clock, local to one machine (seconds since it booted), so two sharers' readings
  cannot be compared; the server's clock is the one every sharer agrees on. Waiting is still on
  the caller's runtime clock: ``acquire`` sleeps for the ``retry_after`` the script answered
  (when the next token is due, never a fixed polling period) and fails at once, with
  ``RateLimited``, if that is past its ``timeout``. There is no queue across machines: waiters
  are served in the order they come back, not in arrival order.
- **Idle keys** clean themselves: each write sets the key to expire when it would be fresh
  again (its bucket full, its window over).
- **Process**: a ``RedisRateLimiter`` server owns the connection pool and the configuration;
  the script runs in the caller, so a slow Redis never queues callers behind one another in the
  server. A Redis failure raises ``BackendUnavailable`` (retryable).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from foundation.errors import BackendUnavailable, InvalidArgument, LimiterNotFound
from foundation.kernel.api import receive, spawn_link
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Exit, Reply, Stop
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.services.rate_limits import (
    LimitStatus,
    Policy,
    TokenBucket,
    check_policy,
    check_tokens,
    rate_limited,
)

__all__ = [
    "RedisRateLimiter",
]

# KEYS[1]: the key's hash. ARGV: kind ("bucket" | "window"), limit, refill rate or window scale,
# tokens, "1" to take them or "0" to look. Returns {wait, remaining, reset_after} as strings.
_SCRIPT = """
local limit = tonumber(ARGV[2])
local param = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local take = ARGV[5] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(s[1])
local at = tonumber(s[2])
local wait = 0
if ARGV[1] == 'bucket' then
  if level == nil then level = limit; at = now end
  if now > at then
    level = math.min(limit, level + (now - at) * param)
    at = now
  end
  if take then
    if level + 1e-9 >= n then
      level = math.max(0, level - n)
      redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', tostring(at))
      redis.call('PEXPIRE', KEYS[1], math.ceil((limit - level) / param * 1000) + 1000)
    else
      wait = math.max((n - level) / param, 0.000001)
    end
  end
  return {tostring(wait), tostring(math.floor(level + 1e-9)), tostring((limit - level) / param)}
end
local index = math.floor(now / param)
if level == nil or at ~= index then level = 0 end
local reset = (index + 1) * param - now
if take then
  if level + n <= limit then
    level = level + n
    redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', tostring(index))
    redis.call('PEXPIRE', KEYS[1], math.ceil(reset * 1000) + 1000)
  else
    wait = math.max(reset, 0.000001)
  end
end
return {tostring(wait), tostring(limit - level), tostring(reset)}
"""


async def _close_when_owner_exits(close: Callable[[], Awaitable[None]]) -> None:
    """Linked to the server and trapping exits: closes the pool once the server exits, even
    when it was killed (and ``terminate`` did not run)."""
    try:
        await receive(match=lambda m: type(m) is Exit)
    finally:
        await close()


class RedisRateLimiter(GenServer):
    """Rate limits shared through Redis; see the module docstring."""

    trap_exit = True

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        url: str,
        *,
        name: Any = "redis_rate_limiter",
        limiters: Mapping[str, Policy] | None = None,
        prefix: str = "foundation:ratelimit:",
    ) -> Pid:
        """Connect to ``url`` (``redis://host:port/db``) and start, linked to the caller."""
        configs = {str(n): check_policy(p) for n, p in (limiters or {}).items()}
        args = (url, configs, prefix)
        return await cls._start(args, name=name, timeout=10.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        url: str,
        *,
        name: Any = "redis_rate_limiter",
        limiters: Mapping[str, Policy] | None = None,
        prefix: str = "foundation:ratelimit:",
    ) -> ChildSpec:
        """A supervisor child spec for a shared limiter service."""

        async def start() -> Pid:
            return await cls.start_link(url, name=name, limiters=limiters, prefix=prefix)

        return ChildSpec(id=name, start=start, restart="permanent", shutdown=5.0, type="worker")

    # -- API ------------------------------------------------------------------------------------

    @staticmethod
    async def configure(
        limiter: str, policy: Policy, *, server: Any = "redis_rate_limiter"
    ) -> None:
        """Add a limiter or replace its policy (in this server; each sharer configures its own)."""
        unwrap(await call(server, ("configure", str(limiter), check_policy(policy))))

    @staticmethod
    async def remove(limiter: str, *, server: Any = "redis_rate_limiter") -> None:
        """Forget a limiter in this server (its keys expire by themselves)."""
        unwrap(await call(server, ("remove", limiter)))

    @staticmethod
    async def _decide(
        server: Any, limiter: str, key: Hashable, tokens: int, take: bool
    ) -> tuple[float, int, float, Policy]:
        script, policy, redis_key = unwrap(await call(server, ("lease", limiter, key)))
        check_tokens(tokens, policy, limiter)
        kind, param = (
            ("bucket", policy.refill_rate)
            if isinstance(policy, TokenBucket)
            else ("window", policy.scale)
        )
        from redis.exceptions import RedisError

        try:
            wait, remaining, reset = await script(
                keys=[redis_key], args=[kind, policy.limit, param, tokens, "1" if take else "0"]
            )
        except RedisError as exc:
            raise BackendUnavailable(
                f"redis rate limiter {limiter!r} could not decide for key {key!r}: {exc}",
                context={"limiter": limiter, "key": key},
            ) from exc
        return float(wait), int(float(remaining)), float(reset), policy

    @staticmethod
    async def try_acquire(
        limiter: str, key: Hashable, tokens: int = 1, *, server: Any = "redis_rate_limiter"
    ) -> bool:
        """Take ``tokens`` now if they are there: True if allowed, False if denied."""
        wait, *_ = await RedisRateLimiter._decide(server, limiter, key, tokens, True)
        return wait == 0.0

    @staticmethod
    async def check(
        limiter: str, key: Hashable, tokens: int = 1, *, server: Any = "redis_rate_limiter"
    ) -> None:
        """Take ``tokens`` now, or raise ``RateLimited`` with ``retry_after``."""
        wait, *_ = await RedisRateLimiter._decide(server, limiter, key, tokens, True)
        if wait > 0.0:
            raise rate_limited(limiter, key, tokens, wait)

    @staticmethod
    async def acquire(
        limiter: str,
        key: Hashable,
        tokens: int = 1,
        *,
        timeout: float | None = None,
        server: Any = "redis_rate_limiter",
    ) -> None:
        """Wait (runtime clock) until ``tokens`` are taken; ``RateLimited`` if not in time."""
        clock = current_runtime().clock
        deadline = None if timeout is None else clock.now() + timeout
        while True:
            wait, *_ = await RedisRateLimiter._decide(server, limiter, key, tokens, True)
            if wait == 0.0:
                return
            if deadline is not None and clock.now() + wait > deadline:
                raise rate_limited(limiter, key, tokens, wait)
            await clock.sleep(wait)  # until the next token is due; another sharer may win it

    @staticmethod
    async def status(
        limiter: str, key: Hashable, *, server: Any = "redis_rate_limiter"
    ) -> LimitStatus:
        """The key's limit, remaining tokens and seconds until it is fully reset."""
        _, remaining, reset, policy = await RedisRateLimiter._decide(server, limiter, key, 1, False)
        return LimitStatus(policy.limit, remaining, reset)

    @staticmethod
    async def reset(limiter: str, key: Hashable, *, server: Any = "redis_rate_limiter") -> None:
        """Delete the key's state for every sharer: it starts afresh."""
        client, redis_key = unwrap(await call(server, ("client", limiter, key)))
        await client.delete(redis_key)

    # -- server -----------------------------------------------------------------------------------

    async def init(self, args: tuple[str, dict[str, Policy], str]) -> Any:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        url, limiters, prefix = args
        client = aioredis.from_url(url)
        try:
            await client.ping()
        except RedisError as exc:
            await client.aclose()
            raise BackendUnavailable(f"Redis at {url!r} did not answer: {exc}") from exc
        spawn_link(_close_when_owner_exits, client.aclose, trap_exit=True)
        return {"client": client, "script": client.register_script(_SCRIPT),
                "limiters": limiters, "prefix": prefix}  # fmt: skip

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        op, limiter = request[0], request[1]
        if op == "configure":
            state["limiters"][limiter] = request[2]
            return Reply(None, state)
        policy = state["limiters"].get(limiter)
        if policy is None:
            err = LimiterNotFound(
                f"no rate limiter named {limiter!r} is configured in {self.pid!r}",
                context={"limiter": limiter},
            )
            return Reply(Failed(err), state)
        if op == "remove":
            del state["limiters"][limiter]
            return Reply(None, state)
        redis_key = f"{state['prefix']}{limiter}:{request[2]}"
        if op == "lease":
            return Reply((state["script"], policy, redis_key), state)
        if op == "client":
            return Reply((state["client"], redis_key), state)
        return Reply(Failed(InvalidArgument(f"unknown request {request!r}")), state)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is Exit and msg.reason not in ("normal", "shutdown"):
            return Stop(msg.reason, state)  # the pool's guard died: restart with a new pool
        return state

    async def terminate(self, reason: Any, state: Any) -> None:
        await state["client"].aclose()
