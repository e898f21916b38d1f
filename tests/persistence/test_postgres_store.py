"""PostgresStore beyond the shared contract: without asyncpg, without a server, after a lost
connection."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from foundation import Runtime
from foundation.errors import PersistenceError
from foundation.persistence import PostgresStore
from tests.conftest import service_or_skip
from tests.persistence.test_store_contract import _drop_pg_table


def attached(runtime: Runtime, dsn: str, table: str) -> PostgresStore:
    store = PostgresStore(dsn, table=table)
    runtime.store = store
    store.attach(runtime)
    return store


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
    table = f"p_{uuid.uuid4().hex[:12]}"
    yield dsn, table
    _drop_pg_table(dsn, table)


async def test_without_asyncpg_the_store_imports_and_says_what_to_install_when_used(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    store = attached(runtime, "postgresql://nobody@127.0.0.1:1/none", "t")
    with pytest.raises(PersistenceError, match=r"needs asyncpg: pip install") as info:
        await store.save("k", {}, None)
    assert info.value.retryable is False


async def test_an_unreachable_server_is_a_retryable_error_naming_the_store(
    runtime: Runtime,
) -> None:
    store = attached(runtime, "postgresql://nobody@127.0.0.1:1/none", "somewhere")
    with pytest.raises(PersistenceError, match="somewhere") as info:
        await store.save("k", {}, None)
    assert info.value.retryable is True
    with pytest.raises(PersistenceError, match="somewhere"):
        await store.load("k")


@pytest.mark.postgres
@pytest.mark.foundation(clock="real")  # the test's own asyncpg connection runs on its loop
async def test_a_lost_connection_is_opened_again(
    runtime: Runtime, pg_table: tuple[str, str]
) -> None:
    dsn, table = pg_table
    store = attached(runtime, dsn, table)
    assert await store.save("k", {"n": 1}, None) == 1
    assert (await store.load("k")).version == 1
    import asyncpg

    admin = await asyncpg.connect(dsn)
    try:  # the server drops both of the store's connections (say, it restarted)
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND query LIKE $1",
            f"%{table}%",
        )
    finally:
        await admin.close()
    assert ended == 2
    try:
        version = await store.save("k", {"n": 2}, 1)
    except PersistenceError:  # the write that finds the connection gone fails, unacknowledged
        version = await store.save("k", {"n": 2}, 1)
    assert version == 2
    try:
        rec = await store.load("k")
    except PersistenceError:
        rec = await store.load("k")
    assert (rec.data, rec.version) == ({"n": 2}, 2)
