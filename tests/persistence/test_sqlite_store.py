"""SQLiteStore: group commit shares transactions; a failed commit acknowledges nobody."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from foundation import Runtime, spawn
from foundation.errors import PersistenceError, StaleVersion
from foundation.kernel.api import wait_exit
from foundation.persistence import SQLiteStore


def attached(runtime: Runtime, path: Path, **kw: str) -> SQLiteStore:
    store = SQLiteStore(path, **kw)  # type: ignore[arg-type]
    runtime.store = store
    store.attach(runtime)
    return store


async def test_concurrent_saves_are_group_committed_in_few_transactions(
    runtime: Runtime, tmp_path: Path
) -> None:
    store = attached(runtime, tmp_path / "s.db")
    await store.save("warm", {}, None)
    before = store.stats.commits

    async def writer(i: int) -> None:
        await store.save(f"k{i}", {"i": i}, None)

    pids = [spawn(writer, i) for i in range(200)]
    for pid in pids:
        await wait_exit(pid)
    commits = store.stats.commits - before
    assert 1 <= commits <= 10
    assert store.stats.largest_batch >= 100
    assert len(await store.list("k")) == 200


async def test_two_saves_of_one_key_in_one_batch_see_each_other(
    runtime: Runtime, tmp_path: Path
) -> None:
    store = attached(runtime, tmp_path / "s.db")
    results: list[object] = []

    async def writer(expected: int | None) -> None:
        try:
            results.append(await store.save("k", {"e": expected}, expected))
        except StaleVersion as err:
            results.append(err.code)

    pids = [spawn(writer, e) for e in (None, 1, 1, 2)]
    for pid in pids:
        await wait_exit(pid)
    assert results == [1, 2, "stale_version", 3]


async def test_a_failed_commit_fails_every_write_in_it_and_the_store_goes_on(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    store = attached(runtime, path)
    await store.save("ok", {"v": 1}, None)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON foundation_state WHEN NEW.key = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned on purpose'); END"
    )
    conn.commit()
    conn.close()
    outcomes: dict[str, str] = {}

    async def writer(key: str) -> None:
        try:
            await store.save(key, {}, None)
            outcomes[key] = "acked"
        except PersistenceError as err:
            outcomes[key] = str(err)

    await store.save("warm", {}, None)
    pids = [spawn(writer, k) for k in ("a", "poison", "b")]
    for pid in pids:
        await wait_exit(pid)
    # "a" may lead its own commit; "poison" and everything batched with it fail together
    assert "poisoned on purpose" in outcomes["poison"]
    for key in ("a", "b"):
        stored = await store.load(key)
        assert (stored is not None) == (outcomes[key] == "acked")
    assert await store.load("poison") is None
    assert await store.save("after", {"fine": True}, None) == 1


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
