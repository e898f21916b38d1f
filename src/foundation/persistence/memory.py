"""MemoryStore: the StateStore contract in one dict, for tests and throwaway runs.

It keeps every rule of the contract (versions, fencing, sorted listing, data kept as JSON text as
a real backend does, so no caller shares a record with the store and data that is not JSON-ready
fails here too) but survives nothing: not for production.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from foundation.errors import InvalidArgument, PersistenceError, StaleVersion, StateCorrupt
from foundation.persistence.store import Stored

__all__ = ["MemoryStore", "check_key", "check_version", "decode", "encode", "settled", "stale"]


class MemoryStore:
    """A StateStore held in memory; the contract's reference implementation."""

    def __init__(self) -> None:
        # A deleted key keeps its entry with no text (a tombstone): its version goes on.
        self._records: dict[str, tuple[str | None, int, int, float]] = {}
        self.saves = 0

    def __repr__(self) -> str:
        return f"<MemoryStore keys={sum(r[0] is not None for r in self._records.values())}>"

    async def load(self, key: str) -> Stored | None:
        rec = self._records.get(key)
        if rec is None:
            return None
        text, version, schema_version, updated_at = rec
        if text is None:  # a tombstone
            return None
        return Stored(key, decode(self, key, text), version, schema_version, updated_at)

    async def save(
        self,
        key: str,
        data: dict[str, Any],
        expected_version: int | None,
        *,
        schema_version: int = 1,
    ) -> int:
        return await self.save_json(
            key, encode(key, data), expected_version, schema_version=schema_version
        )

    async def save_json(
        self, key: str, text: str, expected_version: int | None, *, schema_version: int = 1
    ) -> int:
        """``save`` of data already encoded as JSON text (what persistent servers hand over)."""
        check_key(key)
        check_version(key, expected_version)
        current = self._records.get(key)
        actual = current[1] if current is not None and current[0] is not None else None
        if actual != expected_version:
            raise stale(key, expected_version, actual)
        version = (current[1] if current is not None else 0) + 1  # on from a tombstone too
        self._records[key] = (text, version, schema_version, time.time())
        self.saves += 1
        return version

    async def delete(self, key: str, expected_version: int | None) -> None:
        check_key(key)
        check_version(key, expected_version)
        current = self._records.get(key)
        if current is None or current[0] is None:
            return
        if expected_version is not None and current[1] != expected_version:
            raise stale(key, expected_version, current[1])
        self._records[key] = (None, current[1], current[2], time.time())

    async def forget_deleted(self, prefix: str = "", older_than: float = 0.0) -> int:
        """Drop the tombstones under ``prefix`` deleted ``older_than`` seconds ago or more (see
        ``GroupCommitStore.forget_deleted``); how many."""
        cutoff = time.time() - older_than
        gone = [k for k, r in self._records.items()
                if r[0] is None and r[3] <= cutoff and k.startswith(prefix)]  # fmt: skip
        for key in gone:
            del self._records[key]
        return len(gone)

    async def list(self, prefix: str = "") -> list[str]:
        return sorted(
            k for k, r in self._records.items() if r[0] is not None and k.startswith(prefix)
        )

    async def close(self) -> None:
        return None


def check_key(key: object) -> None:
    """Reject keys no backend can store faithfully: they must be non-empty strings."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"invalid state key {key!r}: must be a non-empty string")


def check_version(key: str, expected: object) -> None:
    """Reject an expected version that no record can have: versions are ints from 1 up."""
    if expected is not None and (type(expected) is not int or expected < 1):
        raise InvalidArgument(
            f"invalid expected version {expected!r} for {key!r}: None (no record yet) or an"
            " int >= 1"
        )


def stale(key: str, expected: int | None, actual: int | None) -> StaleVersion:
    """The error every backend raises when a write names a version that is no longer current."""
    return StaleVersion(
        f"stale write to {key!r}: expected version {expected}, but the store holds {actual}"
        " (another writer got there first)",
        key=key,
        expected=expected,
        actual=actual,
    )


async def settled(writing: dict[str, asyncio.Future[Any]], key: str) -> None:
    """Wait until every write of ``key`` in flight is done (whatever its outcome).

    A process killed while its save was queued leaves that save to land later; its restarted
    successor must load after it, or its first save would be stale.
    """
    fut = writing.get(key)
    if fut is not None and not fut.done():
        await asyncio.wait([fut])


def encode(key: str, data: dict[str, Any]) -> str:
    """A record's data as compact JSON text; not JSON-ready is a ``PersistenceError``."""
    check_key(key)
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise PersistenceError(
            f"state of {key!r} is not JSON-ready: {exc}", context={"key": key}, retryable=False
        ) from exc


def decode(store: object, key: str, text: str | bytes) -> dict[str, Any]:
    """A stored record's data from its JSON text (or its UTF-8 bytes); what is not a JSON object
    (written by something else, damaged, not UTF-8, nested past Python's recursion limit) is
    ``StateCorrupt`` naming the key, and is left as it is."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise StateCorrupt(
            f"{store!r}: the record of {key!r} is not valid JSON ({exc}); it is left as it is",
            context={"key": key},
        ) from exc
    if not isinstance(data, dict):
        raise StateCorrupt(
            f"{store!r}: the record of {key!r} is JSON {type(data).__name__}, not an object;"
            " it is left as it is",
            context={"key": key},
        )
    return data
