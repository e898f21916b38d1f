"""PostgresStore: the state store for several machines, on PostgreSQL through asyncpg.

Same contract and test suite as ``SQLiteStore``. Writes are batched: the saves queued while a
commit is in flight go together in the next transaction, each checked in its own statement
(``UPDATE ... WHERE key = $1 AND version = $expected``, ``INSERT ... ON CONFLICT DO NOTHING``
for a new key), so a stale write fails alone with ``StaleVersion`` while the rest of its batch
commits. The first writer that finds no commit in flight runs the commits until the queue is
empty; should it be cancelled mid-commit, that batch fails with ``PersistenceError`` (never a
false success) and the next writer takes over. Data is stored as JSONB. Needs the
``postgres`` extra (asyncpg).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import re
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import FoundationError, InvalidArgument, PersistenceError
from foundation.kernel.context import RUNTIME
from foundation.persistence.memory import check_key, encode, stale
from foundation.persistence.memory import forget as _forget
from foundation.persistence.memory import settled as _settled
from foundation.persistence.memory import track as _track
from foundation.persistence.sqlite import StoreStats
from foundation.persistence.store import Stored

__all__ = ["PostgresStore"]

_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(slots=True)
class _Write:
    key: str
    text: str | None
    expected: int | None
    schema_version: int
    fut: asyncio.Future[int | None] = field(repr=False)


class PostgresStore:
    """A StateStore in one PostgreSQL table (default ``foundation_state``)."""

    def __init__(
        self, dsn: str, *, table: str = "foundation_state", min_size: int = 1, max_size: int = 4
    ) -> None:
        if not _TABLE.match(table):
            raise InvalidArgument(f"invalid table name {table!r}: lower-case letters, digits, _")
        self.dsn = dsn
        self.table = table
        self.stats = StoreStats()
        self._sizes = (min_size, max_size)
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._queue: list[_Write] = []
        self._writing: dict[str, asyncio.Future[Any]] = {}
        self._flushing = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<PostgresStore table={self.table}>"

    # -- connection ----------------------------------------------------------------------------

    async def _db(self) -> Any:
        if self._closed:
            raise PersistenceError(f"{self!r} is closed", retryable=False)
        if self._pool is not None:
            return self._pool
        async with self._lock:  # one opener; the others wait for its pool
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> Any:
        try:
            import asyncpg
        except ImportError as exc:
            raise PersistenceError(
                "PostgresStore needs asyncpg: pip install 'foundation-otp[postgres]'",
                retryable=False,
            ) from exc
        with _external():
            try:
                pool = await asyncpg.create_pool(
                    self.dsn, min_size=self._sizes[0], max_size=self._sizes[1]
                )
                async with pool.acquire() as conn:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY,"
                        " data JSONB NOT NULL, version BIGINT NOT NULL,"
                        " schema_version INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL)"
                    )
            except (OSError, asyncpg.PostgresError) as exc:
                raise PersistenceError(
                    f"cannot open PostgreSQL store ({type(exc).__name__}: {exc})",
                    context={"table": self.table},
                ) from exc
        return pool

    async def close(self) -> None:
        """Finish queued writes, then close the pool; idempotent."""
        if self._closed:
            return
        if self._queue and not self._flushing:
            await self._run_commits()
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            with _external():
                await pool.close()

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, key: str) -> Stored | None:
        await _settled(self._writing, key)  # a write still in flight (a dead writer's) lands first
        pool = await self._db()
        with _external():
            row = await pool.fetchrow(
                f"SELECT data::text, version, schema_version, updated_at FROM {self.table}"
                " WHERE key = $1",
                key,
            )
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

    async def _write(
        self, key: str, text: str | None, expected: int | None, schema_version: int
    ) -> int | None:
        await self._db()
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(key, text, expected, schema_version, fut))
        _track(self._writing, key, fut)
        if not self._flushing:
            await self._run_commits()
        return await fut

    async def _run_commits(self) -> None:
        """Commit batches until the queue is empty (the caller is the leader meanwhile)."""
        self._flushing = True
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._commit(batch)
                except FoundationError as err:
                    _fail(batch, err)
                    for w in batch:
                        _forget(self._writing, w.key, w.fut)
                    continue
                except BaseException as exc:  # cancelled or a bug: nobody may wait forever
                    waiting, self._queue = batch + self._queue, []
                    _fail(
                        waiting,
                        PersistenceError(
                            f"the writer of {self.table} stopped ({exc!r}) before committing; "
                            "none of these writes was made",
                            context={"table": self.table},
                        ),
                    )
                    raise
                self.stats.commits += 1
                self.stats.writes += len(batch)
                self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
                for w, result in zip(batch, results, strict=True):
                    _forget(self._writing, w.key, w.fut)
                    if w.fut.done():
                        continue
                    if isinstance(result, BaseException):
                        w.fut.set_exception(result)
                    else:
                        w.fut.set_result(result)
        finally:
            self._flushing = False

    async def _commit(self, batch: builtins.list[_Write]) -> builtins.list[Any]:
        import asyncpg

        pool = await self._db()
        results: builtins.list[Any] = []
        t = self.table
        with _external():
            try:
                async with pool.acquire() as conn, conn.transaction():
                    for w in batch:
                        results.append(await self._one(conn, t, w))
            except (OSError, asyncpg.PostgresError) as exc:
                raise PersistenceError(
                    f"commit to {t} failed ({type(exc).__name__}: {exc}); none of its "
                    f"{len(batch)} writes was made",
                    context={"table": t},
                ) from exc
        return results

    @staticmethod
    async def _one(conn: Any, t: str, w: _Write) -> Any:
        if w.text is None:
            if w.expected is None:
                await conn.execute(f"DELETE FROM {t} WHERE key = $1", w.key)
                return None
            row = await conn.fetchrow(
                f"DELETE FROM {t} WHERE key = $1 AND version = $2 RETURNING version",
                w.key,
                w.expected,
            )
            if row is None:
                actual = await conn.fetchval(f"SELECT version FROM {t} WHERE key = $1", w.key)
                if actual is not None:
                    return stale(w.key, w.expected, actual)
            return None
        if w.expected is None:
            version = await conn.fetchval(
                f"INSERT INTO {t} (key, data, version, schema_version, updated_at)"
                " VALUES ($1, $2::jsonb, 1, $3, extract(epoch from clock_timestamp()))"
                " ON CONFLICT (key) DO NOTHING RETURNING version",
                w.key,
                w.text,
                w.schema_version,
            )
        else:
            version = await conn.fetchval(
                f"UPDATE {t} SET data = $2::jsonb, version = version + 1, schema_version = $3,"
                " updated_at = extract(epoch from clock_timestamp())"
                " WHERE key = $1 AND version = $4 RETURNING version",
                w.key,
                w.text,
                w.schema_version,
                w.expected,
            )
        if version is None:
            actual = await conn.fetchval(f"SELECT version FROM {t} WHERE key = $1", w.key)
            return stale(w.key, w.expected, actual)
        return version

    # -- listing (last: the method's name shadows the builtin in the class body) -----------

    async def list(self, prefix: str = "") -> builtins.list[str]:
        pool = await self._db()
        with _external():
            rows = await pool.fetch(
                f'SELECT key FROM {self.table} WHERE starts_with(key, $1) ORDER BY key COLLATE "C"',
                prefix,
            )
        return [r[0] for r in rows]


def _fail(writes: builtins.list[_Write], err: BaseException) -> None:
    for w in writes:
        if not w.fut.done():
            w.fut.set_exception(err)


class _external:
    """Marks network I/O as work outside the loop, so a virtual clock does not jump over it."""

    __slots__ = ("_cm",)

    def __enter__(self) -> None:
        rt = RUNTIME.get()
        self._cm = rt.clock.external() if rt is not None else None
        if self._cm is not None:
            self._cm.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
