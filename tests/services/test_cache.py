"""Cache: TTL per entry, a true LRU bound, atomic reads, and a table that dies with its owner."""

from __future__ import annotations

import inspect

import pytest

from foundation import Runtime, Supervisor, spawn
from foundation.errors import InvalidArgument, NoProcess
from foundation.kernel.api import wait_exit
from foundation.services.cache import Cache, CacheServer, CacheStats
from foundation.testing import crash, restarted, sync


async def test_bug1_cache_get_deletes_expired_entry_atomically(runtime: Runtime) -> None:
    cache = Cache(max_size=10)
    cache.put("k", "v", ttl=5)
    assert not inspect.iscoroutinefunction(Cache.get)  # one synchronous step: nothing interleaves
    results: list[object] = []

    async def reader() -> None:
        await runtime.clock.sleep(5)
        results.append(cache.get("k", "gone"))

    readers = [spawn(reader) for _ in range(50)]
    for r in readers:
        await wait_exit(r)
    assert results == ["gone"] * 50
    assert len(cache) == 0
    stats = cache.stats()
    assert (stats.expirations, stats.misses, stats.hits) == (1, 50, 0)


async def test_cache_get_answers_a_live_entry_until_its_ttl_ends(runtime: Runtime) -> None:
    cache = Cache(default_ttl=10)
    cache.put("a", 1)
    cache.put("b", 2, ttl=None)
    await runtime.clock.sleep(9.5)
    assert cache.get("a") == 1
    await runtime.clock.sleep(0.5)
    assert cache.get("a") is None
    assert cache.get("b") == 2  # ttl=None never expires
    assert cache.stats().expirations == 1


async def test_cache_evicts_least_recently_used(runtime: Runtime) -> None:
    cache = Cache(max_size=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("d", "D")
    assert cache.keys() == ["c", "a", "d"]
    assert cache.get("b") is None
    cache.put("c", "C2")  # an overwrite is a use too
    cache.put("e", "E")
    assert cache.keys() == ["d", "c", "e"]
    assert cache.stats() == CacheStats(
        size=3, max_size=3, hits=1, misses=1, evictions=2, expirations=0
    )


async def test_g2_5_eviction_order_is_usage_order_not_arbitrary(runtime: Runtime) -> None:
    cache = Cache(max_size=100)
    keys = [f"k{i}" for i in range(100)]
    for key in keys:
        cache.put(key, 0)
    for key in reversed(keys[:50]):  # touch the first half, newest first
        cache.get(key)
    for i in range(60):  # evicts the 50 untouched keys, then the 10 touched longest ago
        cache.put(("new", i), 0)
    expected_survivors = [*list(reversed(keys[:50]))[10:], *[("new", i) for i in range(60)]]
    assert cache.keys() == expected_survivors


async def test_evicting_an_expired_entry_counts_as_an_expiration(runtime: Runtime) -> None:
    cache = Cache(max_size=2)
    cache.put("short", 1, ttl=1)
    cache.put("long", 2)
    await runtime.clock.sleep(2)
    cache.put("new", 3)
    stats = cache.stats()
    assert (stats.evictions, stats.expirations) == (0, 1)
    assert cache.keys() == ["long", "new"]


async def test_sweep_removes_only_expired_entries(runtime: Runtime) -> None:
    cache = Cache()
    cache.put("a", 1, ttl=1)
    cache.put("b", 2, ttl=3)
    cache.put("c", 3)
    await runtime.clock.sleep(2)
    assert cache.sweep() == 1
    assert cache.keys() == ["b", "c"]
    assert cache.delete("b") is True
    assert cache.delete("b") is False
    cache.clear()
    assert len(cache) == 0


async def test_invalid_cache_options_are_rejected_with_the_field(runtime: Runtime) -> None:
    with pytest.raises(InvalidArgument, match="max_size"):
        Cache(max_size=0)
    with pytest.raises(InvalidArgument, match="default_ttl"):
        Cache(default_ttl=-1)
    with pytest.raises(InvalidArgument, match="ttl"):
        Cache().put("k", 1, ttl=0)


async def test_cache_server_sweeps_expired_entries_on_the_runtime_clock(runtime: Runtime) -> None:
    await CacheServer.start_link(name="cache", default_ttl=5, sweep_interval=10)
    table = CacheServer.table("cache")
    table.put("a", 1)
    await runtime.clock.sleep(10.5)
    await sync("cache")
    assert len(table) == 0
    assert table.stats().expirations == 1


async def test_cache_table_dies_with_its_owner_and_restarts_empty(runtime: Runtime) -> None:
    sup = await Supervisor.start_link([CacheServer.child_spec(name="cache")])
    table = CacheServer.table("cache")
    table.put("a", 1)
    old = runtime.whereis("cache")
    await crash("cache")
    with pytest.raises(NoProcess):
        table.get("a")
    await restarted("cache", old)
    fresh = CacheServer.table("cache")
    assert fresh is not table
    assert fresh.get("a") is None
    await Supervisor.stop(sup)
    with pytest.raises(NoProcess):
        CacheServer.table("cache")
