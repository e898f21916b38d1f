"""Supervisor semantics (a port of OTP's supervisor_SUITE groups), on the virtual clock."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import (
    ChildSpec,
    GenServer,
    Runtime,
    Supervisor,
    call,
    is_alive,
    whereis,
)
from foundation.errors import (
    AlreadyPresent,
    ChildNotFound,
    ChildRunning,
    InitError,
    InvalidArgument,
)
from foundation.kernel.api import wait_exit
from foundation.testing import crash, restarted, sync

from .conftest import Stubborn, Worker


def spec(name: str, log: list[Any], **kw: Any) -> ChildSpec:
    return Worker.child_spec((name, log), name=name, **kw)


async def start_sup(log: list[Any], names: list[str], **flags: Any) -> Any:
    return await Supervisor.start_link([spec(n, log) for n in names], **flags)


async def test_children_start_in_order_and_are_listed_in_start_order(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await start_sup(log, ["a", "b", "c"])
    assert log == [("start", "a"), ("start", "b"), ("start", "c")]
    children = await Supervisor.which_children(sup)
    assert [c.id for c in children] == ["a", "b", "c"]
    assert [c.pid for c in children] == [whereis("a"), whereis("b"), whereis("c")]
    assert {c.type for c in children} == {"worker"}
    assert await Supervisor.count_children(sup) == {
        "specs": 3,
        "active": 3,
        "supervisors": 0,
        "workers": 3,
    }


async def test_failing_child_start_fails_supervisor_start_and_stops_started_children(
    runtime: Runtime,
) -> None:
    log: list[Any] = []

    class Broken(GenServer):
        async def init(self, args: Any) -> Any:
            raise ValueError("cannot start")

    with pytest.raises(InitError) as err:
        await Supervisor.start_link([spec("a", log), spec("b", log), Broken.child_spec(None)])
    assert "cannot start" in str(err.value)
    assert log == [
        ("start", "a"),
        ("start", "b"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]
    assert whereis("a") is None and whereis("b") is None


async def test_child_start_returning_none_is_ignored_but_kept(runtime: Runtime) -> None:
    async def ignore() -> None:
        return None

    sup = await Supervisor.start_link([ChildSpec("ignored", ignore)])
    [child] = await Supervisor.which_children(sup)
    assert child.id == "ignored" and child.pid is None
    assert (await Supervisor.count_children(sup))["active"] == 0


async def test_one_for_one_restarts_only_the_failed_child(runtime: Runtime) -> None:
    log: list[Any] = []
    await start_sup(log, ["a", "b", "c"], strategy="one_for_one")
    a, b, c = whereis("a"), whereis("b"), whereis("c")
    log.clear()
    await crash("b")
    new_b = await restarted("b", b)
    assert new_b is not b
    assert whereis("a") is a and whereis("c") is c
    assert log == [("start", "b")]
    assert await call("b", "ping") == "pong"


async def test_one_for_all_stops_others_in_reverse_and_restarts_all_in_order(
    runtime: Runtime,
) -> None:
    log: list[Any] = []
    sup = await start_sup(log, ["a", "b", "c"], strategy="one_for_all")
    log.clear()
    await crash("b")
    await sync(sup)
    assert log == [
        ("stop", "c", "shutdown"),
        ("stop", "a", "shutdown"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await start_sup(log, ["a", "b", "c", "d"], strategy="rest_for_one")
    a = whereis("a")
    log.clear()
    await crash("b")
    await sync(sup)
    assert log == [
        ("stop", "d", "shutdown"),
        ("stop", "c", "shutdown"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]
    assert whereis("a") is a


@pytest.mark.parametrize(
    ("restart", "reason", "restarted_expected"),
    [
        ("permanent", "normal", True),
        ("permanent", "shutdown", True),
        ("permanent", "abnormal", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", ("shutdown", "done"), False),
        ("transient", "abnormal", True),
        ("temporary", "normal", False),
        ("temporary", "shutdown", False),
        ("temporary", "abnormal", False),
    ],
)
async def test_restart_type_and_exit_reason_decide_the_restart(
    runtime: Runtime, restart: str, reason: Any, restarted_expected: bool
) -> None:
    log: list[Any] = []
    sup = await Supervisor.start_link([spec("w", log, restart=restart)])
    old = whereis("w")
    assert old is not None
    if reason == "abnormal":
        await crash("w", "kill")
    else:
        assert await call("w", ("stop", reason)) == "ok"
        await wait_exit(old)
    await sync(sup)
    new = whereis("w")
    if restarted_expected:
        assert new is not None and new is not old
    else:
        assert new is None
    children = await Supervisor.which_children(sup)
    if restart == "temporary":
        assert children == []
    else:
        assert [c.id for c in children] == ["w"]


async def test_intensity_exceeded_stops_children_and_exits_with_shutdown(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start([spec("a", log), spec("b", log)], max_restarts=2, max_seconds=5)
    sup_exit = wait_exit(sup)
    for _ in range(2):
        old = whereis("a")
        await crash("a")
        await restarted("a", old)
    log.clear()
    await crash("a")
    assert await sup_exit == "shutdown"
    assert log == [("stop", "b", "shutdown")]
    assert whereis("a") is None and whereis("b") is None


async def test_restarts_outside_the_window_do_not_count(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start([spec("a", log)], max_restarts=1, max_seconds=10)
    for _ in range(5):
        old = whereis("a")
        await crash("a")
        await restarted("a", old)
        runtime.clock.advance(10.5)
    assert is_alive(sup)


async def test_max_restarts_zero_gives_up_on_the_first_failure(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start([spec("a", log)], max_restarts=0, max_seconds=1)
    w = wait_exit(sup)
    await crash("a")
    assert await w == "shutdown"


async def test_escalation_reaches_the_parent_which_restarts_the_subtree(runtime: Runtime) -> None:
    log: list[Any] = []
    inner = Supervisor.child_spec(
        [spec("leaf", log)], id="inner", name="inner", max_restarts=0, max_seconds=5
    )
    top = await Supervisor.start([inner], max_restarts=5, max_seconds=5)
    old_inner = whereis("inner")
    old_leaf = whereis("leaf")
    await crash("leaf")
    new_inner = await restarted("inner", old_inner)
    new_leaf = await restarted("leaf", old_leaf)
    assert new_inner is not old_inner and new_leaf is not old_leaf
    [child] = await Supervisor.which_children(top)
    assert child.type == "supervisor" and child.pid is new_inner


async def test_shutdown_brutal_kill_kills_without_terminate(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start([spec("a", log, shutdown="brutal_kill")])
    a = whereis("a")
    w = wait_exit(a)
    await Supervisor.terminate_child(sup, "a")
    assert await w == "killed"
    assert ("stop", "a", "shutdown") not in log


async def test_shutdown_timeout_kills_a_child_that_does_not_stop_in_time(runtime: Runtime) -> None:
    sup = await Supervisor.start([Stubborn.child_spec(None, name="s", shutdown=3.0)])
    s = whereis("s")
    w = wait_exit(s)
    t0 = runtime.clock.now()
    await Supervisor.terminate_child(sup, "s")
    assert await w == "killed"
    assert runtime.clock.now() - t0 == pytest.approx(3.0)


async def test_shutdown_infinity_waits_for_the_child(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start([spec("a", log, shutdown="infinity")])
    await Supervisor.terminate_child(sup, "a")
    assert log[-1] == ("stop", "a", "shutdown")


async def test_child_management_functions_and_their_error_codes(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await start_sup(log, ["a"])
    b = await Supervisor.start_child(sup, spec("b", log))
    assert b is whereis("b")
    with pytest.raises(AlreadyPresent) as e1:
        await Supervisor.start_child(sup, spec("b", log))
    assert e1.value.code == "already_present"
    with pytest.raises(ChildRunning) as e2:
        await Supervisor.restart_child(sup, "b")
    assert e2.value.code == "running"
    with pytest.raises(ChildRunning):
        await Supervisor.delete_child(sup, "b")
    await Supervisor.terminate_child(sup, "b")
    assert whereis("b") is None
    with pytest.raises(AlreadyPresent):
        await Supervisor.start_child(sup, spec("b", log))
    new_b = await Supervisor.restart_child(sup, "b")
    assert new_b is whereis("b")
    await Supervisor.terminate_child(sup, "b")
    await Supervisor.delete_child(sup, "b")
    assert [c.id for c in await Supervisor.which_children(sup)] == ["a"]
    for fn in (Supervisor.terminate_child, Supervisor.restart_child, Supervisor.delete_child):
        with pytest.raises(ChildNotFound) as e3:
            await fn(sup, "nope")
        assert e3.value.code == "not_found"


async def test_failed_start_child_raises_the_child_error_and_keeps_no_spec(
    runtime: Runtime,
) -> None:
    class Broken(GenServer):
        async def init(self, args: Any) -> Any:
            raise ValueError("nope")

    sup = await Supervisor.start([])
    with pytest.raises(InitError):
        await Supervisor.start_child(sup, Broken.child_spec(None, id="broken"))
    assert await Supervisor.which_children(sup) == []


async def test_child_failing_to_restart_is_retried_and_counted(runtime: Runtime) -> None:
    attempts: list[int] = []
    fail = {"on": False}

    class Flaky(GenServer):
        async def init(self, args: Any) -> Any:
            attempts.append(1)
            if fail["on"]:
                raise RuntimeError("still broken")
            return None

    sup = await Supervisor.start(
        [Flaky.child_spec(None, name="flaky")], max_restarts=3, max_seconds=5
    )
    w = wait_exit(sup)
    fail["on"] = True
    await crash("flaky")
    assert await w == "shutdown"
    # first start, then the restart plus two retries are allowed; the fourth failure escalates
    assert len(attempts) == 4


async def test_failed_restart_that_later_succeeds_keeps_the_supervisor(runtime: Runtime) -> None:
    starts = {"n": 0}

    class Flaky(GenServer):
        async def init(self, args: Any) -> Any:
            starts["n"] += 1
            if starts["n"] in (2, 3):  # the first restart and its first retry fail
                raise RuntimeError("transient failure")
            return None

    sup = await Supervisor.start(
        [Flaky.child_spec(None, name="flaky")], max_restarts=5, max_seconds=5
    )
    old = whereis("flaky")
    await crash("flaky")
    await restarted("flaky", old)
    assert starts["n"] == 4
    assert is_alive(sup)


async def test_supervisor_stop_stops_children_in_reverse_order(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await start_sup(log, ["a", "b", "c"])
    log.clear()
    await Supervisor.stop(sup)
    assert log == [("stop", "c", "shutdown"), ("stop", "b", "shutdown"), ("stop", "a", "shutdown")]
    assert not is_alive(sup)


async def test_one_for_all_drops_temporary_siblings(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start(
        [spec("a", log), spec("tmp", log, restart="temporary")], strategy="one_for_all"
    )
    await crash("a")
    await sync(sup)
    assert [c.id for c in await Supervisor.which_children(sup)] == ["a"]
    assert whereis("tmp") is None


async def test_invalid_flags_and_specs_are_rejected_with_the_field_named(runtime: Runtime) -> None:
    log: list[Any] = []
    with pytest.raises(InvalidArgument, match="max_restarts: -1"):
        await Supervisor.start([], max_restarts=-1)
    with pytest.raises(InvalidArgument, match="strategy"):
        await Supervisor.start([], strategy="one_for_some")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="max_seconds"):
        await Supervisor.start([], max_seconds=0)
    with pytest.raises(InvalidArgument, match="duplicate child id"):
        await Supervisor.start([spec("a", log), spec("a", log)])
    with pytest.raises(InvalidArgument, match="restart"):
        spec("x", log, restart="sometimes")
    with pytest.raises(InvalidArgument, match="shutdown"):
        spec("x", log, shutdown=-1)


async def test_unknown_request_to_a_supervisor_is_an_error_not_a_crash(runtime: Runtime) -> None:
    sup = await Supervisor.start([])
    from foundation.kernel.supervision import unwrap

    with pytest.raises(InvalidArgument):
        unwrap(await call(sup, "what"))
    assert is_alive(sup)


async def test_multiple_restarts_in_virtual_time(runtime: Runtime) -> None:
    """OTP's multiple_restarts case: intensity 3 in 5 s; takes milliseconds, not 6.3 s."""
    log: list[Any] = []
    sup = await Supervisor.start([spec("w", log)], max_restarts=3, max_seconds=5)
    for _ in range(3):
        old = whereis("w")
        await crash("w")
        await restarted("w", old)
    runtime.clock.advance(5.1)
    for _ in range(3):
        old = whereis("w")
        await crash("w")
        await restarted("w", old)
    assert is_alive(sup)
    w = wait_exit(sup)
    await crash("w")
    assert await w == "shutdown"
