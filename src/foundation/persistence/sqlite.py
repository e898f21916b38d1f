"""SQLiteStore: the embedded default state store, in WAL mode, with group commit.

Saves are queued; one writer thread takes every save queued so far and writes them in **one**
transaction (one fsync), then answers each caller with its own result. Saves that arrive while
a commit is in flight wait for the next one, so the more writers there are, the more each
commit carries. Versions are checked per key inside the transaction (two saves of one key in
one batch see each other), so a stale write is a ``StaleVersion`` for that caller only; a
failed commit fails every save in it with ``PersistenceError`` and acknowledges none. Reads go
to a second connection on its own thread (WAL readers never wait for the writer). Neither
thread ever blocks the event loop; both are kernel-owned (``runtime.worker``).

``synchronous`` says what an acknowledged save survives:

- ``"normal"`` (default): a kill of the OS process at any moment (SIGKILL, a crash). In WAL
  mode a power loss or an OS crash may lose the last commits (never corrupt the database).
- ``"full"``: also a power loss or an OS crash: every commit waits for an fsync of the WAL.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from foundation.errors import FoundationError, InvalidArgument, PersistenceError
from foundation.kernel.context import RUNTIME
from foundation.persistence.memory import check_key, encode, stale
from foundation.persistence.memory import forget as _forget
from foundation.persistence.memory import settled as _settled
from foundation.persistence.memory import track as _track
from foundation.persistence.store import Stored

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime, ThreadWorker

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


@dataclass(slots=True)
class StoreStats:
    """Writes so far: saves and deletes acknowledged, and the commits that carried them."""

    writes: int = 0
    commits: int = 0
    largest_batch: int = 0


@dataclass(slots=True)
class _Write:
    key: str
    text: str | None  # None: a delete
    expected: int | None
    schema_version: int
    fut: asyncio.Future[int | None] = field(repr=False)


class SQLiteStore:
    """A StateStore in one SQLite file; see the module docstring for what it guarantees."""

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise InvalidArgument(
                f"invalid synchronous={synchronous!r} for SQLiteStore: 'normal' or 'full'"
            )
        self.path = str(path)
        self.synchronous: Synchronous = synchronous
        self.stats = StoreStats()
        self._rt: Runtime | None = None
        self._writer: ThreadWorker | None = None
        self._reader: ThreadWorker | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._queue: list[_Write] = []
        self._writing: dict[str, asyncio.Future[Any]] = {}
        self._inflight: asyncio.Future[Any] | None = None
        self._scheduled = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} synchronous={self.synchronous}>"

    # -- lifecycle -----------------------------------------------------------------------------

    def attach(self, rt: Runtime) -> None:
        """Take the writer and reader threads from ``rt`` (the runtime calls this on start)."""
        self._rt = rt
        self._writer = rt.worker(f"sqlite-writer:{self.path}")
        self._reader = rt.worker(f"sqlite-reader:{self.path}")
        self._wconn = self._rconn = None
        self._closed = False

    def _ready(self) -> tuple[ThreadWorker, ThreadWorker]:
        if self._closed:
            raise PersistenceError(f"{self!r} is closed", retryable=False)
        if self._writer is None or self._reader is None:
            rt = RUNTIME.get()
            if rt is None:
                raise PersistenceError(
                    f"{self!r} is not attached to a runtime: pass it as Runtime(store=...)",
                    retryable=False,
                )
            self.attach(rt)
        assert self._writer is not None
        assert self._reader is not None
        return self._writer, self._reader

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(_SCHEMA)
        return conn

    async def close(self) -> None:
        """Finish the writes queued and in flight, then close both connections; idempotent."""
        if self._closed or self._writer is None or self._reader is None:
            self._closed = True
            return
        while self._inflight is not None or self._queue:
            if self._inflight is None:
                self._flush()
            assert self._inflight is not None
            await asyncio.wait([self._inflight])
        self._closed = True
        await self._writer.run(self._close_conn, "_wconn")
        await self._reader.run(self._close_conn, "_rconn")

    def _close_conn(self, attr: str) -> None:
        conn = getattr(self, attr)
        if conn is not None:
            conn.close()
            setattr(self, attr, None)

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, key: str) -> Stored | None:
        await _settled(self._writing, key)  # a write still in flight (a dead writer's) lands first
        _, reader = self._ready()
        return await reader.run(self._load, key)

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

    # -- writes --------------------------------------------------------------------------------

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
        version = await self._write(key, text, expected_version, schema_version)
        assert version is not None
        return version

    async def delete(self, key: str, expected_version: int | None) -> None:
        check_key(key)
        await self._write(key, None, expected_version, 0)

    def _write(
        self, key: str, text: str | None, expected: int | None, schema_version: int
    ) -> asyncio.Future[int | None]:
        """Queue a write; the future answers once its commit is durable (a plain function:
        one coroutine less per save)."""
        if self._closed or self._writer is None:
            self._ready()
        assert self._rt is not None
        fut: asyncio.Future[int | None] = self._rt.loop.create_future()
        self._queue.append(_Write(key, text, expected, schema_version, fut))
        _track(self._writing, key, fut)
        if self._inflight is None and not self._scheduled:
            # Start the commit at the end of this loop pass, so that every save made in the
            # same pass (servers woken together make theirs together) joins the batch.
            self._scheduled = True
            self._rt.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        """Hand everything queued to the writer thread as one transaction."""
        self._scheduled = False
        if self._inflight is not None or not self._queue:
            return
        writer, _ = self._ready()
        batch, self._queue = self._queue, []
        self._inflight = writer.submit(self._commit, batch)
        self._inflight.add_done_callback(lambda f: self._committed(batch, f))

    def _committed(self, batch: list[_Write], done: asyncio.Future[list[Any]]) -> None:
        self._inflight = None
        if done.cancelled():
            err: BaseException | None = PersistenceError("the commit was cancelled")
        else:
            err = done.exception()
        if err is not None:
            if not isinstance(err, FoundationError):
                err = PersistenceError(
                    f"commit to {self.path} failed: {err!r}; none of its {len(batch)} writes "
                    "was made",
                    context={"path": self.path},
                )
            for w in batch:
                _forget(self._writing, w.key, w.fut)
                if not w.fut.done():
                    w.fut.set_exception(err)
        else:
            self.stats.commits += 1
            self.stats.writes += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            for w, result in zip(batch, done.result(), strict=True):
                _forget(self._writing, w.key, w.fut)
                if w.fut.done():
                    continue
                if isinstance(result, BaseException):
                    w.fut.set_exception(result)
                else:
                    w.fut.set_result(result)
        if self._queue and not self._scheduled:
            self._scheduled = True
            assert self._rt is not None
            self._rt.loop.call_soon(self._flush)

    def _commit(self, batch: list[_Write]) -> list[Any]:
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

    # -- listing (last: the method's name shadows the builtin in the class body) -----------

    async def list(self, prefix: str = "") -> list[str]:
        _, reader = self._ready()
        return await reader.run(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[str]:
        if self._rconn is None:
            self._rconn = self._connect()
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rconn.execute(
            "SELECT key FROM foundation_state WHERE key LIKE ? ESCAPE '\\' ORDER BY key",
            (escaped + "%",),
        ).fetchall()
        return [r[0] for r in rows if r[0].startswith(prefix)]  # LIKE ignores ASCII case
