"""Cache: an in-memory table with a time-to-live per entry and a true LRU bound.

``Cache`` is the table: ``get(key, default)``, ``put(key, value, ttl=...)``, ``delete``,
``clear``, ``sweep`` (drop every expired entry) and ``stats()`` (hits, misses, evictions,
expirations). Time is the runtime clock's, so a TTL expires in virtual time in tests.

- **TTL per entry**: ``put(..., ttl=seconds)`` (``None``: never expires), defaulting to the
  table's ``default_ttl``. An entry is expired once ``now >= stored_at + ttl``.
- **True LRU** (the seed's G2-#5: its "FIFO" eviction took the first key of an unordered set,
  so the evicted key was arbitrary): entries live in an insertion-ordered ``OrderedDict``;
  every hit and every overwrite moves the key to the most-recent end, and a ``put`` of a new
  key into a full table evicts from the least-recent end. If that entry had already expired it
  is counted as an expiration, not an eviction.
- **Atomic reads** (the seed's Bug #1: a lookup, then a separate delete of an expired entry,
  with other requests in between): ``get`` is one synchronous read that finds the entry,
  deletes it if it expired and answers the default, or moves it to the recent end and answers
  its value. Every method here is a plain (non-async) function that runs to completion on the
  event-loop thread, and asyncio runs one callback at a time on that thread, so no other
  coroutine can run between a method's check and its change. No server round trip is needed
  for that, so reads cost a dict lookup. The table must only be used from the loop thread
  (never from ``run_in_thread`` code).

``CacheServer`` is the supervised owner of a named table, for a place in a supervision tree
(the seed's 3F item 3: no supervisor started its cache). It creates the table in ``init``,
sweeps expired entries every ``sweep_interval`` seconds so that unread entries do not pile
up, and the table dies with it, as an ETS table dies with its owner: once the owner exited,
every operation on the old table raises ``NoProcess``. ``CacheServer.table(name)`` returns
the live table of the server registered under ``name``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

from foundation.errors import InvalidArgument, NoProcess
from foundation.kernel.api import is_alive
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.clock import Clock
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer
from foundation.kernel.pid import Pid
from foundation.kernel.timers import send_after

__all__ = [
    "Cache",
    "CacheServer",
    "CacheStats",
]

_EXTENSION: Final = "foundation.services.cache"
_DEFAULT: Final = object()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of a table: size and bound, hits, misses, LRU evictions, TTL expirations."""

    size: int
    max_size: int
    hits: int
    misses: int
    evictions: int
    expirations: int


def _check_ttl(ttl: Any, what: str) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise InvalidArgument(f"invalid {what}: {ttl!r} (seconds > 0, or None for no expiry)")
    return float(ttl)


class Cache:
    """A TTL/LRU table on the runtime clock; see the module docstring."""

    __slots__ = (
        "_clock",
        "_data",
        "_owner",
        "default_ttl",
        "evictions",
        "expirations",
        "hits",
        "max_size",
        "misses",
    )

    def __init__(
        self,
        *,
        max_size: int = 100_000,
        default_ttl: float | None = None,
        clock: Clock | None = None,
        owner: Pid | None = None,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise InvalidArgument(f"invalid max_size: {max_size!r} (an int >= 1)")
        self.max_size = max_size
        self.default_ttl = _check_ttl(default_ttl, "default_ttl")
        self._clock = clock if clock is not None else current_runtime().clock
        self._owner = owner
        # key -> (value, expires_at or None), least recently used first.
        self._data: OrderedDict[Hashable, tuple[Any, float | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def __repr__(self) -> str:
        return f"<Cache size={len(self._data)} max_size={self.max_size}>"

    def __len__(self) -> int:
        """How many entries are stored, expired ones not yet removed included."""
        return len(self._data)

    def _alive(self) -> None:
        owner = self._owner
        if owner is not None and not is_alive(owner):
            raise NoProcess(
                f"cache table of {owner!r} is gone: its owner exited", context={"owner": owner}
            )

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` if absent or expired (then deleted)."""
        self._alive()
        data = self._data
        entry = data.get(key)
        if entry is None:
            self.misses += 1
            return default
        expires_at = entry[1]
        if expires_at is not None and self._clock.now() >= expires_at:
            del data[key]
            self.expirations += 1
            self.misses += 1
            return default
        data.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, value: Any, *, ttl: Any = _DEFAULT) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: the table's)."""
        self._alive()
        seconds = self.default_ttl if ttl is _DEFAULT else _check_ttl(ttl, "ttl")
        data = self._data
        now = self._clock.now()
        if key in data:
            data.move_to_end(key)
        elif len(data) >= self.max_size:
            _, (_, expires_at) = data.popitem(last=False)
            if expires_at is not None and now >= expires_at:
                self.expirations += 1
            else:
                self.evictions += 1
        data[key] = (value, None if seconds is None else now + seconds)

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; True if it was stored (expired or not)."""
        self._alive()
        return self._data.pop(key, None) is not None

    def clear(self) -> None:
        """Remove every entry (the counters are kept)."""
        self._alive()
        self._data.clear()

    def sweep(self) -> int:
        """Remove every expired entry; returns how many."""
        self._alive()
        now = self._clock.now()
        data = self._data
        expired = [k for k, (_, at) in data.items() if at is not None and now >= at]
        for key in expired:
            del data[key]
        self.expirations += len(expired)
        return len(expired)

    def keys(self) -> list[Hashable]:
        """The stored keys, least recently used first (expired ones not yet removed included)."""
        self._alive()
        return list(self._data)

    def stats(self) -> CacheStats:
        """The table's size, bound and counters."""
        return CacheStats(
            len(self._data), self.max_size, self.hits, self.misses, self.evictions, self.expirations
        )


class CacheServer(GenServer):
    """The supervised owner of a named ``Cache``; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: str = "cache",
        max_size: int = 100_000,
        default_ttl: float | None = None,
        sweep_interval: float | None = 60.0,
    ) -> Pid:
        """Start the owner of table ``name``, linked to the caller."""
        _check_ttl(sweep_interval, "sweep_interval")
        args = (name, max_size, default_ttl, sweep_interval)
        return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        *,
        name: str = "cache",
        max_size: int = 100_000,
        default_ttl: float | None = None,
        sweep_interval: float | None = 60.0,
    ) -> ChildSpec:
        """A supervisor child spec for the owner of table ``name``."""

        async def start() -> Pid:
            return await cls.start_link(
                name=name, max_size=max_size, default_ttl=default_ttl, sweep_interval=sweep_interval
            )

        return ChildSpec(id=name, start=start, restart="permanent", shutdown=5.0, type="worker")

    @staticmethod
    def table(name: str = "cache") -> Cache:
        """The live table owned by the server registered as ``name`` (``NoProcess`` if none)."""
        tables: dict[str, Cache] = current_runtime().extensions.get(_EXTENSION, {})
        cache = tables.get(name)
        if cache is None or cache._owner is None or not is_alive(cache._owner):
            raise NoProcess(f"no cache server is running as {name!r}", context={"name": name})
        return cache

    async def init(self, args: tuple[str, int, float | None, float | None]) -> Any:
        name, max_size, default_ttl, sweep_interval = args
        rt = current_runtime()
        cache = Cache(max_size=max_size, default_ttl=default_ttl, clock=rt.clock, owner=self.pid)
        rt.extensions.setdefault(_EXTENSION, {})[name] = cache
        if sweep_interval is not None:
            send_after(self.pid, "sweep", sweep_interval)
        return (name, cache, sweep_interval)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if msg == "sweep":
            _, cache, interval = state
            cache.sweep()
            send_after(self.pid, "sweep", interval)
            return state
        return await super().handle_info(msg, state)

    async def terminate(self, reason: Any, state: Any) -> None:
        name, cache, _ = state
        tables: dict[str, Cache] = current_runtime().extensions.get(_EXTENSION, {})
        if tables.get(name) is cache:
            del tables[name]
