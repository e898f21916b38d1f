"""SQLiteStore: WAL and synchronous settings, readable JSON, one file shared across runtimes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from foundation import Runtime
from foundation.errors import PersistenceError, StateCorrupt
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


def _write_raw(path: Path, key: str, data: str) -> None:
    """Put ``data`` in a record behind the store's back (another program, a damaged file)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE foundation_state SET data=? WHERE key=?", (data, key))
    finally:
        conn.close()


@pytest.mark.parametrize("raw", ['{"balance": 1', "[1, 2]"], ids=["not-json", "not-an-object"])
async def test_a_record_that_is_not_a_json_object_is_state_corrupt_and_left_alone(
    runtime: Runtime, tmp_path: Path, raw: str
) -> None:
    store = attached(runtime, tmp_path / "s.db")
    await store.save("acct", {"balance": 1}, None)
    await store.save("other", {"balance": 2}, None)
    _write_raw(tmp_path / "s.db", "acct", raw)
    with pytest.raises(StateCorrupt) as info:
        await store.load("acct")
    assert info.value.context["key"] == "acct" and "acct" in str(info.value)
    assert (await store.load("other")).data == {"balance": 2}  # type: ignore[union-attr]
    assert await store.list() == ["acct", "other"]  # kept, never dropped or overwritten


async def test_a_file_that_is_not_a_database_is_a_persistence_error_not_a_raw_sqlite_one(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not an SQLite database, only some text " * 100)
    store = attached(runtime, path)
    with pytest.raises(PersistenceError) as info:
        await store.load("acct")
    assert str(path) in str(info.value)
    with pytest.raises(PersistenceError):
        await store.list()
    with pytest.raises(PersistenceError):
        await store.save("acct", {}, None)
