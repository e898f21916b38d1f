"""Group commit (SQLite, PostgreSQL): saves share transactions; a failed one acknowledges nobody."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation import Runtime, spawn
from foundation.errors import PersistenceError, StaleVersion
from foundation.kernel.api import wait_exit
from foundation.persistence import SQLiteStore
from foundation.persistence.postgres import PostgresStore
from tests.conftest import service_or_skip
from tests.persistence.test_store_contract import _drop_pg_table

_SQLITE_POISON = (
    "CREATE TRIGGER poison BEFORE INSERT ON foundation_state WHEN NEW.key = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'poisoned on purpose'); END"
)
_PG_POISON = """
CREATE FUNCTION {t}_poison() RETURNS trigger AS $$ BEGIN
  IF NEW.key = 'poison' THEN RAISE EXCEPTION 'poisoned on purpose'; END IF; RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER poison BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_poison();
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, runtime: Runtime, tmp_path: Path) -> Iterator[Any]:
    made: Any
    if request.param == "sqlite":
        made = SQLiteStore(tmp_path / "s.db")
    else:
        dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
        made = PostgresStore(dsn, table=f"g_{uuid.uuid4().hex[:12]}")
    runtime.store = made
    made.attach(runtime)
    yield made
    if isinstance(made, PostgresStore):
        _drop_pg_table(made.dsn, made.table)
        _drop_pg_table(made.dsn, made.table, f"FUNCTION IF EXISTS {made.table}_poison")


async def poison(store: Any) -> None:
    """Make every commit that inserts the key ``poison`` fail (a trigger in the database)."""
    if isinstance(store, PostgresStore):
        await store.execute(_PG_POISON.format(t=store.table))
    else:
        await store._writer.run(lambda: store._wconn.execute(_SQLITE_POISON))


async def test_concurrent_saves_are_group_committed_in_few_transactions(store: Any) -> None:
    await store.save("warm", {}, None)
    before = store.stats.commits

    async def writer(i: int) -> None:
        await store.save(f"k{i}", {"i": i}, None)

    pids = [spawn(writer, i) for i in range(200)]
    for pid in pids:
        await wait_exit(pid)
    commits = store.stats.commits - before
    assert 1 <= commits <= 10  # not 200
    assert store.stats.largest_batch >= 100
    assert store.stats.writes == 201
    assert len(await store.list("k")) == 200


async def test_two_saves_of_one_key_in_one_batch_see_each_other(store: Any) -> None:
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
    assert store.stats.commits == 1  # all four in one transaction


async def test_a_delete_and_a_save_of_one_key_in_one_batch_apply_in_order(store: Any) -> None:
    await store.save("k", {"n": 1}, None)
    results: list[object] = []

    async def delete() -> None:
        await store.delete("k", 1)
        results.append("deleted")

    async def recreate() -> None:
        results.append(await store.save("k", {"n": "new"}, None))

    pids = [spawn(delete), spawn(recreate)]
    for pid in pids:
        await wait_exit(pid)
    assert results == ["deleted", 2]  # on from the deleted record's version
    assert (await store.load("k")).data == {"n": "new"}


async def test_a_failed_commit_fails_every_write_in_it_and_the_store_goes_on(store: Any) -> None:
    await store.save("ok", {"v": 1}, None)
    await poison(store)
    outcomes: dict[str, str] = {}

    async def writer(key: str) -> None:
        try:
            await store.save(key, {}, None)
            outcomes[key] = "acked"
        except PersistenceError as err:
            outcomes[key] = str(err)

    commits = store.stats.commits
    pids = [spawn(writer, k) for k in ("a", "poison", "b")]
    for pid in pids:
        await wait_exit(pid)
    assert store.stats.commits == commits  # the one commit failed: nothing counted
    assert "poisoned on purpose" in outcomes["poison"]
    assert outcomes["a"] == outcomes["b"] == outcomes["poison"]  # one batch, one failure
    for key in ("a", "b", "poison"):
        assert await store.load(key) is None  # acknowledged by nobody, made by nobody
    assert await store.save("after", {"fine": True}, None) == 1
    assert await store.save("ok", {"v": 2}, 1) == 2


async def test_stale_writes_among_others_in_one_batch_fail_alone(store: Any) -> None:
    for key in ("a", "b", "e"):
        await store.save(key, {"n": 0}, None)
    commits = store.stats.commits
    results: dict[str, object] = {}

    async def writer(key: str, expected: int | None) -> None:
        try:
            results[key] = await store.save(key, {"n": 1}, expected)
        except StaleVersion as err:
            results[key] = (err.code, err.context["actual"])

    plan = [("a", 1), ("b", 7), ("c", None), ("d", 3), ("e", None)]
    pids = [spawn(writer, key, expected) for key, expected in plan]
    for pid in pids:
        await wait_exit(pid)
    assert results == {
        "a": 2,
        "b": ("stale_version", 1),  # behind the store
        "c": 1,
        "d": ("stale_version", None),  # an update of a key that was never made
        "e": ("stale_version", 1),  # a create of a key that exists
    }
    assert store.stats.commits == commits + 1  # one batch
    assert [(await store.load(k)) is not None for k in "abcde"] == [True, True, True, False, True]
    assert (await store.load("a")).data == {"n": 1}
    assert (await store.load("b")).version == 1
    assert (await store.load("e")).data == {"n": 0}


async def test_a_batch_larger_than_one_statement_is_written_whole(store: Any) -> None:
    async def writer(i: int) -> None:
        version = await store.save(f"k{i}", {"i": i}, None)
        assert await store.save(f"k{i}", {"i": -i}, version) == 2

    pids = [spawn(writer, i) for i in range(1100)]  # more rows than one statement takes
    for pid in pids:
        await wait_exit(pid)
    assert store.stats.largest_batch > 512  # so SQLite split it into statements
    assert len(await store.list("k")) == 1100
    assert (await store.load("k1099")).data == {"i": -1099}
