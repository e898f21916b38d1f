"""Hypothesis state machine: the RateLimiter never allows more than its limit in any window.

Rules fire bursts of concurrent ``try_acquire`` callers, waves of concurrent ``acquire`` callers
with and without timeouts, clock steps and cleanups, against a token bucket or a fixed window.
Every grant is recorded with its time. After each step:

- fixed window: the tokens granted in each window ``[k*scale, (k+1)*scale)`` are at most
  ``limit``; token bucket: in every interval ``[t1, t2]`` between two grants, the tokens granted
  are at most ``capacity + refill_rate * (t2 - t1)``;
- an independent model of the policy, fed the same grants in time order, agrees that each of
  them could pass when it did (nothing is granted early), and predicts exactly how many callers
  of a concurrent burst are allowed.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from foundation import Runtime, spawn
from foundation.errors import RateLimited
from foundation.kernel.api import wait_exit
from foundation.kernel.context import RUNTIME
from foundation.services.rate_limiter import FixedWindow, RateLimiter, TokenBucket
from foundation.testing import VirtualClock, VirtualTimeLoop

EPS = 1e-9
KEYS = ("a", "b")


class Model:
    """The policies restated: per key, the tokens left (bucket) or used per window index."""

    def __init__(self, policy: TokenBucket | FixedWindow) -> None:
        self.policy = policy
        self.tokens: dict[str, tuple[float, float]] = {}  # bucket: key -> (level, at)
        self.used: dict[tuple[str, int], int] = defaultdict(int)  # window: (key, index) -> used

    def take(self, key: str, now: float, n: int) -> bool:
        p = self.policy
        if isinstance(p, TokenBucket):
            level, at = self.tokens.get(key, (float(p.capacity), now))
            level = min(float(p.capacity), level + max(0.0, now - at) * p.refill_rate)
            ok = level + EPS >= n
            self.tokens[key] = (max(0.0, level - n) if ok else level, max(now, at))
            return ok
        index = math.floor(now / p.scale)
        if self.used[key, index] + n > p.limit:
            return False
        self.used[key, index] += n
        return True


class RateLimiterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        self.rt = Runtime(clock=VirtualClock())
        self.grants: list[tuple[float, str, int]] = []
        self.checked = 0

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            RUNTIME.set(self.rt)
            return await coro

        return self.loop.run_until_complete(main())

    @initialize(
        kind=st.sampled_from(["bucket", "window"]),
        limit=st.integers(1, 5),
        rate=st.sampled_from([0.5, 1.0, 3.0]),
        scale=st.sampled_from([1.0, 2.5, 10.0]),
        cleanup=st.sampled_from([0.7, 5.0, 300.0]),
    )
    def boot(self, kind: str, limit: int, rate: float, scale: float, cleanup: float) -> None:
        self.policy = TokenBucket(limit, rate) if kind == "bucket" else FixedWindow(limit, scale)
        self.model = Model(self.policy)

        async def start() -> None:
            self.rt.start()
            await RateLimiter.start_link(limiters={"l": self.policy}, cleanup_interval=cleanup)

        self.run(start())

    def teardown(self) -> None:
        async def stop() -> list[str]:
            await self.rt.shutdown()
            me = asyncio.current_task()
            return [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]

        try:
            assert self.run(stop()) == []
        finally:
            self.loop.close()

    def _feed_model(self) -> None:
        """Give the model the new grants in time order: each must pass there too."""
        for t, key, n in sorted(self.grants[self.checked :]):
            assert self.model.take(key, t, n), f"granted {n} for {key!r} at {t} too early"
        self.checked = len(self.grants)

    @rule(key=st.sampled_from(KEYS), callers=st.integers(1, 12), tokens=st.integers(1, 3))
    def burst(self, key: str, callers: int, tokens: int) -> None:
        tokens = min(tokens, self.policy.limit)

        async def act() -> tuple[float, list[bool]]:
            results: list[bool] = [False] * callers

            async def one(i: int) -> None:
                results[i] = await RateLimiter.try_acquire("l", key, tokens)

            pids = [spawn(one, i) for i in range(callers)]
            for pid in pids:
                await wait_exit(pid)
            return self.rt.clock.now(), results

        now, results = self.run(act())
        predicted = sum(self.model.take(key, now, tokens) for _ in range(callers))
        assert results.count(True) == predicted
        self.grants.extend((now, key, tokens) for ok in results if ok)
        self.checked = len(self.grants)

    @rule(
        key=st.sampled_from(KEYS),
        callers=st.integers(1, 5),
        tokens=st.integers(1, 3),
        timeout=st.sampled_from([None, 0.3, 2.0]),
    )
    def wave(self, key: str, callers: int, tokens: int, timeout: float | None) -> None:
        tokens = min(tokens, self.policy.limit)

        async def act() -> list[float | None]:
            times: list[float | None] = [None] * callers

            async def one(i: int) -> None:
                try:
                    await RateLimiter.acquire("l", key, tokens, timeout=timeout)
                    times[i] = self.rt.clock.now()
                except RateLimited:
                    pass

            pids = [spawn(one, i) for i in range(callers)]
            for pid in pids:
                await wait_exit(pid)
            return times

        times = self.run(act())
        if timeout is None:
            assert all(t is not None for t in times)
        self.grants.extend((t, key, tokens) for t in times if t is not None)
        self._feed_model()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.5, 7.0]))
    def advance(self, seconds: float) -> None:
        self.run(self.rt.clock.sleep(seconds))

    @rule()
    def cleanup(self) -> None:
        self.run(RateLimiter.cleanup())

    @invariant()
    def never_more_than_the_limit_in_any_window(self) -> None:
        if not hasattr(self, "policy"):
            return
        p = self.policy
        for key in KEYS:
            grants = sorted((t, n) for t, k, n in self.grants if k == key)
            if isinstance(p, FixedWindow):
                per_window: dict[int, int] = defaultdict(int)
                for t, n in grants:
                    per_window[math.floor(t / p.scale)] += n
                assert all(used <= p.limit for used in per_window.values()), per_window
            else:
                for i, (t1, _) in enumerate(grants):
                    total = 0
                    for t2, n in grants[i:]:
                        total += n
                        assert total <= p.capacity + p.refill_rate * (t2 - t1) + 1e-6


RateLimiterMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_rate_limiter_model = RateLimiterMachine.TestCase
