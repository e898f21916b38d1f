"""RegistryTables: the data behind a ``Registry`` and the queries its readers run on it.

Entries by key (one per process under a duplicate key), the keys of each process in register
order, the monitor of each registered process, and one index per declared metadata field
(a list, tuple or set value is indexed per element). The registry's server is the only writer;
the synchronous reads (``lookup``, ``select``, ``count``, ``keys``) run these queries directly,
and only ever report live processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from foundation.errors import InvalidArgument
from foundation.kernel.pid import Pid, Ref

__all__ = ["Indexed", "RegistryEntry", "RegistryTables", "check_hashable"]

Indexed = tuple[tuple[str, tuple[Hashable, ...]], ...]
"""The indexed values of one entry's metadata, per field."""


@dataclass(eq=False, slots=True)
class RegistryEntry:
    """One process registered under one key, with its metadata as given and as indexed."""

    key: Hashable
    pid: Pid
    meta: Any
    indexed: Indexed  # the values as indexed: dropping them ignores later mutation of meta
    seq: int


def check_hashable(value: Any, what: str) -> None:
    """Raise ``InvalidArgument`` naming ``what`` if ``value`` cannot be a key or index value."""
    try:
        hash(value)
    except TypeError:
        raise InvalidArgument(
            f"{what} must be hashable, got {value!r}", context={"value": repr(value)}
        ) from None


def _live(by_key: dict[Pid, RegistryEntry] | None) -> list[RegistryEntry]:
    if not by_key:
        return []
    return [e for e in by_key.values() if e.pid._proc is not None]


class RegistryTables:
    """The registry's data, written by its server and read directly by the synchronous API."""

    __slots__ = ("by_pid", "entries", "index", "indexed", "mode", "monitors", "seq")

    def __init__(self, mode: str, indexed: tuple[str, ...]) -> None:
        self.mode = mode
        self.indexed = indexed
        self.entries: dict[Hashable, dict[Pid, RegistryEntry]] = {}
        self.by_pid: dict[Pid, dict[Hashable, None]] = {}  # ordered set of keys per pid
        self.monitors: dict[Pid, Ref] = {}
        self.index: dict[str, dict[Hashable, set[RegistryEntry]]] = {f: {} for f in indexed}
        self.seq = itertools.count()

    # -- queries (live processes only) ----------------------------------------------------------

    def lookup(self, key: Hashable) -> list[RegistryEntry]:
        """The live entries under ``key``, in register order."""
        return _live(self.entries.get(key))

    def select(self, filters: Mapping[str, Any]) -> list[RegistryEntry]:
        """The live entries matching every filter (indexed fields only), in register order."""
        for field, value in filters.items():
            if field not in self.indexed:
                raise InvalidArgument(
                    f"select on {field!r}: the registry indexes only {list(self.indexed)}; "
                    "declare it in index=[...] at start",
                    context={"field": field, "indexed": list(self.indexed)},
                )
            check_hashable(value, f"the select value for {field!r}")
        found: Iterable[RegistryEntry]
        if filters:  # intersect the index buckets, smallest first
            buckets = sorted((self.index[f].get(v, set()) for f, v in filters.items()), key=len)
            found = buckets[0].intersection(*buckets[1:])
        else:
            found = (e for by_key in self.entries.values() for e in by_key.values())
        live = [e for e in found if e.pid._proc is not None]
        live.sort(key=lambda e: e.seq)
        return live

    def count(self) -> int:
        """How many live entries there are."""
        return sum(len(_live(by_key)) for by_key in self.entries.values())

    def keys(self, pid: Pid) -> list[Hashable]:
        """The keys ``pid`` is registered under, in register order (``[]`` once it exited)."""
        return list(self.by_pid.get(pid, ())) if pid._proc is not None else []

    # -- writes (the registry's server only) ----------------------------------------------------

    def index_values(self, meta: Any) -> Indexed:
        """The indexed values of ``meta`` per field; ``InvalidArgument`` if one is unhashable."""
        if not self.indexed or not isinstance(meta, Mapping):
            return ()
        out = []
        for field in self.indexed:
            if field not in meta:
                continue
            value = meta[field]
            values = tuple(value) if isinstance(value, list | tuple | set | frozenset) else (value,)
            for v in values:
                check_hashable(v, f"the indexed metadata field {field!r}")
            out.append((field, values))
        return tuple(out)

    def add(self, key: Hashable, pid: Pid, meta: Any, indexed: Indexed) -> None:
        """Register ``pid`` under ``key`` (the caller checked the key mode)."""
        entry = RegistryEntry(key, pid, meta, indexed, next(self.seq))
        self.entries.setdefault(key, {})[pid] = entry
        self.by_pid.setdefault(pid, {})[key] = None
        self.add_index(entry)

    def update(self, entry: RegistryEntry, meta: Any, indexed: Indexed) -> None:
        """Replace an entry's metadata and re-index it."""
        self.drop_index(entry)
        entry.meta = meta
        entry.indexed = indexed
        self.add_index(entry)

    def add_index(self, entry: RegistryEntry) -> None:
        """Put ``entry`` in the index of each of its indexed values."""
        for field, values in entry.indexed:
            table = self.index[field]
            for value in values:
                table.setdefault(value, set()).add(entry)

    def drop_index(self, entry: RegistryEntry) -> None:
        """Take ``entry`` out of the indexes (empty buckets are removed)."""
        for field, values in entry.indexed:
            table = self.index[field]
            for value in values:
                bucket = table.get(value)
                if bucket is not None:
                    bucket.discard(entry)
                    if not bucket:
                        del table[value]

    def remove(self, key: Hashable, pid: Pid) -> bool:
        """Forget ``pid`` under ``key``; False if it was not registered there."""
        by_key = self.entries.get(key)
        entry = by_key.pop(pid, None) if by_key is not None else None
        if entry is None:
            return False
        if not by_key:
            del self.entries[key]
        self.drop_index(entry)
        keys = self.by_pid.get(pid)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self.by_pid[pid]
        return True

    def remove_pid(self, pid: Pid) -> None:
        """Forget every entry of ``pid`` (its monitor is the caller's business)."""
        for key in list(self.by_pid.get(pid, ())):
            self.remove(key, pid)
