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
people to read), ``version INTEGER, schema_version INTEGER, updated_at REAL`` (Unix time). A
deleted key keeps its row as a tombstone, ``data`` the JSON ``null`` and ``version`` the deleted
version negated (no write ever expects a negative version, so version checks need no extra
test), so that its version never goes back: its next save goes on from it.
"""

from __future__ import annotations

import builtins
import functools
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from foundation.errors import InvalidArgument, PersistenceError
from foundation.persistence.group_commit import GroupCommitStore, StoreStats, Write
from foundation.persistence.memory import decode, stale
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
_BUCKET_MAX = 512  # rows per statement of the one-statement path (sizes: powers of two)
_PAD = ("", "", 0, 0)  # a padding row: no key is empty (and None would cost sqlite3 an
# adapter lookup that raises and formats an AttributeError per parameter)
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)  # UPDATE ... FROM
_TOMBSTONE = "null"  # the data of a deleted key's row (its version is negated)


def _bucket(n: int) -> int:
    """The statement size for ``n`` rows: the next power of two (few distinct statements, so
    SQLite's statement cache keeps them prepared); the rest of the rows are padding."""
    return 1 << (n - 1).bit_length()


def _values(n: int, width: int) -> str:
    """``VALUES`` of ``n`` rows of ``width`` parameters each."""
    row = "(" + ",".join("?" * width) + ")"
    return "VALUES " + ",".join([row] * n)


def _like(prefix: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern for keys starting with ``prefix`` (ASCII case
    ignored by LIKE: callers check the prefix exactly too)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@functools.cache
def _update_sql(n: int) -> str:
    return (
        "UPDATE foundation_state SET data=b.column2, version=b.column3+1,"
        f" schema_version=b.column4, updated_at=? FROM ({_values(n, 4)}) AS b"
        " WHERE foundation_state.key=b.column1 AND foundation_state.version=b.column3"
    )


@functools.cache
def _insert_sql(n: int) -> str:
    return (
        "INSERT INTO foundation_state (key, data, version, schema_version, updated_at)"
        f" SELECT column1, column2, 1, column3, ? FROM ({_values(n, 3)})"
        " WHERE column1 <> '' ON CONFLICT(key) DO NOTHING"
    )


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
        conn.execute("PRAGMA temp_store=MEMORY")  # the VALUES of a batch statement
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

    def _read_conn(self) -> sqlite3.Connection:
        if self._rconn is None:
            self._rconn = self._connect()
        return self._rconn

    def _read_failed(self, what: str, exc: sqlite3.Error) -> PersistenceError:
        return PersistenceError(
            f"{self!r} could not read {what}: {type(exc).__name__}: {exc}",
            context={"path": self.path},
        )

    def _load(self, key: str) -> Stored | None:
        try:
            row = (
                self._read_conn()
                .execute(
                    # bytes, decoded by ``decode``: text that is not UTF-8 is StateCorrupt
                    "SELECT CAST(data AS BLOB), version, schema_version, updated_at"
                    " FROM foundation_state WHERE key=?",
                    (key,),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:  # locked past busy_timeout, I/O error, not a database
            raise self._read_failed(f"the record of {key!r}", exc) from exc
        if row is None or row[1] < 0:  # none, or a tombstone
            return None
        return Stored(key, decode(self, key, row[0]), row[1], row[2], row[3])

    def _list(self, prefix: str) -> builtins.list[str]:
        try:
            rows = (
                self._read_conn()
                .execute(
                    "SELECT key FROM foundation_state WHERE key LIKE ? ESCAPE '\\'"
                    " AND version > 0 ORDER BY key",
                    (_like(prefix),),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise self._read_failed(f"the keys under {prefix!r}", exc) from exc
        return [r[0] for r in rows if r[0].startswith(prefix)]  # LIKE ignores ASCII case

    def _forget(self, prefix: str, cutoff: float) -> int:
        if self._wconn is None:
            self._wconn = self._connect()
        cur = self._wconn.execute(  # one statement: its own transaction
            "DELETE FROM foundation_state WHERE version < 0 AND updated_at <= ?"
            " AND key LIKE ? ESCAPE '\\' AND substr(key, 1, ?) = ?",
            (cutoff, _like(prefix), len(prefix), prefix),
        )
        return cur.rowcount

    def _commit(self, batch: builtins.list[Write]) -> builtins.list[Any]:
        """On the writer thread: check every version and write the batch in one transaction.

        The usual batch (saves of distinct keys) is one ``UPDATE ... FROM (VALUES ...)`` whose
        ``WHERE`` checks each version, and one ``INSERT`` of the new keys: two statements, so
        the thread takes the GIL back a handful of times per commit, not once per row. If any
        write in it is stale, that transaction is rolled back and the batch goes the exact way:
        versions checked in order in Python (a later write of a key in the batch sees the
        earlier one), each stale write answered with its own ``StaleVersion``.
        """
        if self._wconn is None:
            self._wconn = self._connect()
        conn = self._wconn
        now = time.time()
        if _UPDATE_FROM and len({w.key for w in batch}) == len(batch):
            fast = self._commit_fast(conn, batch, now)
            if fast is not None:
                return fast
        return self._commit_exact(conn, batch, now)

    @staticmethod
    def _commit_fast(
        conn: sqlite3.Connection, batch: builtins.list[Write], now: float
    ) -> builtins.list[Any] | None:
        """Write a batch of distinct keys with one UPDATE and one INSERT per (up to)
        ``_BUCKET_MAX`` rows; ``None`` (rolled back) if it holds a delete or a stale write."""
        updates: list[Any] = []
        inserts: list[Any] = []
        for w in batch:
            if w.text is None:
                return None
            if w.expected is None:
                inserts.append((w.key, w.text, w.schema_version))
            else:
                updates.append((w.key, w.text, w.expected, w.schema_version))
        conn.execute("BEGIN IMMEDIATE")
        try:
            for rows, width, sql in ((updates, 4, _update_sql), (inserts, 3, _insert_sql)):
                for i in range(0, len(rows), _BUCKET_MAX):
                    chunk = rows[i : i + _BUCKET_MAX]
                    size = _bucket(len(chunk))
                    params: list[Any] = [now]
                    for row in chunk:
                        params.extend(row)
                    params.extend(_PAD[:width] * (size - len(chunk)))
                    if conn.execute(sql(size), params).rowcount != len(chunk):
                        conn.execute("ROLLBACK")  # a stale write: the exact way answers it
                        return None
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [1 if w.expected is None else w.expected + 1 for w in batch]

    def _commit_exact(
        self, conn: sqlite3.Connection, batch: builtins.list[Write], now: float
    ) -> builtins.list[Any]:
        """Check every version in order in Python and write the surviving upserts and deletes
        (tombstones) in one transaction, in runs of one ``executemany``."""
        results: list[Any] = []
        upserts: list[tuple[str, str, int, int, float]] = []
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: versions read below stay true
        try:
            current = self._versions(conn, {w.key for w in batch})
            for w in batch:
                version, alive = current.get(w.key, (0, False))
                actual = version if alive else None
                if w.text is None:  # delete
                    if not alive:
                        results.append(None)  # a delete of nothing is done
                        continue
                    if w.expected not in (None, actual):
                        results.append(stale(w.key, w.expected, actual))
                        continue
                    if upserts:  # keep the order of writes to one key
                        conn.executemany(_UPSERT, upserts)
                        upserts = []
                    conn.execute(
                        "UPDATE foundation_state SET data=?, version=?, updated_at=? WHERE key=?",
                        (_TOMBSTONE, -version, now, w.key),
                    )
                    current[w.key] = (version, False)
                    results.append(None)
                    continue
                if actual != w.expected:
                    results.append(stale(w.key, w.expected, actual))
                    continue
                version += 1  # on from a tombstone's version too: versions never go back
                upserts.append((w.key, w.text, version, w.schema_version, now))
                current[w.key] = (version, True)
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
    def _versions(conn: sqlite3.Connection, keys: set[str]) -> dict[str, tuple[int, bool]]:
        """Each key's row: (version, whether it holds a record rather than a tombstone)."""
        found: dict[str, tuple[int, bool]] = {}
        ordered = sorted(keys)
        for i in range(0, len(ordered), _CHUNK):
            chunk = ordered[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, version in conn.execute(
                f"SELECT key, version FROM foundation_state WHERE key IN ({marks})", chunk
            ):
                found[key] = (abs(version), version > 0)  # a tombstone's version is negated
        return found
