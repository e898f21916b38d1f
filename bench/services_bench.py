"""Services benchmark: each service's hot path as a ratio to a named baseline, in one run.

Run alone: ``.venv/bin/python bench/services_bench.py [--quick] [--rounds N]``. Each row times a
workload and its baseline back to back on the same loop, in rounds (median of each), and prints
the ratio workload / baseline (for rates, more is faster). It asserts nothing about timings.

- **rate limiter decisions**: ``RateLimiter.try_acquire`` (one call into the server that owns
  the buckets), one client awaiting them in turn, and 8 clients at once; baseline: a GenServer
  ``call`` that does nothing, the floor of any decision a process owns.
- **redis rate limiter decisions** (only if ``FOUNDATION_TEST_REDIS_URL`` answers): one
  ``RedisRateLimiter.try_acquire`` (a local lease call plus one atomic script); baseline: a bare
  ``PING`` on the same kind of client, the floor of any Redis round trip.
- **cache get (hit) / put**: ``Cache.get``/``Cache.put``; baseline: ``dict.get``/a dict store.
- **retry, success path**: ``await retry(fn)``; baseline: ``await fn()``.
- **protected_call, all guards passing**: ``protected_call`` with a breaker, a retry policy, a
  rate limit and a timeout around an async function; baseline: ``await fn()``.
- **HTTP pool GET**: ``HttpPools.get`` against a local HTTP/1.1 server; baseline: the same GET on
  a bare ``httpx.AsyncClient`` (what the pool adds: a checkout call and a supervised task).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from foundation import GenServer, Reply, Runtime, call, spawn
from foundation.kernel.api import wait_exit
from foundation.services.cache import Cache
from foundation.services.http import HttpPoolConfig, HttpPools
from foundation.services.rate_limiter import RateLimiter, TokenBucket
from foundation.services.retry import Retry, retry

Rows = list[tuple[str, float, str, float]]


class Noop(GenServer):
    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        return Reply(None, state)


async def rate(n: int, op: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await op()
    return n / (time.perf_counter() - t0)


def sync_rate(n: int, op: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        op()
    return n / (time.perf_counter() - t0)


async def concurrent_rate(n: int, clients: int, op: Callable[[], Awaitable[Any]]) -> float:
    per = n // clients

    async def client() -> None:
        for _ in range(per):
            await op()

    t0 = time.perf_counter()
    pids = [spawn(client) for _ in range(clients)]
    for pid in pids:
        await wait_exit(pid)
    return per * clients / (time.perf_counter() - t0)


async def paired(
    rounds: int, work: Callable[[], Awaitable[float]], base: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Median rates of ``work`` and ``base``, alternating which runs first each round."""
    w: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        if i % 2:
            b.append(await base())
            w.append(await work())
        else:
            w.append(await work())
            b.append(await base())
    return statistics.median(w), statistics.median(b)


async def bench_limiter(n: int, rounds: int, rows: Rows) -> None:
    await RateLimiter.start_link(limiters={"api": TokenBucket(10**9, 10**9)})
    noop = await Noop.start()

    async def decide() -> Any:
        return await RateLimiter.try_acquire("api", "k")

    async def floor() -> Any:
        return await call(noop, None)

    w, b = await paired(rounds, lambda: rate(n, decide), lambda: rate(n, floor))
    rows.append(("rate limiter decisions, 1 client", w, "no-op GenServer call", b))
    w, b = await paired(
        rounds, lambda: concurrent_rate(n, 8, decide), lambda: concurrent_rate(n, 8, floor)
    )
    rows.append(("rate limiter decisions, 8 clients", w, "no-op GenServer call, 8", b))
    await GenServer.stop("rate_limiter")
    await GenServer.stop(noop)


async def bench_redis_limiter(n: int, rounds: int, rows: Rows) -> None:
    url = os.environ.get("FOUNDATION_TEST_REDIS_URL", "")
    if not url:
        print("(redis rate limiter skipped: FOUNDATION_TEST_REDIS_URL is not set)")
        return
    import redis.asyncio as aioredis

    from foundation.services.redis_rate_limiter import RedisRateLimiter

    client = aioredis.from_url(url)
    try:
        await client.ping()
    except Exception as exc:  # report and go on: the other rows do not need Redis
        print(f"(redis rate limiter skipped: {url} did not answer: {exc})")
        await client.aclose()
        return
    await RedisRateLimiter.start_link(
        url, limiters={"api": TokenBucket(10**9, 10**9)}, prefix="foundation-bench:"
    )
    m = max(n // 10, 100)

    async def decide() -> Any:
        return await RedisRateLimiter.try_acquire("api", "k")

    w, b = await paired(rounds, lambda: rate(m, decide), lambda: rate(m, client.ping))
    rows.append(("redis rate limiter decisions", w, "redis PING round trip", b))
    await RedisRateLimiter.reset("api", "k")
    await GenServer.stop("redis_rate_limiter")
    await client.aclose()


async def bench_cache(n: int, rounds: int, rows: Rows) -> None:
    cache = Cache(max_size=1000)
    plain: dict[Any, Any] = {}
    for i in range(1000):
        cache.put(i, i)
        plain[i] = i

    async def get() -> float:
        return sync_rate(n, lambda: cache.get(500))

    async def dict_get() -> float:
        return sync_rate(n, lambda: plain.get(500))

    w, b = await paired(rounds, get, dict_get)
    rows.append(("cache get (hit)", w, "dict.get", b))

    async def put() -> float:
        return sync_rate(n, lambda: cache.put(500, 1))

    async def dict_put() -> float:
        return sync_rate(n, lambda: plain.__setitem__(500, 1))

    w, b = await paired(rounds, put, dict_put)
    rows.append(("cache put (overwrite)", w, "dict store", b))


async def ok() -> int:
    return 1


async def bench_retry(n: int, rounds: int, rows: Rows) -> None:
    policy = Retry.exponential()
    w, b = await paired(
        rounds, lambda: rate(n, lambda: retry(ok, policy=policy)), lambda: rate(n, ok)
    )
    rows.append(("retry, success path", w, "await fn()", b))


async def bench_protected(n: int, rounds: int, rows: Rows) -> None:
    try:
        from foundation.services.protected import protected_call
    except ImportError:
        print("(protected_call skipped: foundation.services.protected is not there yet)")
        return
    await RateLimiter.start_link(limiters={"svc": TokenBucket(10**9, 10**9)})
    policy = Retry.exponential()

    async def guarded() -> Any:
        return await protected_call("svc", ok, retry=policy, rate_limit=("svc", "k"), timeout=5.0)

    w, b = await paired(rounds, lambda: rate(n, guarded), lambda: rate(n, ok))
    rows.append(("protected_call, guards passing", w, "await fn()", b))
    await GenServer.stop("rate_limiter")


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handlers: set[Any]
) -> None:
    handlers.add(asyncio.current_task())
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def bench_http(n: int, rounds: int, rows: Rows) -> None:
    import httpx

    handlers: set[Any] = set()
    server = await asyncio.start_server(lambda r, w: _serve(r, w, handlers), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    await HttpPools.start_link(pools={"svc": HttpPoolConfig(url)})
    bare = httpx.AsyncClient(base_url=url)
    m = max(n // 20, 50)

    async def pooled() -> Any:
        return await HttpPools.get("svc", "/")

    async def direct() -> Any:
        return await bare.get("/")

    w, b = await paired(rounds, lambda: rate(m, pooled), lambda: rate(m, direct))
    rows.append(("HTTP pool GET", w, "bare httpx.AsyncClient GET", b))
    await GenServer.stop("http_pools")
    await bare.aclose()
    server.close()
    await server.wait_closed()
    await asyncio.gather(*handlers, return_exceptions=True)  # they see the clients' EOF


async def main(n: int, rounds: int) -> Rows:
    rows: Rows = []
    async with Runtime():
        for bench in (bench_limiter, bench_redis_limiter, bench_cache, bench_retry,
                      bench_protected, bench_http):  # fmt: skip
            await bench(n, rounds, rows)
    return rows


def report(rows: Rows) -> None:
    print(f"{'workload':34} {'ops/s':>12}  {'baseline':28} {'ops/s':>12}  {'ratio':>6}")
    for name, w, base, b in rows:
        print(f"{name:34} {w:12,.0f}  {base:28} {b:12,.0f}  {w / b:6.3f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = 2_000 if args.quick else 20_000
    report(asyncio.run(main(size, 3 if args.quick else args.rounds)))
