"""FaultyStore: a store that fails never turns into a lost or a falsely acknowledged change.

Each scenario runs on a MemoryStore (persistent servers save through ``save_json``, awaited)
and on a SQLiteStore (they save through ``save_json_then``, answered by callback), the two
paths a server takes.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation import Runtime, Supervisor, call
from foundation.errors import InitError, InvalidArgument, PersistenceError, ProcessExited
from foundation.kernel.api import wait_exit
from foundation.kernel.context import RUNTIME
from foundation.kernel.pid import Pid
from foundation.persistence import MemoryStore, SQLiteStore, StateStore
from foundation.testing import FaultyStore, VirtualClock, VirtualTimeLoop, crash, restarted
from foundation.testing.faults import FAULTS, _FaultyCallbackStore
from tests.persistence._support import Account

BACKENDS = ("memory", "sqlite")
KEY = "acct"


def make_inner(backend: str, directory: Path) -> StateStore:
    return MemoryStore() if backend == "memory" else SQLiteStore(directory / "state.db")


async def stored(store: FaultyStore) -> dict[str, Any] | None:
    """What the inner store holds for the account (read around the faults)."""
    record = await store.inner.load(KEY)
    return None if record is None else record.data


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the wrapper itself ------------------------------------------------------------------------


async def test_the_nth_call_of_an_operation_fails_with_the_condition_s_message(
    runtime: Runtime,
) -> None:
    store = FaultyStore(MemoryStore(), fail={"save": {2: "full", 3: "ioerr"}, "load": {1}})
    with pytest.raises(PersistenceError, match="SQLITE_BUSY: database is locked") as info:
        await store.load("k")
    assert info.value.retryable is True
    assert info.value.context["fault"] == "busy"
    assert await store.save("k", {"n": 1}, None) == 1
    with pytest.raises(PersistenceError, match="SQLITE_FULL: database or disk is full"):
        await store.save("k", {"n": 2}, 1)
    with pytest.raises(PersistenceError, match="SQLITE_IOERR: disk I/O error"):
        await store.save_json("k", '{"n": 3}', 1)
    assert await store.save_json("k", '{"n": 4}', 1) == 2
    loaded = await store.load("k")
    assert loaded is not None and loaded.data == {"n": 4}  # the failed saves never landed
    assert store.calls == {"save": 4, "load": 2}
    assert store.failures == {"save": 2, "load": 1}


async def test_a_save_failed_after_write_lands_but_answers_with_the_error(
    runtime: Runtime,
) -> None:
    store = FaultyStore(MemoryStore(), fail_after_write={1}, error="ioerr")
    with pytest.raises(PersistenceError, match="answer lost") as info:
        await store.save("k", {"n": 1}, None)
    assert info.value.context["landed"] is True
    loaded = await store.load("k")
    assert loaded is not None and (loaded.data, loaded.version) == ({"n": 1}, 1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown operation"):
        FaultyStore(MemoryStore(), fail={"commit": {1}})
    with pytest.raises(InvalidArgument, match="unknown fault"):
        FaultyStore(MemoryStore(), error="gone")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="unknown fault"):
        FaultyStore(MemoryStore(), fail={"save": {1: "gone"}})  # type: ignore[dict-item]


def test_the_callback_path_is_offered_only_when_the_inner_store_has_it(tmp_path: Path) -> None:
    assert not hasattr(FaultyStore(MemoryStore()), "save_json_then")
    faulty = FaultyStore(SQLiteStore(tmp_path / "s.db"))
    assert isinstance(faulty, _FaultyCallbackStore)
    assert not hasattr(faulty, "save_json_nowait")


# -- persistent servers over it ----------------------------------------------------------------


async def test_a_failing_load_at_start_is_an_init_error_with_the_persistence_error(
    runtime: Runtime, backend: str, tmp_path: Path
) -> None:
    store = FaultyStore(make_inner(backend, tmp_path), fail={"load": {1}}, error="ioerr")
    runtime.store = store
    with pytest.raises(InitError) as info:
        await Account.start(key=KEY)
    assert isinstance(info.value.reason, PersistenceError)
    assert "disk I/O error" in str(info.value.reason)
    assert await stored(store) is None  # init never ran: nothing was saved
    pid = await Account.start(key=KEY, name=KEY)  # load #2 succeeds
    assert await call(pid, 3) == 3
    assert store.calls["load"] == 2 and store.failures["load"] == 1


async def test_a_supervisor_retries_a_failing_load_within_its_intensity(
    runtime: Runtime, backend: str, tmp_path: Path
) -> None:
    store = FaultyStore(make_inner(backend, tmp_path))
    runtime.store = store
    await Supervisor.start_link(
        [Account.child_spec(key=KEY, name=KEY)], max_restarts=3, max_seconds=5
    )
    assert await call(KEY, 7) == 7
    old = runtime.whereis(KEY)
    store.fail["load"] = {2: "busy", 3: "ioerr"}  # the next two starts fail to load
    await crash(old)
    await restarted(KEY, old)  # the third attempt (1 crash + 2 retries = 3 restarts)
    assert store.calls["load"] == 4 and store.failures["load"] == 2
    assert await call(KEY, 1) == 8  # with the state it had


async def test_a_supervisor_gives_up_on_loads_failing_past_its_intensity(
    runtime: Runtime, backend: str, tmp_path: Path
) -> None:
    store = FaultyStore(make_inner(backend, tmp_path))
    runtime.store = store
    sup = await Supervisor.start([Account.child_spec(key=KEY, name=KEY)], max_restarts=3)
    assert await call(KEY, 7) == 7
    store.fail["load"] = dict.fromkeys(range(2, 100), "full")
    await crash(runtime.whereis(KEY))
    assert await wait_exit(sup) == "shutdown"
    assert store.failures["load"] == 3  # the crash and two retries; the fourth is one too many
    assert await stored(store) == {"balance": 7, "history": [7]}


async def test_a_failed_save_is_an_error_to_the_caller_and_never_lands(
    runtime: Runtime, backend: str, tmp_path: Path
) -> None:
    store = FaultyStore(make_inner(backend, tmp_path), fail={"save": {3}}, error="full")
    runtime.store = store
    await Supervisor.start_link([Account.child_spec(key=KEY, name=KEY)])  # save #1: init
    assert await call(KEY, 5) == 5  # save #2
    old = runtime.whereis(KEY)
    with pytest.raises(PersistenceError, match="database or disk is full"):
        await call(KEY, 10)  # save #3
    await restarted(KEY, old)
    assert await stored(store) == {"balance": 5, "history": [5]}
    assert await call(KEY, 1) == 6


async def test_a_save_whose_answer_is_lost_is_an_error_and_the_restart_holds_it(
    runtime: Runtime, backend: str, tmp_path: Path
) -> None:
    """The commit happened, its answer was lost: the caller sees an error (never a success it
    could not trust), the server crashes, and its restart loads the change that did land."""
    store = FaultyStore(make_inner(backend, tmp_path), fail_after_write={3}, error="ioerr")
    runtime.store = store
    await Supervisor.start_link([Account.child_spec(key=KEY, name=KEY)])
    assert await call(KEY, 5) == 5
    old = runtime.whereis(KEY)
    with pytest.raises(PersistenceError, match="answer lost"):
        await call(KEY, 10)
    assert await stored(store) == {"balance": 15, "history": [5, 10]}
    await restarted(KEY, old)
    assert await call(KEY, "get") == 15
    assert await call(KEY, 1) == 16  # goes on from the landed change, no StaleVersion
    assert await stored(store) == {"balance": 16, "history": [5, 10, 1]}


# -- the property ------------------------------------------------------------------------------


def run_on_virtual_time(store_of: Any, scenario: Any) -> None:
    """Run ``scenario(store)`` on a fresh runtime on a virtual clock; fail on a leaked task."""
    with tempfile.TemporaryDirectory() as directory:
        store = store_of(Path(directory))
        loop = VirtualTimeLoop()
        rt = Runtime(clock=VirtualClock(), store=store)

        def run(coro: Coroutine[Any, Any, Any]) -> Any:
            async def main() -> Any:
                RUNTIME.set(rt)
                return await coro

            return loop.run_until_complete(main())

        async def start() -> None:
            rt.start()

        async def stop() -> list[str]:
            await rt.shutdown()
            me = asyncio.current_task()
            return [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]

        try:
            run(start())
            try:
                run(scenario(store))
            finally:
                leaked = run(stop())
            assert leaked == [], f"leaked tasks: {leaked}"
        finally:
            loop.close()


calls_and_faults = st.lists(
    st.tuples(st.integers(-50, 50), st.none() | st.sampled_from(sorted(FAULTS))),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=calls_and_faults)
def test_property_only_acknowledged_changes_are_stored_and_the_server_always_comes_back(
    backend: str, steps: list[tuple[int, str | None]]
) -> None:
    # Save n is the n-th call's: the server starts from a stored record (no save at init), the
    # seed goes to the inner store directly, and a failed save's state is never saved again.
    fail = {n: kind for n, (_, kind) in enumerate(steps, start=1) if kind is not None}

    def store_of(directory: Path) -> FaultyStore:
        return FaultyStore(make_inner(backend, directory), fail={"save": fail})  # type: ignore[dict-item]

    async def scenario(store: FaultyStore) -> None:
        await store.inner.save(KEY, {"balance": 0, "history": []}, None)
        await Supervisor.start_link(
            [Account.child_spec(key=KEY, name=KEY)], max_restarts=100, max_seconds=1
        )
        acknowledged: list[int] = []
        for n, (amount, kind) in enumerate(steps, start=1):
            old: Pid | None = current_pid(KEY)
            outcome = await attempt(amount)
            if isinstance(outcome, int):
                assert kind is None, f"call {n} succeeded though its save failed ({kind})"
                acknowledged.append(amount)
                assert outcome == sum(acknowledged)
            else:
                assert kind is not None, f"call {n} failed without an injected fault: {outcome!r}"
                if isinstance(outcome, PersistenceError):
                    assert FAULTS[kind][1] in outcome.message
                await restarted(KEY, old)  # its supervisor brings it back, same key
            assert await stored(store) == {"balance": sum(acknowledged), "history": acknowledged}
        assert await call(KEY, "get", timeout=5.0) == sum(acknowledged)  # and serves
        assert store.failures["save"] == len(fail)

    run_on_virtual_time(store_of, scenario)


async def attempt(amount: int) -> int | PersistenceError | ProcessExited:
    """The call's answer or its error; any other outcome (``CallTimeout``...) fails the test."""
    try:
        balance: int = await call(KEY, amount, timeout=5.0)
    except (PersistenceError, ProcessExited) as exc:
        return exc
    return balance


def current_pid(name: str) -> Pid | None:
    rt = RUNTIME.get()
    assert rt is not None
    return rt.whereis(name)
