"""PersistentServer: acknowledged means durable; restarts come back with all of the state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, Field

from foundation import (
    GenServer,
    NoReply,
    Reply,
    Runtime,
    Stop,
    Supervisor,
    call,
    cast,
    exit,
    is_alive,
    reply,
    spawn,
)
from foundation.errors import (
    InitError,
    InvalidArgument,
    PersistenceError,
    ProcessExited,
    StaleVersion,
    StateCorrupt,
)
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.persistence import MemoryStore, PersistentServer
from foundation.testing import crash, restarted, wait_until
from tests.persistence._support import Account


class GatedStore(MemoryStore):
    """A MemoryStore whose saves wait for the test to open a gate, to see what happens first.

    (``save`` and persistent servers both go through ``save_json``.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Future[None] | None = None
        self.waiting = 0
        self.entered = asyncio.Event()
        self.fail_with: Exception | None = None

    async def save_json(self, key: str, text: str, expected_version: int | None, **kw: Any) -> int:
        if self.gate is not None:
            self.waiting += 1
            self.entered.set()
            await self.gate
            self.waiting -= 1
        if self.fail_with is not None:
            raise self.fail_with
        return await super().save_json(key, text, expected_version, **kw)


class GatedCallbackStore(GatedStore):
    """A GatedStore that also tells saves by callback (``save_json_then``), as the SQLite and
    PostgreSQL stores do: persistent servers then reply from the store's answer, not from a
    handler awaiting it. Answers come in a later loop pass, as from a real commit."""

    def save_json_then(
        self, key: str, text: str, expected: int | None, schema_version: int, then: Any
    ) -> None:
        def settle() -> None:
            if self.fail_with is not None:
                then(None, self.fail_with)
                return
            try:
                version = self._put(key, text, expected, schema_version)
            except StaleVersion as err:
                then(None, err)
            else:
                then(version, None)

        loop = asyncio.get_running_loop()
        if self.gate is None:
            loop.call_soon(settle)
            return
        self.waiting += 1
        self.entered.set()

        def opened(_: object) -> None:
            self.waiting -= 1
            settle()

        self.gate.add_done_callback(opened)

    def _put(self, key: str, text: str, expected: int | None, schema_version: int) -> int:
        current = self._records.get(key)
        actual = current[1] if current is not None else None
        if actual != expected:
            raise StaleVersion("stale", key=key, expected=expected, actual=actual)
        self._records[key] = (text, (actual or 0) + 1, schema_version, 0.0)
        self.saves += 1
        return (actual or 0) + 1


@pytest.fixture(params=["awaited", "callback"])
def store(request: pytest.FixtureRequest, runtime: Runtime) -> GatedStore:
    s = GatedStore() if request.param == "awaited" else GatedCallbackStore()
    runtime.store = s
    return s


async def test_a_call_is_answered_only_after_its_new_state_is_durable(
    runtime: Runtime, store: GatedStore
) -> None:
    await Account.start(key="acct-1", name="acct-1")
    store.gate = runtime.loop.create_future()
    answers: list[int] = []

    async def caller() -> None:
        answers.append(await call("acct-1", 5))

    pid = spawn(caller)
    await store.entered.wait()
    assert answers == []  # the save is in flight: no acknowledgement yet
    assert (await store.load("acct-1")).data["balance"] == 0  # type: ignore[union-attr]
    store.gate.set_result(None)
    await wait_exit(pid)
    assert answers == [5]
    stored = await store.load("acct-1")
    assert stored is not None
    assert stored.data == {"balance": 5, "history": [5]}


async def test_a_caller_whose_server_is_killed_mid_save_hears_the_truth_about_its_change(
    runtime: Runtime, store: GatedStore
) -> None:
    """Killed while its save is in flight, the server cannot answer: a save the store owns
    (callback) still lands and its caller hears success; a save the killed handler awaited
    never happens and its caller gets ProcessExited. Never a success for a change not made."""
    pid = await Account.start(key="acct-1", name="acct-1")
    store.gate = runtime.loop.create_future()
    outcome: list[object] = []

    async def caller() -> None:
        try:
            outcome.append(await call("acct-1", 5))
        except ProcessExited as exc:
            outcome.append(exc)

    c = spawn(caller)
    await store.entered.wait()
    exit(pid, "kill")
    await wait_exit(pid)
    if not store.gate.done():  # a killed handler awaiting it cancelled it
        store.gate.set_result(None)
    await wait_exit(c)
    stored = await store.load("acct-1")
    assert stored is not None
    if isinstance(store, GatedCallbackStore):
        assert outcome == [5] and stored.data["balance"] == 5
    else:
        assert isinstance(outcome[0], ProcessExited) and stored.data["balance"] == 0


async def test_a_cast_is_durable_before_the_next_message_is_taken(
    runtime: Runtime, store: GatedStore
) -> None:
    await Account.start(key="acct-1", name="acct-1")
    cast("acct-1", 3)
    assert await call("acct-1", "get") == 3
    stored = await store.load("acct-1")
    assert stored is not None
    assert stored.data["balance"] == 3
    assert stored.version == 2  # the initial state, then the cast


async def test_no_message_is_taken_while_a_cast_s_save_is_in_flight(
    runtime: Runtime, store: GatedStore
) -> None:
    await Account.start(key="acct-1", name="acct-1")
    other = await Account.start(key="other")
    store.gate = runtime.loop.create_future()
    cast("acct-1", 3)
    await store.entered.wait()
    answers: list[int] = []

    async def caller() -> None:
        answers.append(await call("acct-1", "get"))

    pid = spawn(caller)
    for _ in range(5):  # the loop goes round; the server must not take the call yet
        await call(other, "get")
    assert answers == []
    assert store.waiting == 1  # the cast's save alone: the call was not taken
    store.gate.set_result(None)
    await wait_exit(pid)
    assert answers == [3]
    assert (await store.load("acct-1")).data["balance"] == 3  # type: ignore[union-attr]


async def test_a_stop_waits_for_the_save_in_flight_and_exits_with_it_durable(
    runtime: Runtime, store: GatedStore
) -> None:
    pid = await Account.start(key="acct-1")
    other = await Account.start(key="other")
    store.gate = runtime.loop.create_future()
    cast(pid, 3)
    await store.entered.wait()

    async def stopper() -> None:
        await GenServer.stop(pid)

    s = spawn(stopper)
    for _ in range(5):  # the loop goes round; the server must not exit before its save
        await call(other, "get")
    assert is_alive(pid)
    store.gate.set_result(None)
    await wait_exit(s)
    assert not is_alive(pid)
    assert (await store.load("acct-1")).data["balance"] == 3  # type: ignore[union-attr]


async def test_initial_state_is_saved_before_start_returns(
    runtime: Runtime, store: GatedStore
) -> None:
    await Account.start(key="fresh")
    stored = await store.load("fresh")
    assert stored is not None
    assert (stored.data, stored.version, stored.schema_version) == (
        {"balance": 0, "history": []},
        1,
        1,
    )


async def test_an_unchanged_state_is_not_saved_again(runtime: Runtime, store: GatedStore) -> None:
    await Account.start(key="acct-1", name="acct-1")
    before = store.saves
    for _ in range(5):
        await call("acct-1", "get")
    assert store.saves == before


async def test_a_crashed_server_is_restarted_with_its_last_acknowledged_state(
    runtime: Runtime, store: GatedStore
) -> None:
    await Supervisor.start_link([Account.child_spec(key="acct-1", name="acct-1")])
    for amount in (5, 7, -2):
        await call("acct-1", amount)
    old = runtime.whereis("acct-1")
    assert old is not None
    crash(old)
    await restarted("acct-1", old)
    assert await call("acct-1", "get") == 10
    state = (await store.load("acct-1")).data  # type: ignore[union-attr]
    assert state["history"] == [5, 7, -2]


async def test_stored_state_missing_new_fields_loads_with_defaults_for_them(
    runtime: Runtime, store: GatedStore
) -> None:
    await store.save("old", {"balance": 42}, None)
    await Account.start(key="old", name="old")
    assert await call("old", 1) == 43
    stored = await store.load("old")
    assert stored is not None
    assert stored.data == {"balance": 43, "history": [1]}


class AccountV2(PersistentServer):
    """Version 2 renamed ``bal`` to ``balance``."""

    schema_version = 2

    class State(BaseModel):
        balance: int = 0

    def migrate(self, from_version: int, data: dict[str, Any]) -> dict[str, Any]:
        assert from_version == 1
        return {"balance": data["bal"]}

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        return Reply(state.balance, state)


async def test_older_stored_data_is_migrated_and_saved_in_the_new_shape(
    runtime: Runtime, store: GatedStore
) -> None:
    await store.save("acct", {"bal": 9}, None, schema_version=1)
    await AccountV2.start(key="acct", name="acct")
    assert await call("acct", "get") == 9
    stored = await store.load("acct")
    assert stored is not None
    assert (stored.data, stored.schema_version) == ({"balance": 9}, 2)


async def test_data_from_a_newer_schema_version_is_refused_and_left_alone(
    runtime: Runtime, store: GatedStore
) -> None:
    await store.save("acct", {"balance": 1}, None, schema_version=3)
    with pytest.raises(InitError) as info:
        await AccountV2.start(key="acct")
    assert isinstance(info.value.reason, StateCorrupt)
    assert "schema version 3" in str(info.value.reason)
    assert (await store.load("acct")).version == 1  # type: ignore[union-attr]


async def test_corrupt_stored_state_is_a_clear_error_naming_key_and_fields_and_is_kept(
    runtime: Runtime, store: GatedStore
) -> None:
    await store.save("bad", {"balance": "lots", "history": [1, "x"]}, None)
    with pytest.raises(InitError) as info:
        await Account.start(key="bad")
    err = info.value.reason
    assert isinstance(err, StateCorrupt)
    assert err.context["key"] == "bad"
    assert set(err.context["fields"]) == {"balance", "history.1"}
    stored = await store.load("bad")
    assert stored is not None
    assert stored.data == {"balance": "lots", "history": [1, "x"]}  # never overwritten


async def test_the_stale_copy_of_two_servers_on_one_key_fails_with_stale_version(
    runtime: Runtime, store: GatedStore
) -> None:
    a = await Account.start(key="shared")
    b = await Account.start(key="shared")
    assert await call(a, 1) == 1
    with pytest.raises(StaleVersion):
        await call(b, 100)
    await wait_until(lambda: not runtime.is_alive(b))
    assert (await store.load("shared")).data["balance"] == 1  # type: ignore[union-attr]


async def test_a_failed_save_gives_the_caller_a_persistence_error_and_crashes_the_server(
    runtime: Runtime, store: GatedStore
) -> None:
    await Supervisor.start_link([Account.child_spec(key="acct-1", name="acct-1")])
    await call("acct-1", 5)
    old = runtime.whereis("acct-1")
    assert old is not None
    store.fail_with = OSError("disk full")
    with pytest.raises(PersistenceError, match="disk full"):
        await call("acct-1", 10)
    store.fail_with = None
    await restarted("acct-1", old)
    assert await call("acct-1", "get") == 5  # the unacknowledged change is not there


class Deferred(PersistentServer):
    """Defers each call's answer until a cast says so, changing state in that cast."""

    class State(BaseModel):
        calls: int = 0
        done: int = 0

    waiting: From | None = None

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        self.waiting = caller
        return NoReply(state.model_copy(update={"calls": state.calls + 1}))

    async def handle_cast(self, request: Any, state: State) -> Any:
        assert self.waiting is not None
        reply(self.waiting, state.done + 1)
        return state.model_copy(update={"done": state.done + 1})


async def test_a_deferred_reply_waits_for_the_state_of_the_handler_that_sent_it(
    runtime: Runtime, store: GatedStore
) -> None:
    await Deferred.start(key="d", name="d")
    answers: list[int] = []

    async def caller() -> None:
        answers.append(await call("d", "go"))

    pid = spawn(caller)
    await wait_until(lambda: store.saves == 2)  # the initial state, then the call's
    store.gate = runtime.loop.create_future()
    cast("d", "finish")
    await store.entered.wait()
    assert answers == []
    store.gate.set_result(None)
    await wait_exit(pid)
    assert answers == [1]


class Stopper(PersistentServer):
    class State(BaseModel):
        n: int = 0

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        return Stop("normal", state.model_copy(update={"n": 7}), reply="bye")


async def test_a_stop_with_a_reply_saves_the_final_state_first(
    runtime: Runtime, store: GatedStore
) -> None:
    pid = await Stopper.start(key="s")
    assert await call(pid, "stop") == "bye"
    assert (await store.load("s")).data == {"n": 7}  # type: ignore[union-attr]


async def test_without_a_store_start_fails_with_a_clear_error(runtime: Runtime) -> None:
    with pytest.raises(InitError) as info:
        await Account.start(key="k")
    assert isinstance(info.value.reason, PersistenceError)
    assert "no state store" in str(info.value.reason)


async def test_a_key_is_required(runtime: Runtime) -> None:
    with pytest.raises(InvalidArgument, match="needs a key"):
        await Account.start()


@pytest.mark.foundation(store="memory://")
async def test_the_runtime_store_can_be_given_as_a_url(runtime: Runtime) -> None:
    await Account.start(key="u", name="u")
    assert await call("u", 2) == 2
    assert isinstance(runtime.store, MemoryStore)


class Loose(PersistentServer):
    """Puts whatever it is called with in an ``Any`` field, or a ``None`` in a dict field."""

    class State(BaseModel):
        value: Any = None
        bag: dict[str, int] = {}

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        field, value = request
        return Reply("ok", state.model_copy(update={field: value}))


class LooseUnverified(Loose):
    verify_saves = False


@pytest.mark.parametrize("cls", [Loose, LooseUnverified], ids=["verified", "unverified"])
async def test_a_field_of_the_wrong_type_is_never_acknowledged(
    runtime: Runtime, store: GatedStore, cls: type[Loose]
) -> None:
    await Supervisor.start_link([cls.child_spec(key="l", name="l")])
    assert await call("l", ("value", [1, 2])) == "ok"
    old = runtime.whereis("l")
    with pytest.raises(PersistenceError, match="not saved"):
        await call("l", ("bag", {"a": "not an int"}))
    await restarted("l", old)
    stored = await store.load("l")
    assert stored is not None and stored.data == {"value": [1, 2], "bag": {}}


async def test_a_value_json_would_change_is_refused_unless_unverified(
    runtime: Runtime, store: GatedStore
) -> None:
    await Supervisor.start_link(
        [Loose.child_spec(key="v", name="v"), LooseUnverified.child_spec(key="u", name="u")]
    )
    old = runtime.whereis("v")
    with pytest.raises(PersistenceError, match=r"\['value'\] would load back different"):
        await call("v", ("value", (1, 2)))  # a tuple comes back from JSON as a list
    await restarted("v", old)
    assert await store.load("v") is not None
    assert (await store.load("v")).data["value"] is None  # type: ignore[union-attr]
    assert await call("u", ("value", (1, 2))) == "ok"  # unverified: saved as a list
    assert (await store.load("u")).data["value"] == [1, 2]  # type: ignore[union-attr]


class WithCache(PersistentServer):
    """Keeps a field out of its saved JSON (``exclude=True``): not saved, so not compared."""

    class State(BaseModel):
        n: int = 0
        cache: dict[str, int] = Field(default_factory=dict, exclude=True)

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        new = state.model_copy(update={"n": state.n + 1, "cache": {"last": request}})
        return Reply(new.n, new)


async def test_a_field_excluded_from_the_json_is_neither_saved_nor_checked(
    runtime: Runtime, store: GatedStore
) -> None:
    await WithCache.start(key="w", name="w")
    assert await call("w", 5) == 1
    assert await call("w", 6) == 2
    assert (await store.load("w")).data == {"n": 2}  # type: ignore[union-attr]
