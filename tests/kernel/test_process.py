"""Processes: spawn, send/receive, links, monitors and the exit-signal semantics of OTP."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import (
    Down,
    Exit,
    Runtime,
    current_pid,
    demonitor,
    is_alive,
    link,
    monitor,
    receive,
    send,
    spawn,
    spawn_link,
    unlink,
    whereis,
)
from foundation import exit as exit_signal
from foundation.errors import InvalidArgument, NoProcess, NotInProcess, ReceiveTimeout
from foundation.kernel.api import register, wait_exit
from foundation.testing import sync, wait_until


async def forever() -> None:
    await receive()


async def test_spawned_process_exits_normal_when_its_function_returns(runtime: Runtime) -> None:
    async def body() -> None:
        return None

    pid = spawn(body)
    assert repr(pid).startswith("<0.")
    assert await wait_exit(pid) == "normal"
    assert not is_alive(pid)


async def test_exception_in_process_is_its_exit_reason(runtime: Runtime) -> None:
    async def body() -> None:
        raise ValueError("bad")

    reason = await wait_exit(spawn(body))
    assert isinstance(reason, ValueError)


async def test_send_and_receive_keep_per_pair_order(runtime: Runtime) -> None:
    got: list[Any] = []

    async def sink() -> None:
        for _ in range(100):
            got.append(await receive())

    pid = spawn(sink)
    for i in range(100):
        send(pid, i)
    await wait_exit(pid)
    assert got == list(range(100))


async def test_selective_receive_takes_the_first_match_and_keeps_the_rest(
    runtime: Runtime,
) -> None:
    got: list[Any] = []

    async def body() -> None:
        got.append(await receive(match=lambda m: m == "b"))
        got.append(await receive())
        got.append(await receive())

    pid = spawn(body)
    send(pid, "a")
    send(pid, "b")
    send(pid, "c")
    await wait_exit(pid)
    assert got == ["b", "a", "c"]


async def test_receive_timeout_raises_on_the_runtime_clock(runtime: Runtime) -> None:
    out: list[Any] = []

    async def body() -> None:
        try:
            await receive(timeout=30)
        except ReceiveTimeout as err:
            out.append((err.code, runtime.clock.now()))

    await wait_exit(spawn(body))
    assert out == [("receive_timeout", pytest.approx(30.0))]


async def test_send_to_dead_pid_or_unknown_name_raises_no_process(runtime: Runtime) -> None:
    async def body() -> None:
        return None

    pid = spawn(body)
    await wait_exit(pid)
    with pytest.raises(NoProcess):
        send(pid, "x")
    with pytest.raises(NoProcess):
        send("ghost", "x")


async def test_functions_needing_a_process_raise_not_in_process_outside_one(
    runtime: Runtime,
) -> None:
    for fn in (current_pid, lambda: monitor("x"), lambda: link("x")):
        with pytest.raises(NotInProcess):
            fn()


async def test_abnormal_exit_kills_linked_process_with_same_reason(runtime: Runtime) -> None:
    err = RuntimeError("crash")

    async def crasher() -> None:
        await receive()
        raise err

    async def parent() -> None:
        spawn_link(crasher, name="crasher")
        await receive()

    p = spawn(parent)
    await wait_until(lambda: whereis("crasher"))
    send("crasher", "go")
    assert await wait_exit(p) is err


async def test_normal_exit_does_not_kill_a_linked_non_trapping_process(runtime: Runtime) -> None:
    async def quick() -> None:
        await receive()

    async def parent() -> None:
        child = spawn_link(quick, name="quick")
        await receive(match=lambda m: m == "check")
        assert not is_alive(child)
        await receive()

    p = spawn(parent)
    await wait_until(lambda: whereis("quick"))
    child = whereis("quick")
    send("quick", "stop")
    await wait_exit(child)
    send(p, "check")
    await sync(p)
    assert is_alive(p)


async def test_trapping_process_receives_exit_message_instead_of_dying(runtime: Runtime) -> None:
    got: list[Any] = []

    async def crasher() -> None:
        raise KeyError("k")

    async def trapper() -> None:
        child = spawn_link(crasher)
        msg = await receive()
        got.append((type(msg), msg.pid is child, type(msg.reason)))

    p = spawn(trapper, trap_exit=True)
    assert await wait_exit(p) == "normal"
    assert got == [(Exit, True, KeyError)]


async def test_exit_kill_cannot_be_trapped_and_reason_is_killed(runtime: Runtime) -> None:
    p = spawn(forever, trap_exit=True)
    w = wait_exit(p)
    exit_signal(p, "kill")
    assert await w == "killed"


async def test_killed_reason_propagates_through_links_and_is_trappable(runtime: Runtime) -> None:
    got: list[Any] = []

    async def watcher() -> None:
        link(victim)
        got.append(await receive())

    victim = spawn(forever)
    w = spawn(watcher, trap_exit=True)
    await sync(w)
    exit_signal(victim, "kill")
    await wait_exit(w)
    assert got == [Exit(victim, "killed")]


async def test_exit_normal_to_another_non_trapping_process_is_ignored(runtime: Runtime) -> None:
    p = spawn(forever)
    exit_signal(p, "normal")
    await sync(p)
    assert is_alive(p)


async def test_exit_with_other_reason_kills_non_trapping_and_messages_trapping(
    runtime: Runtime,
) -> None:
    plain = spawn(forever)
    w = wait_exit(plain)
    exit_signal(plain, "shutdown")
    assert await w == "shutdown"

    got: list[Any] = []

    async def trapper() -> None:
        got.append(await receive())

    t = spawn(trapper, trap_exit=True)
    exit_signal(t, ("shutdown", "bye"))
    await wait_exit(t)
    assert got == [Exit(None, ("shutdown", "bye"))]


async def test_monitor_delivers_down_once_with_reason(runtime: Runtime) -> None:
    got: list[Any] = []

    async def dies() -> None:
        await receive()
        raise OSError("io")

    target = spawn(dies)

    async def watcher() -> None:
        ref = monitor(target)
        ref2 = monitor(target)
        send(target, "go")
        for _ in range(2):
            msg = await receive()
            got.append((msg.ref in (ref, ref2), msg.pid is target, type(msg.reason)))

    await wait_exit(spawn(watcher))
    assert got == [(True, True, OSError), (True, True, OSError)]


async def test_monitor_of_dead_process_gives_immediate_noproc_down(runtime: Runtime) -> None:
    async def quick() -> None:
        return None

    dead = spawn(quick)
    await wait_exit(dead)
    got: list[Any] = []

    async def watcher() -> None:
        ref = monitor(dead)
        got.append(await receive(timeout=0.001) == Down(ref, dead, "noproc"))

    await wait_exit(spawn(watcher))
    assert got == [True]


async def test_demonitor_with_flush_removes_a_queued_down(runtime: Runtime) -> None:
    async def quick() -> None:
        await receive()

    target = spawn(quick)
    got: list[Any] = []

    async def watcher() -> None:
        ref = monitor(target)
        send(target, "go")
        await wait_exit(target)
        assert len(runtime.procs[current_pid().id].mailbox) == 1
        got.append(demonitor(ref, flush=True))
        try:
            got.append(await receive(timeout=1))
        except Exception as err:
            got.append(type(err).__name__)

    await wait_exit(spawn(watcher))
    assert got == [False, "ReceiveTimeout"]


async def test_demonitor_removes_the_monitor_from_both_sides(runtime: Runtime) -> None:
    target = spawn(forever)

    async def watcher() -> None:
        ref = monitor(target)
        assert demonitor(ref)
        await receive()

    w = spawn(watcher)
    await sync(w)
    infos = {i.pid: i for i in runtime.processes()}
    assert infos[target].monitored_by == ()
    assert infos[w].monitors == ()


async def test_link_to_dead_process_sends_noproc_exit(runtime: Runtime) -> None:
    async def quick() -> None:
        return None

    dead = spawn(quick)
    await wait_exit(dead)

    async def linker() -> None:
        link(dead)
        await receive()

    assert await wait_exit(spawn(linker)) == "noproc"


async def test_unlink_stops_exit_propagation(runtime: Runtime) -> None:
    async def crasher() -> None:
        await receive()
        raise RuntimeError("x")

    c = spawn(crasher)

    async def body() -> None:
        link(c)
        unlink(c)
        send(c, "go")
        await receive()

    p = spawn(body)
    await wait_exit(c)
    await sync(p)
    assert is_alive(p)


async def test_registered_name_is_freed_when_the_process_exits(runtime: Runtime) -> None:
    async def body() -> None:
        register("me")
        await receive()

    p = spawn(body)
    await wait_until(lambda: whereis("me"))
    send("me", "bye")
    await wait_exit(p)
    assert whereis("me") is None


async def test_spawn_rejects_non_async_functions_and_bad_options(runtime: Runtime) -> None:
    def sync_fn() -> None:
        return None

    reason = await wait_exit(spawn(sync_fn))  # type: ignore[arg-type]
    assert isinstance(reason, InvalidArgument)
    with pytest.raises(InvalidArgument):
        spawn(forever, max_mailbox=0)
    with pytest.raises(InvalidArgument):
        send(42, "x")


async def test_process_info_reports_links_monitors_status_and_mailbox(runtime: Runtime) -> None:
    async def holder() -> None:
        await receive(match=lambda m: m == "never")

    a = spawn(holder, name="a")
    send(a, "queued")

    async def b_body() -> None:
        link(a)
        monitor(a)
        await receive()

    b = spawn(b_body)
    await sync(b)
    await sync(a)
    infos = {i.pid: i for i in runtime.processes()}
    assert infos[a].name == "a"
    assert infos[a].mailbox == 1
    assert infos[a].status == "waiting"
    assert infos[a].links == (b,)
    assert infos[a].monitored_by == (b,)
    assert infos[b].monitors == (a,)
    assert infos[b].behaviour.endswith("b_body")
