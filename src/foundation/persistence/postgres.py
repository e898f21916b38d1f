"""PostgresStore: the state store for several machines, on PostgreSQL through asyncpg.

Same contract, write path and test suite as ``SQLiteStore`` (``GroupCommitStore``): saves are
queued, and everything queued while a commit is in flight is written together: one statement
per batch (``unnest`` of the batch's arrays) in which each write is checked on its own row
(``UPDATE ... WHERE key = k AND version = expected``, ``INSERT ... ON CONFLICT (key) DO
NOTHING`` for a new key, ``DELETE ... WHERE version = expected``), so a stale write fails alone
with ``StaleVersion`` while the rest of its batch commits. A key written twice in one batch
takes a second statement in the same transaction (writes of one key apply in order). A failed
statement fails the whole batch with ``PersistenceError`` and acknowledges none of it.

asyncpg is asynchronous, but its connections do not run on the runtime's loop: each of the
store's two kernel-owned threads (writer, reader) runs its own small event loop with one
connection. So no caller's cancellation (a killed process) can interrupt a commit that other
callers wait for, and the virtual clock of tests sees the I/O as external work. A lost
connection is reopened on the next operation. Data is stored as JSONB; a deleted key keeps its
row as a tombstone (``data`` the JSON ``null``, ``version`` negated: no write expects a negative
version), so that its version never goes back. Needs the
``postgres`` extra (asyncpg), imported only when the store is first used.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from foundation.errors import InvalidArgument, PersistenceError
from foundation.persistence.group_commit import GroupCommitStore, Write
from foundation.persistence.memory import decode, stale
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
            "list": f"SELECT key FROM {t} WHERE starts_with(key, $1) AND version > 0"
            ' ORDER BY key COLLATE "C"',
            "versions": f"SELECT key, CASE WHEN version < 0 THEN NULL ELSE version END"
            f" FROM {t} WHERE key = ANY($1::text[])",
            "round": _ROUND.format(t=t),
            "forget": f"DELETE FROM {t} WHERE version < 0 AND starts_with(key, $1)"
            " AND updated_at <= $2",
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
        except (
            OSError,
            TimeoutError,
            UnicodeEncodeError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as exc:
            raise PersistenceError(
                f"{self!r}: {type(exc).__name__}: {exc}",
                context={"table": self.table},
            ) from exc

    def _forget_connections(self) -> None:
        self._w, self._r = _Side(), _Side()

    def _row_error(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if isinstance(exc, PersistenceError) else exc
        if isinstance(cause, UnicodeEncodeError):
            return True
        try:
            import asyncpg
        except ImportError:
            return False
        # class 22 (data exception): JSON the jsonb type refuses (NaN, \u0000), numbers
        # out of range: the fault of one write's data
        return isinstance(cause, asyncpg.DataError)

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
        if row is None or row[1] < 0:  # none, or a tombstone
            return None
        return Stored(key, decode(self, key, row[0]), row[1], row[2], row[3])

    def _list(self, prefix: str) -> builtins.list[str]:
        rows = self._run(self._r, _fetch, self._sql["list"], (prefix,))
        return [r[0] for r in rows]

    def _commit(self, batch: builtins.list[Write]) -> builtins.list[Any]:
        results: builtins.list[Any] = self._run(self._w, _commit, batch)
        return results

    def _forget(self, prefix: str, cutoff: float) -> int:
        status: str = self._run(self._w, _execute, self._sql["forget"], (prefix, cutoff))
        return int(status.rsplit(maxsplit=1)[-1])  # "DELETE n"


async def _execute(conn: Any, store: PostgresStore, sql: str, args: tuple[Any, ...]) -> Any:
    return await conn.execute(sql, *args)


async def _fetchrow(conn: Any, store: PostgresStore, sql: str, args: tuple[Any, ...]) -> Any:
    return await conn.fetchrow(sql, *args)


async def _fetch(conn: Any, store: PostgresStore, sql: str, args: tuple[Any, ...]) -> Any:
    return await conn.fetch(sql, *args)


async def _commit(
    conn: Any, store: PostgresStore, batch: builtins.list[Write]
) -> builtins.list[Any]:
    """One transaction for the batch: one statement per round (a key's n-th write in the batch
    goes in round n, so each round names a key once and the writes of a key apply in order),
    then, only if some write failed its check, one query for the versions that beat it."""
    sql = store._sql
    now = time.time()
    rounds: builtins.list[builtins.list[int]] = []
    seen: dict[str, int] = {}
    for i, w in enumerate(batch):
        n = seen.get(w.key, 0)
        seen[w.key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    results: builtins.list[Any] = [None] * len(batch)
    if len(rounds) == 1:  # one statement is a transaction by itself: no BEGIN/COMMIT trips
        await _round(conn, sql, batch, rounds[0], results, now)
    else:
        async with conn.transaction():
            for indices in rounds:
                await _round(conn, sql, batch, indices, results, now)
    return results


async def _round(
    conn: Any,
    sql: dict[str, str],
    batch: builtins.list[Write],
    indices: builtins.list[int],
    results: builtins.list[Any],
    now: float,
) -> None:
    """Write one round (``batch[i]`` for ``i`` in ``indices``) and fill in its ``results``."""
    writes = [batch[i] for i in indices]
    rows = await conn.fetch(
        sql["round"],
        [w.key for w in writes],
        [w.text for w in writes],
        [w.schema_version for w in writes],
        [w.expected for w in writes],
        now,
    )
    done = {r[0]: r[1] for r in rows}
    failed = [(i, w) for i, w in zip(indices, writes, strict=True) if w.key not in done]
    for i, w in zip(indices, writes, strict=True):
        results[i] = done.get(w.key)
    if failed:
        actual = dict(await conn.fetch(sql["versions"], [w.key for _, w in failed]))
        for i, w in failed:
            now_at = actual.get(w.key)
            if w.text is not None or now_at is not None:  # a delete of nothing is done
                results[i] = stale(w.key, w.expected, now_at)


# One round of a batch: $1 keys (each once), $2 JSON texts (NULL: a delete), $3 schema
# versions, $4 expected versions (NULL: a new key, or a delete of any version), $5 the time.
# Every change is checked in its own statement (INSERT for a new key, which may only replace a
# tombstone, going on from its version; UPDATE ... WHERE version = expected of a record; a
# delete turns a record into a tombstone); the rows returned are the writes made.
_ROUND = """WITH u AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS u(k, d, s, e)
), ins AS (
  INSERT INTO {t} (key, data, version, schema_version, updated_at)
  SELECT k, d::jsonb, 1, s, $5 FROM u WHERE d IS NOT NULL AND e IS NULL
  ON CONFLICT (key) DO UPDATE SET data = excluded.data, version = 1 - {t}.version,
    schema_version = excluded.schema_version, updated_at = excluded.updated_at
  WHERE {t}.version < 0
  RETURNING key, version
), upd AS (
  UPDATE {t} SET data = u.d::jsonb, version = {t}.version + 1, schema_version = u.s,
    updated_at = $5
  FROM u WHERE u.d IS NOT NULL AND u.e IS NOT NULL AND {t}.key = u.k AND {t}.version = u.e
  RETURNING {t}.key, {t}.version
), del AS (
  UPDATE {t} SET data = 'null'::jsonb, version = -{t}.version, updated_at = $5 FROM u
  WHERE u.d IS NULL AND {t}.key = u.k AND {t}.version > 0
    AND (u.e IS NULL OR {t}.version = u.e)
  RETURNING {t}.key, NULL::bigint AS version
)
SELECT key, version FROM ins UNION ALL SELECT key, version FROM upd
UNION ALL SELECT key, version FROM del"""
