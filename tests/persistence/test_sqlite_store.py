"""SQLiteStore: WAL and synchronous settings, readable JSON, one file shared across runtimes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from foundation import Runtime
from foundation.errors import PersistenceError
from foundation.persistence import SQLiteStore


def attached(runtime: Runtime, path: Path, **kw: str) -> SQLiteStore:
    store = SQLiteStore(path, **kw)  # type: ignore[arg-type]
    runtime.store = store
    store.attach(runtime)
    return store


@pytest.mark.parametrize(("synchronous", "level"), [("normal", 1), ("full", 2)])
async def test_the_file_is_in_wal_mode_with_the_synchronous_setting_asked_for(
    runtime: Runtime, tmp_path: Path, synchronous: str, level: int
) -> None:
    store = attached(runtime, tmp_path / "s.db", synchronous=synchronous)
    await store.save("k", {}, None)
    assert await store._writer.run(
        lambda: (
            store._wconn.execute("PRAGMA journal_mode").fetchone()[0],
            store._wconn.execute("PRAGMA synchronous").fetchone()[0],
        )
    ) == ("wal", level)


async def test_the_data_column_is_json_people_can_read(runtime: Runtime, tmp_path: Path) -> None:
    store = attached(runtime, tmp_path / "s.db")
    await store.save("agent/1", {"name": "Zoë", "tags": ["a"]}, None, schema_version=2)
    await store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        row = conn.execute("SELECT key, data, version, schema_version FROM foundation_state")
        assert row.fetchall() == [("agent/1", '{"name":"Zoë","tags":["a"]}', 1, 2)]
    finally:
        conn.close()


def test_another_runtime_on_the_same_file_finds_every_acknowledged_save(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def write() -> None:
        async with Runtime(store=SQLiteStore(path, synchronous="full")) as rt:
            for i in range(10):
                await rt.store.save(f"k{i}", {"i": i}, None)

    async def read() -> None:
        async with Runtime(store=f"sqlite:///{path}") as rt:
            assert len(await rt.store.list()) == 10
            rec = await rt.store.load("k7")
            assert (rec.data, rec.version) == ({"i": 7}, 1)

    asyncio.run(write())
    asyncio.run(read())


def test_a_store_outside_any_runtime_says_how_to_attach_it(tmp_path: Path) -> None:
    with pytest.raises(PersistenceError, match="not attached to a runtime"):
        asyncio.run(SQLiteStore(tmp_path / "x.db").load("k"))
