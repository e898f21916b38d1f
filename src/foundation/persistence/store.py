"""The state-store contract: versioned, fenced key/value records that every backend implements.

A record is JSON-ready data (``dict``) under a string key, with a version that starts at 1 and
grows by one per save, and never goes back: a deleted key's next record goes on from the
version it was deleted at (the backend keeps a tombstone). Every write names the version it
replaces (``None`` for "no record yet"), so two writers of one key can never overwrite each
other silently: the late one gets ``StaleVersion``. A save returns only once the change is
durable to the backend's promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["StateStore", "Stored"]


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored record: its data, version, the data's schema version and last update time."""

    key: str
    data: dict[str, Any]
    version: int
    schema_version: int
    updated_at: float


@runtime_checkable
class StateStore(Protocol):
    """What a persistent server needs from a backend; every method is a coroutine."""

    async def load(self, key: str) -> Stored | None:
        """The record under ``key``, or ``None`` if there is none."""
        ...

    async def save(
        self,
        key: str,
        data: dict[str, Any],
        expected_version: int | None,
        *,
        schema_version: int = 1,
    ) -> int:
        """Write ``data`` if the record is still at ``expected_version``; the new version.

        Raises ``StaleVersion`` when another writer got there first and ``PersistenceError``
        when the change could not be made durable (then it was not made at all).
        """
        ...

    async def delete(self, key: str, expected_version: int | None) -> None:
        """Remove the record if it is still at ``expected_version`` (``None``: any version).

        Its key's version is kept: a later save (with ``expected_version=None``) goes on from
        it, so a writer still holding a version read before the delete gets ``StaleVersion``.
        """
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """Every stored key starting with ``prefix``, sorted."""
        ...

    async def close(self) -> None:
        """Finish writes in flight and release the backend; idempotent."""
        ...
