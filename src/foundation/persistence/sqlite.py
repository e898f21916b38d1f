"""SQLiteStore: the embedded default state store, in WAL mode, with group commit.

Saves are queued; one writer thread takes every save queued so far and writes them in **one**
transaction (one fsync), then answers each caller with its own result. Saves that arrive while
a commit is in flight wait for the next one, so the more writers there are, the more each
commit carries. Versions are checked per key inside the transaction (two saves of one key in
one batch see each other), so a stale write is a ``StaleVersion`` for that caller only; a
failed commit fails every save in it with ``PersistenceError`` and acknowledges none. Reads go
to a second connection on its own thread (WAL readers never wait for the writer). Neither
thread ever blocks the event loop; both are kernel-owned (``runtime.worker``); the queue and
the answers are ``GroupCommitStore``'s.

``synchronous`` says what an acknowledged save survives:

- ``"normal"`` (default): a kill of the OS process at any moment (SIGKILL, a crash). In WAL
  mode a power loss or an OS crash may lose the last commits (never corrupt the database).
- ``"full"``: also a power loss or an OS crash: every commit waits for an fsync of the WAL.

The table (``foundation_state``): ``key TEXT PRIMARY KEY, data TEXT`` (the record as JSON, for
people to read), ``version INTEGER, schema_version INTEGER, updated_at REAL`` (Unix time).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from foundation.errors import InvalidArgument
from foundation.persistence.group_commit import GroupCommitStore, StoreStats, Write
from foundation.persistence.memory import stale
from foundation.persistence.store import Stored

__all__ = ["SQLiteStore", "StoreStats"]

Synchronous = Literal["normal", "full"]
_SCHEMA = """CREATE TABLE IF NOT EXISTS foundation_state (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID"""
_UPSERT = (
    "INSERT INTO foundation_state (key, data, version, schema_version, updated_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET data=excluded.data,"
    " version=excluded.version, schema_version=excluded.schema_version,"
    " updated_at=excluded.updated_at"
)
_CHUNK = 500  # keys per SELECT ... IN (...), under SQLite's parameter limit


class SQLiteStore(GroupCommitStore):
    """A StateStore in one SQLite file; see the module docstring for what it guarantees."""

    kind = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise InvalidArgument(
                f"invalid synchronous={synchronous!r} for SQLiteStore: 'normal' or 'full'"
            )
        super().__init__(str(path))
        self.path = str(path)
        self.synchronous: Synchronous = synchronous
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} synchronous={self.synchronous}>"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(_SCHEMA)
        return conn

    def _forget_connections(self) -> None:
        self._wconn = self._rconn = None

    def _close_writer(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    def _close_reader(self) -> None:
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None

    def _load(self, key: str) -> Stored | None:
        if self._rconn is None:
            self._rconn = self._connect()
        row = self._rconn.execute(
            "SELECT data, version, schema_version, updated_at FROM foundation_state WHERE key=?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return Stored(key, json.loads(row[0]), row[1], row[2], row[3])

    def _list(self, prefix: str) -> builtins.list[str]:
        if self._rconn is None:
            self._rconn = self._connect()
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rconn.execute(
            "SELECT key FROM foundation_state WHERE key LIKE ? ESCAPE '\\' ORDER BY key",
            (escaped + "%",),
        ).fetchall()
        return [r[0] for r in rows if r[0].startswith(prefix)]  # LIKE ignores ASCII case

    def _commit(self, batch: builtins.list[Write]) -> builtins.list[Any]:
        """On the writer thread: check every version and write the batch in one transaction.

        Versions are checked in order in Python (a later write of a key in the batch sees the
        earlier one); the surviving upserts then go to SQLite in runs of one ``executemany``.
        """
        if self._wconn is None:
            self._wconn = self._connect()
        conn = self._wconn
        results: list[Any] = []
        now = time.time()
        upserts: list[tuple[str, str, int, int, float]] = []
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: versions read below stay true
        try:
            current = self._versions(conn, {w.key for w in batch})
            for w in batch:
                actual = current.get(w.key)
                if w.text is None:  # delete
                    if actual is not None and w.expected not in (None, actual):
                        results.append(stale(w.key, w.expected, actual))
                        continue
                    if upserts:  # keep the order of writes to one key
                        conn.executemany(_UPSERT, upserts)
                        upserts = []
                    conn.execute("DELETE FROM foundation_state WHERE key=?", (w.key,))
                    current.pop(w.key, None)
                    results.append(None)
                    continue
                if actual != w.expected:
                    results.append(stale(w.key, w.expected, actual))
                    continue
                version = (actual or 0) + 1
                upserts.append((w.key, w.text, version, w.schema_version, now))
                current[w.key] = version
                results.append(version)
            if upserts:
                conn.executemany(_UPSERT, upserts)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    @staticmethod
    def _versions(conn: sqlite3.Connection, keys: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        ordered = sorted(keys)
        for i in range(0, len(ordered), _CHUNK):
            chunk = ordered[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, version in conn.execute(
                f"SELECT key, version FROM foundation_state WHERE key IN ({marks})", chunk
            ):
                found[key] = version
        return found
