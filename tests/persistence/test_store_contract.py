"""The StateStore contract, one suite for every backend: memory, SQLite and PostgreSQL.

The contract's tests live in ``foundation.testing.conformance.StateStoreSpec`` (the kit anyone
writing a store runs); each class here runs it on one of Foundation's own backends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation import Runtime
from foundation.errors import InvalidArgument
from foundation.persistence import MemoryStore, SQLiteStore, StateStore, open_store
from foundation.persistence.postgres import PostgresStore
from foundation.testing.conformance import StateStoreSpec
from tests.conftest import service_or_skip


def _drop_pg_table(dsn: str, table: str, what: str = "") -> None:
    """Drop a test's table (or ``what``, say ``FUNCTION IF EXISTS f``) once the test is over."""

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP {what or 'TABLE IF EXISTS ' + table}")
        finally:
            await conn.close()

    asyncio.run(drop())


class TestMemoryStore(StateStoreSpec):
    durable = False  # survives nothing by design
    refuses_use_after_close = False  # nothing to release

    def make_store(self, runtime: Runtime, tmp_path: Path) -> StateStore:
        return MemoryStore()


class TestSQLiteStore(StateStoreSpec):
    def make_store(self, runtime: Runtime, tmp_path: Path) -> StateStore:
        return SQLiteStore(tmp_path / "state.db")


@pytest.mark.postgres
class TestPostgresStore(StateStoreSpec):
    dsn: str
    table: str

    @pytest.fixture(autouse=True)
    def _pg_table(self) -> Iterator[None]:
        """A fresh table per test on the server, dropped once the test (and its runtime) ends."""
        self.dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
        self.table = f"t_{uuid.uuid4().hex[:12]}"
        yield
        _drop_pg_table(self.dsn, self.table)

    def make_store(self, runtime: Runtime, tmp_path: Path) -> StateStore:
        return PostgresStore(self.dsn, table=self.table)


def test_store_urls_name_their_backend(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    rel = open_store("sqlite:///state.db")
    assert isinstance(rel, SQLiteStore)
    assert rel.path == "state.db"
    absolute = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == f"{tmp_path}/x.db"
    assert isinstance(open_store("postgresql://u@h/db"), PostgresStore)
    assert isinstance(open_store("postgres://u@h/db"), PostgresStore)
    with pytest.raises(InvalidArgument, match="unknown store URL scheme"):
        open_store("redis://x")
    with pytest.raises(InvalidArgument):
        open_store("state.db")
    with pytest.raises(InvalidArgument):
        SQLiteStore("x.db", synchronous="sometimes")  # type: ignore[arg-type]
