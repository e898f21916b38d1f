"""The StateStore contract, one suite for every backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from foundation import Runtime, spawn
from foundation.errors import InvalidArgument, PersistenceError, StaleVersion
from foundation.kernel.api import wait_exit
from foundation.persistence import MemoryStore, SQLiteStore, StateStore, open_store
from foundation.persistence.postgres import PostgresStore
from tests.conftest import service_or_skip


def _pg_store() -> PostgresStore:
    dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
    return PostgresStore(dsn, table=f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest, runtime: Runtime, tmp_path: Path) -> Any:
    kind = request.param
    made: StateStore
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SQLiteStore(tmp_path / "state.db")
    else:
        made = _pg_store()
    runtime.store = made
    attach = getattr(made, "attach", None)
    if attach is not None:
        attach(runtime)
    return made


async def drop(store: Any) -> None:
    if isinstance(store, PostgresStore):
        pool = await store._db()
        await pool.execute(f"DROP TABLE IF EXISTS {store.table}")


async def test_loading_a_missing_key_gives_none(store: Any) -> None:
    assert await store.load("nothing") is None
    await drop(store)


async def test_a_new_key_is_saved_with_expected_none_at_version_one(store: Any) -> None:
    assert await store.save("a", {"x": 1}, None) == 1
    rec = await store.load("a")
    assert (rec.key, rec.data, rec.version, rec.schema_version) == ("a", {"x": 1}, 1, 1)
    assert rec.updated_at > 0
    await drop(store)


async def test_each_save_increments_the_version(store: Any) -> None:
    v = await store.save("a", {"n": 0}, None)
    for n in range(1, 5):
        v = await store.save("a", {"n": n}, v)
    rec = await store.load("a")
    assert (rec.version, rec.data) == (5, {"n": 4})
    await drop(store)


async def test_a_stale_write_is_refused_never_silently_applied(store: Any) -> None:
    await store.save("a", {"n": 1}, None)
    await store.save("a", {"n": 2}, 1)
    with pytest.raises(StaleVersion) as info:
        await store.save("a", {"n": 99}, 1)
    assert (info.value.key, info.value.expected, info.value.actual) == ("a", 1, 2)
    with pytest.raises(StaleVersion):
        await store.save("a", {"n": 99}, None)  # "new" but it exists
    with pytest.raises(StaleVersion):
        await store.save("b", {"n": 99}, 3)  # "version 3" but there is none
    assert (await store.load("a")).data == {"n": 2}
    assert await store.load("b") is None
    await drop(store)


async def test_delete_with_and_without_a_version(store: Any) -> None:
    await store.save("a", {}, None)
    await store.save("b", {}, None)
    with pytest.raises(StaleVersion):
        await store.delete("a", 7)
    await store.delete("a", 1)
    await store.delete("b", None)
    await store.delete("never", None)
    assert await store.load("a") is None
    assert await store.load("b") is None
    assert await store.save("a", {"again": True}, None) == 1
    await drop(store)


async def test_list_gives_the_keys_with_a_prefix_sorted(store: Any) -> None:
    for key in ["agent/b", "agent/a", "workflow/1", "agent_x", "Agent/c"]:
        await store.save(key, {}, None)
    assert await store.list("agent/") == ["agent/a", "agent/b"]
    assert await store.list("agent") == ["agent/a", "agent/b", "agent_x"]
    assert await store.list() == ["Agent/c", "agent/a", "agent/b", "agent_x", "workflow/1"]
    assert await store.list("zzz") == []
    await drop(store)


async def test_data_round_trips_unicode_nesting_and_numbers(store: Any) -> None:
    data = {"name": "Zoë ✓ 日本", "nested": {"list": [1, 2.5, None, True, "x"]}, "big": 2**53}
    await store.save("u", data, None, schema_version=3)
    rec = await store.load("u")
    assert rec.data == data
    assert rec.schema_version == 3
    await drop(store)


async def test_data_that_is_not_json_ready_is_a_persistence_error(store: Any) -> None:
    with pytest.raises(PersistenceError, match="JSON"):
        await store.save("bad", {"x": object()}, None)
    assert await store.load("bad") is None
    await drop(store)


async def test_concurrent_saves_of_different_keys_are_all_acknowledged(store: Any) -> None:
    acks: list[int] = []

    async def writer(i: int) -> None:
        v = await store.save(f"k{i:03}", {"i": i}, None)
        v = await store.save(f"k{i:03}", {"i": i, "again": True}, v)
        acks.append(v)

    pids = [spawn(writer, i) for i in range(100)]
    for pid in pids:
        await wait_exit(pid)
    assert acks == [2] * 100
    assert len(await store.list("k")) == 100
    assert (await store.load("k042")).data == {"i": 42, "again": True}
    await drop(store)


async def test_two_writers_racing_on_one_key_exactly_one_wins(store: Any) -> None:
    await store.save("race", {"n": 0}, None)
    outcomes: list[str] = []

    async def writer(n: int) -> None:
        try:
            await store.save("race", {"n": n}, 1)
            outcomes.append("won")
        except StaleVersion:
            outcomes.append("stale")

    pids = [spawn(writer, n) for n in range(10)]
    for pid in pids:
        await wait_exit(pid)
    assert sorted(outcomes) == ["stale"] * 9 + ["won"]
    assert (await store.load("race")).version == 2
    await drop(store)


async def test_keys_must_be_non_empty_strings(store: Any) -> None:
    with pytest.raises(InvalidArgument):
        await store.save("", {}, None)
    with pytest.raises(InvalidArgument):
        await store.save(5, {}, None)
    await drop(store)


async def test_close_is_idempotent_and_use_after_close_is_a_clear_error(store: Any) -> None:
    await store.save("a", {}, None)
    await drop(store)
    await store.close()
    await store.close()
    if isinstance(store, MemoryStore):
        return  # nothing to release
    with pytest.raises(PersistenceError, match="closed"):
        await store.load("a")


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
