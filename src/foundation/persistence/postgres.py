"""PostgresStore: the state store for several machines, on PostgreSQL through asyncpg.

Same contract, write path and test suite as ``SQLiteStore`` (``GroupCommitStore``): saves are
queued, and everything queued while a commit is in flight goes in the next transaction, each
write checked by its own statement (``UPDATE ... WHERE key = $1 AND version = $expected``,
``INSERT ... ON CONFLICT (key) DO NOTHING`` for a new key), so a stale write fails alone with
``StaleVersion`` while the rest of its batch commits; a failed transaction fails the whole
batch with ``PersistenceError`` and acknowledges none of it.

asyncpg is asynchronous, but its connections do not run on the runtime's loop: each of the
store's two kernel-owned threads (writer, reader) runs its own small event loop with one
connection. So no caller's cancellation (a killed process) can interrupt a commit that other
callers wait for, and the virtual clock of tests sees the I/O as external work. A lost
connection is reopened on the next operation. Data is stored as JSONB. Needs the ``postgres``
extra (asyncpg), imported only when the store is first used.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from foundation.errors import InvalidArgument, PersistenceError
from foundation.persistence.group_commit import GroupCommitStore, Write
from foundation.persistence.memory import stale
from foundation.persistence.store import Stored

__all__ = ["PostgresStore"]

_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class _Side:
    """One of the store's threads: its own event loop and asyncpg connection."""

    __slots__ = ("conn", "loop")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Any = None


class PostgresStore(GroupCommitStore):
    """A StateStore in one PostgreSQL table (default ``foundation_state``)."""

    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "foundation_state",
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        if not _TABLE.match(table):
            raise InvalidArgument(f"invalid table name {table!r}: lower-case letters, digits, _")
        super().__init__(table)
        self.dsn = dsn
        self.table = table
        self._timeouts = (connect_timeout, command_timeout)
        self._w = _Side()
        self._r = _Side()
        t = table
        self._sql = {
            "load": f"SELECT data::text, version, schema_version, updated_at FROM {t} WHERE key=$1",
            "list": f'SELECT key FROM {t} WHERE starts_with(key, $1) ORDER BY key COLLATE "C"',
            "version": f"SELECT version FROM {t} WHERE key = $1",
            "insert": f"INSERT INTO {t} (key, data, version, schema_version, updated_at)"
            " VALUES ($1, $2::jsonb, 1, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING version",
            "update": f"UPDATE {t} SET data = $2::jsonb, version = version + 1,"
            " schema_version = $3, updated_at = $4 WHERE key = $1 AND version = $5"
            " RETURNING version",
            "delete_any": f"DELETE FROM {t} WHERE key = $1",
            "delete": f"DELETE FROM {t} WHERE key = $1 AND version = $2 RETURNING version",
            "create": f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY,"
            " data JSONB NOT NULL, version BIGINT NOT NULL, schema_version INTEGER NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL)",
        }

    def __repr__(self) -> str:
        return f"<PostgresStore table={self.table}>"

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one SQL statement on the store's writer connection, in order with its commits
        (administration: a migration, dropping a test table); its status string."""
        writer, _ = self._ready()
        result: str = await writer.run(self._run, self._w, _execute, sql, args)
        return result

    async def _db(self) -> PostgresStore:
        """The store itself (older tests reach ``execute`` through this)."""
        return self

    # -- on the store's threads ----------------------------------------------------------------

    def _run(self, side: _Side, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """On ``side``'s thread: run ``fn(conn, *args)`` to completion on the thread's loop."""
        if side.loop is None:
            side.loop = asyncio.new_event_loop()
        return side.loop.run_until_complete(self._with_conn(side, fn, args))

    async def _with_conn(
        self, side: _Side, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> Any:
        try:
            import asyncpg
        except ImportError as exc:
            raise PersistenceError(
                "PostgresStore needs asyncpg: pip install 'foundation-otp[postgres]'",
                retryable=False,
            ) from exc
        try:
            if side.conn is None or side.conn.is_closed():
                side.conn = None
                conn = await asyncpg.connect(
                    self.dsn, timeout=self._timeouts[0], command_timeout=self._timeouts[1]
                )
                try:  # the other thread (or another machine) may create it at the same time
                    with contextlib.suppress(
                        asyncpg.UniqueViolationError, asyncpg.DuplicateTableError
                    ):
                        await conn.execute(self._sql["create"])
                except BaseException:
                    conn.terminate()
                    raise
                side.conn = conn
            return await fn(side.conn, self, *args)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise PersistenceError(
                f"{self!r}: {type(exc).__name__}: {exc}",
                context={"table": self.table},
            ) from exc

    def _close_side(self, side: _Side) -> None:
        if side.loop is None:
            return
        if side.conn is not None:
            conn, side.conn = side.conn, None
            try:
                side.loop.run_until_complete(conn.close(timeout=5))
            except (OSError, TimeoutError):
                conn.terminate()  # the server is gone: drop the socket
        side.loop.close()
        side.loop = None

    def _close_writer(self) -> None:
        self._close_side(self._w)

    def _close_reader(self) -> None:
        self._close_side(self._r)

    def _load(self, key: str) -> Stored | None:
        row = self._run(self._r, _fetchrow, self._sql["load"], (key,))
        if row is None:
            return None
        return Stored(key, json.loads(row[0]), row[1], row[2], row[3])

    def _list(self, prefix: str) -> builtins.list[str]:
        rows = self._run(self._r, _fetch, self._sql["list"], (prefix,))
        return [r[0] for r in rows]

    def _commit(self, batch: builtins.list[Write]) -> builtins.list[Any]:
        results: builtins.list[Any] = self._run(self._w, _commit, batch)
        return results


async def _execute(conn: Any, store: PostgresStore, sql: str, args: tuple[Any, ...]) -> Any:
    return await conn.execute(sql, *args)


async def _fetchrow(conn: Any, store: PostgresStore, sql: str, args: tuple[Any, ...]) -> Any:
    return await conn.fetchrow(sql, *args)


async def _fetch(conn: Any, store: PostgresStore, sql: str, args: tuple[Any, ...]) -> Any:
    return await conn.fetch(sql, *args)


async def _commit(
    conn: Any, store: PostgresStore, batch: builtins.list[Write]
) -> builtins.list[Any]:
    """One transaction for the batch, each write checked by its own statement, in order."""
    sql = store._sql
    now = time.time()
    results: builtins.list[Any] = []
    async with conn.transaction():
        for w in batch:
            if w.text is None:  # a delete
                if w.expected is None:
                    await conn.execute(sql["delete_any"], w.key)
                    results.append(None)
                    continue
                if await conn.fetchval(sql["delete"], w.key, w.expected) is None:
                    actual = await conn.fetchval(sql["version"], w.key)
                    if actual is not None:
                        results.append(stale(w.key, w.expected, actual))
                        continue
                results.append(None)
                continue
            if w.expected is None:
                version = await conn.fetchval(sql["insert"], w.key, w.text, w.schema_version, now)
            else:
                version = await conn.fetchval(
                    sql["update"], w.key, w.text, w.schema_version, now, w.expected
                )
            if version is None:
                actual = await conn.fetchval(sql["version"], w.key)
                results.append(stale(w.key, w.expected, actual))
            else:
                results.append(version)
    return results
