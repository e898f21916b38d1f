"""The StateStore conformance kit: one contract suite that any store backend can run.

Subclass :class:`StateStoreSpec` once per backend, in a class whose name starts with ``Test``
(the spec itself is not collected), and say how to open the store::

    from foundation.testing.conformance import StateStoreSpec

    class TestMyStore(StateStoreSpec):
        def make_store(self, runtime, tmp_path):
            return MyStore(tmp_path / "state.db")  # a new store over the same data each call

Every test runs on the plugin's ``runtime`` fixture (virtual clock, leak checks). The spec
attaches each store to that runtime (if it has an ``attach`` method, as ``Runtime.start``
does for its configured store) and hands the first one to the runtime, which closes it at
shutdown. Optional behaviour sits behind capability flags (class attributes): set one to
``False`` where the backend does not promise it and the tests that need it check less.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from foundation.errors import InvalidArgument, PersistenceError, StaleVersion
from foundation.kernel.api import spawn, wait_exit
from foundation.kernel.runtime import Runtime
from foundation.persistence.store import StateStore, Stored
from foundation.testing.helpers import crash

__all__ = ["StateStoreSpec"]


async def _load(store: StateStore, key: str) -> Stored:
    rec = await store.load(key)
    assert rec is not None, f"no record under {key!r}"
    return rec


async def _race(store: StateStore, key: str, expected: int | None) -> list[str]:
    """Ten processes save ``key`` at once, all naming ``expected``: each one's outcome, sorted."""
    outcomes: list[str] = []

    async def writer(n: int) -> None:
        try:
            await store.save(key, {"n": n}, expected)
            outcomes.append("won")
        except StaleVersion:
            outcomes.append("stale")

    pids = [spawn(writer, n) for n in range(10)]
    for pid in pids:
        await wait_exit(pid)
    return sorted(outcomes)


class StateStoreSpec:
    """The contract every ``StateStore`` keeps; subclass it and override :meth:`make_store`."""

    #: Records survive ``close()`` and a new store from ``make_store`` sees them (with their
    #: versions, tombstones included). ``False`` for a store that keeps nothing (memory).
    durable: ClassVar[bool] = True
    #: Using a store after ``close()`` raises ``PersistenceError`` naming it closed. ``False``
    #: for a store with nothing to release.
    refuses_use_after_close: ClassVar[bool] = True
    #: A save queued before its caller was killed still lands (a group-commit writer owns it).
    #: With ``False`` the killed caller's own save may or may not land; nobody else may fail.
    saves_outlive_their_caller: ClassVar[bool] = True

    def make_store(self, runtime: Runtime, tmp_path: Path) -> StateStore:
        """A NEW store object over the same database each call within one test (the reopen test
        opens a second one after closing the first), as another OS process would open it.

        ``tmp_path`` is the test's own directory; ``runtime`` is the test's runtime. Do not
        attach the store: the spec does it. Per-test setup and cleanup (a fresh table, a
        server to skip without) belong in an autouse fixture on the subclass.
        """
        raise NotImplementedError(f"{type(self).__name__} must override make_store")

    @pytest.fixture
    def new_store(self, runtime: Runtime, tmp_path: Path) -> Callable[[], StateStore]:
        """Opens stores over the test's database, attached to the test's runtime."""

        def make() -> StateStore:
            made = self.make_store(runtime, tmp_path)
            attach = getattr(made, "attach", None)
            if attach is not None:
                attach(runtime)  # a store that needs kernel-owned threads takes them here
            return made

        return make

    @pytest.fixture
    def store(self, new_store: Callable[[], StateStore], runtime: Runtime) -> StateStore:
        made = new_store()
        runtime.store = made  # closed at the runtime's shutdown
        return made

    async def test_loading_a_missing_key_gives_none(self, store: StateStore) -> None:
        assert await store.load("nothing") is None

    async def test_a_new_key_is_saved_with_expected_none_at_version_one(
        self, store: StateStore
    ) -> None:
        assert await store.save("a", {"x": 1}, None) == 1
        rec = await _load(store, "a")
        assert (rec.key, rec.data, rec.version, rec.schema_version) == ("a", {"x": 1}, 1, 1)
        assert rec.updated_at > 0

    async def test_each_save_increments_the_version(self, store: StateStore) -> None:
        v = await store.save("a", {"n": 0}, None)
        for n in range(1, 5):
            v = await store.save("a", {"n": n}, v)
        rec = await _load(store, "a")
        assert (rec.version, rec.data) == (5, {"n": 4})

    async def test_a_stale_write_is_refused_never_silently_applied(self, store: StateStore) -> None:
        await store.save("a", {"n": 1}, None)
        await store.save("a", {"n": 2}, 1)
        with pytest.raises(StaleVersion) as info:
            await store.save("a", {"n": 99}, 1)
        assert (info.value.key, info.value.expected, info.value.actual) == ("a", 1, 2)
        with pytest.raises(StaleVersion):
            await store.save("a", {"n": 99}, None)  # "new" but it exists
        with pytest.raises(StaleVersion):
            await store.save("b", {"n": 99}, 3)  # "version 3" but there is none
        assert (await _load(store, "a")).data == {"n": 2}
        assert await store.load("b") is None

    async def test_delete_with_and_without_a_version(self, store: StateStore) -> None:
        await store.save("a", {}, None)
        await store.save("b", {}, None)
        with pytest.raises(StaleVersion):
            await store.delete("a", 7)
        await store.delete("a", 1)
        await store.delete("b", None)
        await store.delete("never", None)
        await store.delete("a", 1)  # deleting what is already deleted is done
        assert await store.load("a") is None
        assert await store.load("b") is None
        assert await store.list() == []

    async def test_a_key_s_version_never_goes_back_after_a_delete(self, store: StateStore) -> None:
        """A tombstone keeps the version: the next record goes on from it, and a writer still
        holding a version read before the delete cannot write over the new record."""
        assert await store.save("a", {"n": 1}, None) == 1
        assert await store.save("a", {"n": 2}, 1) == 2
        await store.delete("a", 2)
        with pytest.raises(StaleVersion) as info:
            await store.save("a", {"stale": True}, 2)  # read before the delete
        assert info.value.actual is None
        assert await store.save("a", {"again": True}, None) == 3
        with pytest.raises(StaleVersion):
            await store.save("a", {"stale": True}, 2)
        rec = await _load(store, "a")
        assert (rec.data, rec.version) == ({"again": True}, 3)
        assert await store.list("a") == ["a"]
        await store.delete("a", None)
        assert await store.save("a", {}, None) == 4

    async def test_forgetting_tombstones_lets_only_those_keys_start_again_at_one(
        self, store: StateStore
    ) -> None:
        """``forget_deleted(prefix, older_than)`` is optional (not in the protocol); a store
        that has it drops only tombstones, only under the prefix, only old enough."""
        forget = getattr(store, "forget_deleted", None)
        if forget is None:
            pytest.skip(f"{type(store).__name__} has no forget_deleted (optional)")
        await store.save("gone/1", {}, None)
        await store.save("gone/1", {}, 1)
        await store.delete("gone/1", 2)
        await store.save("gone_not/1", {}, None)
        await store.delete("gone_not/1", 1)
        await store.save("gone/live", {}, None)
        assert await forget("gone/", older_than=3600) == 0  # deleted just now
        assert await forget("gone/") == 1
        assert await store.save("gone/1", {}, None) == 1  # forgotten: starts again
        assert await store.save("gone_not/1", {}, None) == 2  # not under the prefix
        assert (await _load(store, "gone/live")).version == 1  # a record is never forgotten

    async def test_list_gives_the_keys_with_a_prefix_sorted(self, store: StateStore) -> None:
        for key in ["agent/b", "agent/a", "workflow/1", "agent_x", "Agent/c"]:
            await store.save(key, {}, None)
        assert await store.list("agent/") == ["agent/a", "agent/b"]
        assert await store.list("agent") == ["agent/a", "agent/b", "agent_x"]
        assert await store.list() == ["Agent/c", "agent/a", "agent/b", "agent_x", "workflow/1"]
        assert await store.list("zzz") == []

    async def test_data_round_trips_unicode_nesting_and_numbers(self, store: StateStore) -> None:
        data = {"name": "Zoë ✓ 日本", "nested": {"list": [1, 2.5, None, True, "x"]}, "big": 2**53}
        await store.save("u", data, None, schema_version=3)
        rec = await _load(store, "u")
        assert rec.data == data
        assert rec.schema_version == 3

    async def test_data_that_is_not_json_ready_is_a_persistence_error(
        self, store: StateStore
    ) -> None:
        with pytest.raises(PersistenceError, match="JSON"):
            await store.save("bad", {"x": object()}, None)
        assert await store.load("bad") is None

    async def test_concurrent_saves_of_different_keys_are_all_acknowledged(
        self, store: StateStore
    ) -> None:
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
        assert (await _load(store, "k042")).data == {"i": 42, "again": True}

    async def test_two_writers_racing_on_one_key_exactly_one_wins(self, store: StateStore) -> None:
        await store.save("race", {"n": 0}, None)
        assert await _race(store, "race", 1) == ["stale"] * 9 + ["won"]
        assert (await _load(store, "race")).version == 2

    async def test_racing_creators_of_one_new_key_exactly_one_wins(self, store: StateStore) -> None:
        assert await _race(store, "fresh", None) == ["stale"] * 9 + ["won"]
        assert (await _load(store, "fresh")).version == 1

    async def test_a_writer_killed_mid_save_fails_nobody_else_and_its_save_lands(
        self, store: StateStore
    ) -> None:
        first_saving = asyncio.Event()
        outcomes: dict[int, str] = {}

        async def writer(i: int) -> None:
            if i == 0:
                first_saving.set()  # no suspension between this and the save's queueing
            await store.save(f"w{i:02}", {"i": i}, None)
            outcomes[i] = "acked"

        pids = [spawn(writer, i) for i in range(20)]
        await first_saving.wait()
        await crash(pids[0])
        for pid in pids:
            await wait_exit(pid)
        assert all(outcomes[i] == "acked" for i in range(1, 20))
        if self.saves_outlive_their_caller:
            assert (await _load(store, "w00")).data == {"i": 0}  # queued before the kill
            assert len(await store.list("w")) == 20
        else:
            others = [f"w{i:02}" for i in range(1, 20)]
            assert await store.list("w") in (others, ["w00", *others])  # its own may be lost

    async def test_data_that_is_not_json_ready_fails_only_its_own_save(
        self, store: StateStore
    ) -> None:
        outcomes: dict[int, str] = {}

        async def writer(i: int) -> None:
            data: dict[str, Any] = {"i": i} if i != 3 else {"bad": {1, 2}}
            try:
                await store.save(f"j{i}", data, None)
                outcomes[i] = "acked"
            except PersistenceError:
                outcomes[i] = "refused"

        pids = [spawn(writer, i) for i in range(8)]
        for pid in pids:
            await wait_exit(pid)
        assert outcomes == {i: "refused" if i == 3 else "acked" for i in range(8)}
        assert await store.list("j") == [f"j{i}" for i in range(8) if i != 3]

    async def test_a_value_the_backend_cannot_store_fails_only_its_own_save(
        self, store: StateStore
    ) -> None:
        # Each backend may take or refuse these (PostgreSQL's jsonb refuses NaN and \u0000;
        # UTF-8 has no lone surrogates), but a refusal is that save's own, never its batch's,
        # and its message names the key.
        odd: dict[str, Any] = {
            "nul": {"s": "a\x00b"},
            "surrogate": {"s": "\ud800"},
            "nan": {"x": float("nan")},
        }
        outcomes: dict[str, str] = {}
        messages: dict[str, str] = {}

        async def writer(key: str) -> None:
            try:
                await store.save(key, odd.get(key, {"fine": key}), None)
                outcomes[key] = "acked"
            except PersistenceError as err:
                outcomes[key] = "refused"
                messages[key] = str(err)

        keys = ["a", "nul", "b", "surrogate", "c", "nan", "d"]
        pids = [spawn(writer, key) for key in keys]
        for pid in pids:
            await wait_exit(pid)
        assert {k: outcomes[k] for k in "abcd"} == dict.fromkeys("abcd", "acked")
        assert all(key in message for key, message in messages.items()), messages
        for key in keys:
            rec = await store.load(key)
            assert (rec is not None) == (outcomes[key] == "acked"), key
        if outcomes["nul"] == "acked":
            assert (await _load(store, "nul")).data == odd["nul"]

    async def test_large_payloads_round_trip(self, store: StateStore) -> None:
        data = {"text": "é" * 1_000_000, "items": [{"n": n, "s": str(n)} for n in range(10_000)]}
        assert await store.save("large", data, None) == 1
        assert (await _load(store, "large")).data == data

    async def test_records_are_durable_across_close_and_reopen(
        self, store: StateStore, new_store: Callable[[], StateStore]
    ) -> None:
        before = time.time()
        await store.save("kept", {"n": 1}, None, schema_version=4)
        await store.save("kept", {"n": 2}, 1, schema_version=4)
        await store.save("gone", {}, None)
        await store.delete("gone", 1)
        saved = await _load(store, "kept")
        assert before - 1 <= saved.updated_at <= time.time() + 1
        if not self.durable:
            return  # survives nothing by design
        await store.close()
        again = new_store()
        try:
            rec = await again.load("kept")
            assert rec == saved  # data, version, schema_version and updated_at, all kept
            assert await again.load("gone") is None
            assert await again.list("gone") == []
            assert await again.save("gone", {}, None) == 2  # its version survived the reopen
            assert await again.save("kept", {"n": 3}, 2, schema_version=4) == 3
        finally:
            await again.close()

    async def test_keys_must_be_non_empty_strings(self, store: StateStore) -> None:
        with pytest.raises(InvalidArgument):
            await store.save("", {}, None)
        with pytest.raises(InvalidArgument):
            await store.save(cast(Any, 5), {}, None)

    async def test_expected_versions_must_be_none_or_a_positive_int(
        self, store: StateStore
    ) -> None:
        """No record has a version below 1 (a deleted key's tombstone must not be a target)."""
        await store.save("v", {"n": 1}, None)
        await store.delete("v", 1)
        for bad in (0, -1, 1.0, "1"):
            with pytest.raises(InvalidArgument):
                await store.save("v", {"n": 2}, cast(Any, bad))
            with pytest.raises(InvalidArgument):
                await store.delete("v", cast(Any, bad))
        assert await store.load("v") is None
        assert await store.save("v", {"n": 2}, None) == 2

    async def test_close_is_idempotent_and_use_after_close_is_a_clear_error(
        self, store: StateStore
    ) -> None:
        await store.save("a", {}, None)
        await store.close()
        await store.close()
        if not self.refuses_use_after_close:
            return  # nothing to release
        with pytest.raises(PersistenceError, match="closed"):
            await store.load("a")
