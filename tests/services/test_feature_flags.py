"""FeatureFlags: strictly boolean, stable rollouts, stored, announced, unknown flags are errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from foundation import Runtime, Supervisor, call
from foundation.errors import InvalidArgument, PersistenceError, UnknownFlag
from foundation.persistence import MemoryStore, SQLiteStore
from foundation.services import FeatureFlags, SignalBus
from foundation.testing import assert_emitted, crash, restarted

from ._support import FailingStore, Inbox, in_fresh_runtime


async def start(runtime: Runtime) -> None:
    runtime.store = runtime.store or MemoryStore()
    await Supervisor.start_link([SignalBus.child_spec(name="signal_bus"),
                                 FeatureFlags.child_spec()])  # fmt: skip


async def test_3f10_a_ten_percent_rollout_is_not_fully_on(runtime: Runtime) -> None:
    await start(runtime)
    await FeatureFlags.define("new_ui", percentage=10)
    assert FeatureFlags.enabled("new_ui") is False  # the seed returned 10, a truthy value
    share = sum(FeatureFlags.enabled_for("new_ui", f"user-{i}") for i in range(10_000))
    assert 900 < share < 1100
    await FeatureFlags.set_percentage("new_ui", 99.9)
    assert FeatureFlags.enabled("new_ui") is False
    await FeatureFlags.set_percentage("new_ui", 100)
    assert FeatureFlags.enabled("new_ui") is True
    await FeatureFlags.set_percentage("new_ui", 0)
    assert FeatureFlags.enabled("new_ui") is False
    assert not any(FeatureFlags.enabled_for("new_ui", i) for i in range(1000))
    await FeatureFlags.define("dark", True)
    assert FeatureFlags.enabled("dark") is True
    assert FeatureFlags.enabled_for("dark", "anyone") is True


async def test_one_id_always_gets_the_same_answer_and_raising_a_rollout_only_adds_ids(
    runtime: Runtime,
) -> None:
    await start(runtime)
    await FeatureFlags.define("beta", percentage=30)
    first = {i for i in range(2000) if FeatureFlags.enabled_for("beta", i)}
    assert first == {i for i in range(2000) if FeatureFlags.enabled_for("beta", i)}

    # SHA-256 of "beta:<id>", the same in every process (Python's hash() is salted per process)
    def bucket(i: int) -> float:
        return int.from_bytes(hashlib.sha256(f"beta:{i}".encode()).digest()[:8], "big") / 2**64

    assert [FeatureFlags.enabled_for("beta", i) for i in range(50)] == [
        bucket(i) * 100 < 30 for i in range(50)
    ]
    await FeatureFlags.set_percentage("beta", 60)
    second = {i for i in range(2000) if FeatureFlags.enabled_for("beta", i)}
    assert first < second


async def test_flags_are_stored_announced_and_unknown_ones_are_errors(runtime: Runtime) -> None:
    await start(runtime)
    listener = await Inbox.start()
    await SignalBus.subscribe("signal_bus", "feature_flag.*", subscriber=listener)
    with assert_emitted(("foundation", "feature_flags", "changed"), lambda _, m: m["flag"] == "f"):
        await FeatureFlags.define("f", True)
    ((signal, _),) = await call(listener, "got")
    assert (signal.type, signal.data["flag"], signal.data["new"]["enabled"]) == (
        "feature_flag.changed", "f", True,
    )  # fmt: skip
    assert await runtime.store.load("flag/f") is not None  # type: ignore[union-attr]
    old = runtime.whereis("feature_flags")
    crash(old)  # type: ignore[arg-type]
    await restarted("feature_flags", old)
    assert FeatureFlags.enabled("f") is True  # reloaded from the store
    with pytest.raises(UnknownFlag, match="'nope'"):
        FeatureFlags.enabled("nope")
    with pytest.raises(UnknownFlag):
        FeatureFlags.enabled_for("nope", 1)
    with pytest.raises(UnknownFlag):
        await FeatureFlags.enable("nope")  # a typo never creates a flag
    await FeatureFlags.remove("f")
    with pytest.raises(UnknownFlag):
        FeatureFlags.enabled("f")
    assert FeatureFlags.all() == {}


async def test_bad_flag_definitions_are_clear_errors(runtime: Runtime) -> None:
    await start(runtime)
    with pytest.raises(InvalidArgument, match="percentage"):
        await FeatureFlags.define("bad", percentage=150)
    with pytest.raises(InvalidArgument, match="not both"):
        await FeatureFlags.define("bad", True, percentage=10)
    with pytest.raises(InvalidArgument, match="bool"):
        await FeatureFlags.define("bad", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="flag name"):
        await FeatureFlags.define("a/b")
    await FeatureFlags.define("ok")
    await FeatureFlags.enable("ok")
    assert FeatureFlags.enabled("ok") is True
    await FeatureFlags.disable("ok")
    assert FeatureFlags.enabled("ok") is False


async def test_without_a_service_flags_are_unknown(runtime: Runtime) -> None:
    with pytest.raises(UnknownFlag, match="no feature-flag service"):
        FeatureFlags.enabled("x")


def test_flags_survive_a_restart_of_the_whole_runtime(tmp_path: Path) -> None:
    path = tmp_path / "flags.db"

    async def first(rt: Runtime) -> None:
        await FeatureFlags.start_link()
        await FeatureFlags.define("checkout_v2", percentage=25)

    async def second(rt: Runtime) -> tuple[bool, float | None]:
        await FeatureFlags.start_link()
        return FeatureFlags.enabled("checkout_v2"), FeatureFlags.all()["checkout_v2"].percentage

    in_fresh_runtime(SQLiteStore(path), first)
    assert in_fresh_runtime(SQLiteStore(path), second) == (False, 25)


async def test_a_change_the_store_refused_is_an_error_and_changes_nothing(
    runtime: Runtime,
) -> None:
    store = runtime.store = FailingStore()
    await start(runtime)
    await FeatureFlags.define("f", True)
    pid = runtime.whereis("feature_flags")
    store.fail_saves = 1
    with pytest.raises(PersistenceError):
        await FeatureFlags.disable("f")
    assert FeatureFlags.enabled("f") is True  # what is served is what is stored
    assert runtime.whereis("feature_flags") == pid  # the service did not crash
    await FeatureFlags.disable("f")
    assert FeatureFlags.enabled("f") is False
