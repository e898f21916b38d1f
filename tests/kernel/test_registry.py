"""Registry: unique and duplicate keys, indexed metadata, monitors, via names, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from foundation import (
    GenServer,
    Registry,
    Reply,
    Runtime,
    Supervisor,
    call,
    cast,
    exit,
    is_alive,
    receive,
    send,
    spawn,
)
from foundation.errors import (
    AlreadyRegistered,
    AlreadyStarted,
    FoundationError,
    InitError,
    InvalidArgument,
    NoProcess,
    NotInProcess,
    ProcessExited,
)
from foundation.kernel.api import wait_exit
from foundation.kernel.context import current_runtime
from foundation.kernel.pid import Pid
from foundation.testing import crash, get_state, sync, wait_until


class Owner(GenServer):
    """Does registry operations from its own process, on request; remembers casts."""

    async def init(self, args: Any) -> list[Any]:
        return []

    async def handle_call(self, request: Any, caller: Any, state: list[Any]) -> Any:
        if request == "raise":
            raise RuntimeError("owner crashed")
        op, *args = request
        try:
            result = await getattr(Registry, op)(*args)
        except FoundationError as err:
            return Reply(err, state)
        return Reply(result, state)

    async def handle_cast(self, request: Any, state: list[Any]) -> Any:
        return [*state, request]


class Counter(GenServer):
    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state, state)

    async def handle_cast(self, request: int, state: int) -> int:
        return state + request


async def do(owner: Pid, op: str, *args: Any) -> Any:
    """Run ``Registry.<op>(*args)`` inside ``owner``; raise what it raised."""
    result = await call(owner, (op, *args))
    if isinstance(result, FoundationError):
        raise result
    return result


def tables(reg: Pid) -> Any:
    proc = current_runtime().resolve(reg)
    assert proc is not None
    return proc.server._t


def monitors(runtime: Runtime, pid: Pid) -> tuple[tuple[Pid, ...], tuple[Pid, ...]]:
    """(the pids ``pid`` monitors, the pids monitoring it)."""
    info = next(i for i in runtime.processes() if i.pid is pid)
    return info.monitors, info.monitored_by


async def holder(reg: Any, entries: list[tuple[Any, Any]]) -> None:
    """A plain process: registers ``entries`` then waits for one message (``crash`` raises)."""
    for key, meta in entries:
        await Registry.register(reg, key, meta)
    if await receive() == "crash":
        raise RuntimeError("holder crashed")


# -- keys -----------------------------------------------------------------------------------------


async def test_unique_registry_lookup_returns_the_registered_process_and_its_metadata(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(keys="unique", name="reg")
    owner = await Owner.start(None)
    await do(owner, "register", "reg", "alice", {"role": "admin"})
    assert Registry.lookup("reg", "alice") == [(owner, {"role": "admin"})]
    assert Registry.lookup(reg, "bob") == []
    assert Registry.whereis_name(reg, "alice") is owner
    assert Registry.whereis_name(reg, "bob") is None


async def test_duplicate_registry_lists_every_process_under_a_key_in_register_order(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(keys="duplicate")
    owners = [await Owner.start(None) for _ in range(3)]
    for i, owner in enumerate(owners):
        await do(owner, "register", reg, "topic", i)
    assert Registry.lookup(reg, "topic") == [(owners[0], 0), (owners[1], 1), (owners[2], 2)]
    assert Registry.count(reg) == 3
    with pytest.raises(AlreadyRegistered):
        await do(owners[0], "register", reg, "topic", "again")
    assert Registry.count(reg) == 3


async def test_a_unique_key_held_by_a_live_process_raises_already_registered(
    runtime: Runtime,
) -> None:
    reg = await Registry.start()
    first, second = await Owner.start(None), await Owner.start(None)
    await do(first, "register", reg, "k", 1)
    with pytest.raises(AlreadyRegistered) as err:
        await do(second, "register", reg, "k", 2)
    assert err.value.code == "already_registered"
    assert err.value.context["pid"] is first
    with pytest.raises(AlreadyRegistered):
        await do(first, "register", reg, "k", 3)
    assert Registry.lookup(reg, "k") == [(first, 1)]


async def test_a_genserver_registers_itself_in_init(runtime: Runtime) -> None:
    class Agent(GenServer):
        async def init(self, args: Any) -> Any:
            await Registry.register("agents", args, {"capability": ["search"]})
            return args

    await Registry.start(name="agents", index=["capability"])
    pid = await Agent.start("a1")
    assert Registry.lookup("agents", "a1") == [(pid, {"capability": ["search"]})]
    assert Registry.select("agents", capability="search") == [
        ("a1", pid, {"capability": ["search"]})
    ]


async def test_a_plain_process_registers_itself(runtime: Runtime) -> None:
    reg = await Registry.start()
    pid = spawn(holder, reg, [("worker", None)])
    await wait_until(lambda: Registry.lookup(reg, "worker"))
    assert Registry.whereis_name(reg, "worker") is pid


async def test_registering_from_outside_a_process_raises_not_in_process(
    runtime: Runtime,
) -> None:
    reg = await Registry.start()
    with pytest.raises(NotInProcess, match="inside the process") as err:
        await Registry.register(reg, "k", None)
    assert isinstance(err.value, FoundationError)
    with pytest.raises(NotInProcess):
        await Registry.unregister(reg, "k")
    with pytest.raises(NotInProcess):
        await Registry.update_metadata(reg, "k", None)
    assert Registry.count(reg) == 0


async def test_a_raw_call_without_a_calling_process_is_refused_by_the_registry(
    runtime: Runtime,
) -> None:
    reg = await Registry.start()
    failed = await call(reg, ("register", "k", None))
    with pytest.raises(NotInProcess):
        raise failed.error
    bad = await call(reg, ("nonsense",))
    assert isinstance(bad.error, InvalidArgument)
    assert is_alive(reg)


# -- reads ----------------------------------------------------------------------------------------


async def test_lookup_count_keys_and_dispatch(runtime: Runtime) -> None:
    reg = await Registry.start(keys="duplicate")
    a, b = await Owner.start(None), await Owner.start(None)
    await do(a, "register", reg, "news", "a-meta")
    await do(a, "register", reg, "sport", None)
    await do(b, "register", reg, "news", "b-meta")
    assert Registry.count(reg) == 3
    assert Registry.keys(reg, a) == ["news", "sport"]
    assert Registry.keys(reg, b) == ["news"]

    seen: list[list[tuple[Pid, Any]]] = []

    def deliver(entries: list[tuple[Pid, Any]]) -> None:
        seen.append(entries)
        for pid, meta in entries:
            cast(pid, ("news", meta))

    assert Registry.dispatch(reg, "news", deliver) is True
    assert seen == [[(a, "a-meta"), (b, "b-meta")]]
    assert await get_state(a) == [("news", "a-meta")]
    assert await get_state(b) == [("news", "b-meta")]
    assert Registry.dispatch(reg, "weather", deliver) is False
    assert len(seen) == 1
    with pytest.raises(InvalidArgument):
        Registry.dispatch(reg, "news", "not callable")  # type: ignore[arg-type]


async def test_select_intersects_several_indexed_fields(runtime: Runtime) -> None:
    reg = await Registry.start(index=["capability", "health"])
    metas = {
        "a": {"capability": "search", "health": "ok"},
        "b": {"capability": "search", "health": "degraded"},
        "c": {"capability": "write", "health": "ok"},
    }
    owners = {}
    for key, meta in metas.items():
        owners[key] = await Owner.start(None)
        await do(owners[key], "register", reg, key, meta)
    assert Registry.select(reg, capability="search", health="ok") == [
        ("a", owners["a"], metas["a"])
    ]
    assert [k for k, _, _ in Registry.select(reg, health="ok")] == ["a", "c"]
    assert Registry.select(reg, capability="write", health="degraded") == []
    assert Registry.select(reg, capability="paint") == []
    assert [k for k, _, _ in Registry.select(reg)] == ["a", "b", "c"]
    assert Registry.count(reg, capability="search") == 2


async def test_select_matches_each_element_of_a_list_valued_field(runtime: Runtime) -> None:
    reg = await Registry.start(index=["capability"])
    a, b = await Owner.start(None), await Owner.start(None)
    await do(a, "register", reg, "a", {"capability": ["search", "summarise"]})
    await do(b, "register", reg, "b", {"capability": ("summarise", "translate")})
    assert [k for k, _, _ in Registry.select(reg, capability="search")] == ["a"]
    assert [k for k, _, _ in Registry.select(reg, capability="summarise")] == ["a", "b"]
    assert [k for k, _, _ in Registry.select(reg, capability="translate")] == ["b"]
    assert sorted(tables(reg).index["capability"]) == ["search", "summarise", "translate"]


async def test_select_answers_from_the_index_without_scanning_entries(runtime: Runtime) -> None:
    reg = await Registry.start(index=["capability"])
    a = await Owner.start(None)
    for i in range(50):
        await do(a, "register", reg, i, {"capability": "common" if i else "rare"})
    t = tables(reg)
    t.entries.clear()  # if select scanned the entries it would now find nothing
    assert [k for k, _, _ in Registry.select(reg, capability="rare")] == [0]
    assert len(t.index["capability"]["common"]) == 49


async def test_select_on_an_unindexed_field_raises_invalid_argument_naming_it(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(index=["capability"])
    with pytest.raises(InvalidArgument, match="'region'") as err:
        Registry.select(reg, capability="search", region="eu")
    assert err.value.context["field"] == "region"
    with pytest.raises(InvalidArgument, match="'region'"):
        Registry.count(reg, region="eu")


async def test_update_metadata_reindexes_the_entry(runtime: Runtime) -> None:
    reg = await Registry.start(index=["health"])
    owner = await Owner.start(None)
    await do(owner, "register", reg, "svc", {"health": "ok"})
    await do(owner, "update_metadata", reg, "svc", {"health": "degraded"})
    assert Registry.select(reg, health="ok") == []
    assert Registry.select(reg, health="degraded") == [("svc", owner, {"health": "degraded"})]
    assert Registry.lookup(reg, "svc") == [(owner, {"health": "degraded"})]
    assert list(tables(reg).index["health"]) == ["degraded"]
    with pytest.raises(InvalidArgument, match="not registered"):
        await do(owner, "update_metadata", reg, "other", {})


async def test_metadata_mutated_by_its_owner_after_register_does_not_corrupt_the_index(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(index=["health"])
    owner = await Owner.start(None)
    meta = {"health": "ok"}
    await do(owner, "register", reg, "svc", meta)
    meta["health"] = "changed behind the registry's back"
    await do(owner, "unregister", reg, "svc")
    assert tables(reg).index["health"] == {}


# -- cleanup and monitors -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["normal", "crash", "kill"])
async def test_entries_and_their_index_disappear_when_the_owner_exits(
    runtime: Runtime, how: str
) -> None:
    reg = await Registry.start(keys="duplicate", index=["capability"])
    meta = {"capability": ["a", "b"]}
    pid = spawn(holder, reg, [("k1", meta), ("k2", meta)])
    await wait_until(lambda: Registry.count(reg) == 2)
    if how == "kill":
        await crash(pid)
    else:
        exited = wait_exit(pid)
        send(pid, "stop" if how == "normal" else "crash")
        await exited
    assert Registry.lookup(reg, "k1") == []  # dead entries are never reported
    await sync(reg)  # the Down has been handled
    t = tables(reg)
    assert t.entries == {} and t.by_pid == {} and t.monitors == {}
    assert t.index == {"capability": {}}
    assert monitors(runtime, reg) == ((), ())


async def test_one_monitor_per_process_however_many_keys_and_none_after_the_last_unregister(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(keys="duplicate")
    owner = await Owner.start(None)
    for key in ("a", "b", "c"):
        await do(owner, "register", reg, key, None)
    assert monitors(runtime, reg) == ((owner,), ())
    assert monitors(runtime, owner) == ((), (reg,))
    await do(owner, "unregister", reg, "a")
    await do(owner, "unregister", reg, "b")
    assert monitors(runtime, reg) == ((owner,), ())
    await do(owner, "unregister", reg, "c")
    await do(owner, "unregister", reg, "never-registered")  # a no-op
    assert monitors(runtime, reg) == ((), ())
    assert monitors(runtime, owner) == ((), ())
    assert tables(reg).monitors == {}
    assert Registry.keys(reg, owner) == []


async def test_a_thousand_processes_registering_and_dying_leave_no_entries_and_no_monitors(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(keys="duplicate", index=["capability", "health"])
    pids = [
        spawn(holder, reg, [(i, {"capability": ["x", f"c{i % 7}"], "health": "ok"}), ("all", i)])
        for i in range(1000)
    ]
    await wait_until(lambda: Registry.count(reg) == 2000)
    assert len(Registry.select(reg, capability="x", health="ok")) == 1000
    assert len(monitors(runtime, reg)[0]) == 1000
    waiters = [wait_exit(pid) for pid in pids]
    for i, pid in enumerate(pids):
        if i % 3 == 0:
            exit(pid, "kill")
        else:
            send(pid, "crash" if i % 3 == 1 else "stop")
    for w in waiters:
        await w
    await sync(reg)
    t = tables(reg)
    assert Registry.count(reg) == 0
    assert t.entries == {} and t.by_pid == {} and t.monitors == {}
    assert t.index == {"capability": {}, "health": {}}
    assert monitors(runtime, reg) == ((), ())


async def test_a_unique_key_whose_holder_just_died_can_be_taken_before_its_down_arrives(
    runtime: Runtime,
) -> None:
    reg = await Registry.start()
    old = spawn(holder, reg, [("k", "old")])
    await wait_until(lambda: Registry.lookup(reg, "k"))

    async def taker() -> None:
        exit(old, "kill")  # old dies before the registry sees our call, Down queued after it
        await Registry.register(reg, "k", "new")
        await receive()

    new = spawn(taker)
    await wait_until(lambda: Registry.whereis_name(reg, "k") is new)
    await sync(reg)
    assert Registry.lookup(reg, "k") == [(new, "new")]
    assert monitors(runtime, reg) == ((new,), ())
    assert tables(reg).monitors == {new: tables(reg).monitors[new]}


# -- via names ------------------------------------------------------------------------------------


async def test_a_genserver_started_under_a_via_name_answers_call_and_cast(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(name="reg")
    via = ("via", "reg", "counter")
    pid = await Counter.start(1, name=via)
    assert Registry.whereis_name(reg, "counter") is pid
    cast(via, 41)
    assert await call(via, "get") == 42
    assert await call(("via", reg, "counter"), "get") == 42
    with pytest.raises(NoProcess):
        await call(("via", "reg", "nobody"), "get")
    await GenServer.stop(via)
    assert Registry.whereis_name(reg, "counter") is None


async def test_a_taken_via_name_raises_already_started(runtime: Runtime) -> None:
    await Registry.start(name="reg")
    via = ("via", "reg", "counter")
    pid = await Counter.start(0, name=via)
    with pytest.raises(AlreadyStarted) as err:
        await Counter.start(0, name=via)
    assert err.value.pid is pid
    assert await call(via, "get") == 0


async def test_two_servers_racing_for_one_via_name_one_wins_the_other_gets_already_started(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(name="reg")
    via = ("via", "reg", "counter")
    # Both inits check the name before either registration reached the registry.
    results = await asyncio.gather(
        Counter.start(1, name=via), Counter.start(2, name=via), return_exceptions=True
    )
    winner, loser = results
    assert isinstance(winner, Pid) and isinstance(loser, AlreadyStarted)
    assert loser.pid is winner
    assert await call(via, "get") == 1
    await sync(reg)
    assert monitors(runtime, reg) == ((winner,), ())


async def test_a_via_name_in_a_registry_that_is_not_running_fails_the_start(
    runtime: Runtime,
) -> None:
    with pytest.raises(InitError) as err:
        await Counter.start(0, name=("via", "no-such-registry", "k"))
    assert isinstance(err.value.reason, NoProcess)


async def test_a_supervised_via_named_server_re_registers_after_a_restart(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(name="reg")
    via = ("via", "reg", "counter")
    await Supervisor.start([Counter.child_spec(5, name=via)])
    first = Registry.whereis_name(reg, "counter")
    assert first is not None
    cast(via, 1)
    assert await call(via, "get") == 6
    await crash(first)

    def restarted() -> Pid | None:
        pid = Registry.whereis_name(reg, "counter")
        return pid if pid is not None and pid is not first else None

    second = await wait_until(restarted)
    assert await call(via, "get") == 5
    await sync(reg)
    assert monitors(runtime, reg) == ((second,), ())
    assert Registry.count(reg) == 1


# -- bad input and a dead registry ----------------------------------------------------------------


async def test_bad_input_raises_invalid_argument_and_the_registry_keeps_running(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(index=["capability"])
    owner = await Owner.start(None)
    with pytest.raises(InvalidArgument, match="hashable"):
        await do(owner, "register", reg, ["unhashable"], None)
    with pytest.raises(InvalidArgument, match="'capability'"):
        await do(owner, "register", reg, "k", {"capability": [{"not": "hashable"}]})
    assert is_alive(reg)
    with pytest.raises(InvalidArgument):
        Registry.lookup(reg, {"un": "hashable"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Registry.select(reg, capability=["a"])
    await do(owner, "register", reg, "k", {"capability": ["ok"]})
    with pytest.raises(InvalidArgument):
        await do(owner, "update_metadata", reg, "k", {"capability": [[]]})
    assert Registry.select(reg, capability="ok") == [("k", owner, {"capability": ["ok"]})]
    assert is_alive(reg)
    assert Registry.count(reg) == 1


async def test_invalid_start_options_raise_invalid_argument(runtime: Runtime) -> None:
    with pytest.raises(InvalidArgument, match="keys"):
        await Registry.start(keys="many")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="index"):
        await Registry.start(index="capability")
    with pytest.raises(InvalidArgument, match="index"):
        await Registry.start(index=[1])  # type: ignore[list-item]


async def test_reads_on_something_that_is_not_a_registry_raise_invalid_argument(
    runtime: Runtime,
) -> None:
    counter = await Counter.start(0)
    with pytest.raises(InvalidArgument, match="not a Registry"):
        Registry.lookup(counter, "k")
    owner = await Owner.start(None)
    with pytest.raises(InvalidArgument, match="not a Registry"):
        await do(owner, "register", counter, "k", None)
    assert await call(counter, "get") == 0


async def test_a_registry_still_starting_answers_no_process_not_a_crash(
    runtime: Runtime,
) -> None:
    seen: list[Any] = []

    async def read_now() -> None:  # runs after the spawn, before the registry's init
        try:
            seen.append(Registry.lookup("reg", "k"))
        except NoProcess as err:
            seen.append(err)

    await asyncio.gather(Registry.start(name="reg"), read_now())
    assert isinstance(seen[0], NoProcess)
    assert Registry.lookup("reg", "k") == []


async def test_readers_of_a_crashed_registry_get_no_process(runtime: Runtime) -> None:
    reg = await Registry.start(name="reg", index=["capability"])
    owner = await Owner.start(None)
    await do(owner, "register", reg, "k", {"capability": "x"})
    await crash(reg)
    for target in (reg, "reg"):
        with pytest.raises(NoProcess):
            Registry.lookup(target, "k")
        with pytest.raises(NoProcess):
            Registry.select(target, capability="x")
        with pytest.raises(NoProcess):
            Registry.count(target)
        with pytest.raises(NoProcess):
            Registry.dispatch(target, "k", print)
    with pytest.raises(NoProcess):
        await do(owner, "register", "reg", "k2", None)
    with pytest.raises(NoProcess):
        await call(("via", "reg", "k"), "anything")
    assert is_alive(owner)


async def test_an_owner_crash_does_not_disturb_the_registry_or_other_owners(
    runtime: Runtime,
) -> None:
    reg = await Registry.start(keys="duplicate")
    a, b = await Owner.start(None), await Owner.start(None)
    await do(a, "register", reg, "k", "a")
    await do(b, "register", reg, "k", "b")
    with pytest.raises(ProcessExited):
        await call(a, "raise")
    await sync(reg)
    assert Registry.lookup(reg, "k") == [(b, "b")]
    assert monitors(runtime, reg) == ((b,), ())
