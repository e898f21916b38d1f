"""GenServer: callbacks, return values, calls and their errors, stop and terminate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from foundation import (
    Continue,
    Down,
    GenServer,
    NoReply,
    Reply,
    Runtime,
    Stop,
    call,
    cast,
    is_alive,
    monitor,
    receive,
    reply,
    send,
    spawn,
    whereis,
)
from foundation.errors import (
    AlreadyStarted,
    CallTimeout,
    FoundationError,
    InitError,
    InvalidArgument,
    MailboxFull,
    NoProcess,
    ProcessExited,
)
from foundation.kernel.api import wait_exit
from foundation.testing import get_state, sync, wait_until


class Counter(GenServer):
    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        if request == "get":
            return Reply(state, state)
        if request == "boom":
            raise RuntimeError("boom")
        if request == "stop":
            return Stop("normal", state, reply="bye")
        if request == "none":
            return None
        return None

    async def handle_cast(self, request: Any, state: int) -> Any:
        if request == "crash":
            raise ValueError("cast crash")
        return state + request


async def test_call_returns_reply_and_cast_is_ordered_before_next_call(runtime: Runtime) -> None:
    pid = await Counter.start(0, name="counter")
    assert await call("counter", "get") == 0
    cast("counter", 5)
    cast(pid, 2)
    assert await call(pid, "get") == 7


async def test_start_returns_only_after_init_and_registers_name(runtime: Runtime) -> None:
    pid = await Counter.start(3, name="c")
    assert whereis("c") is pid
    assert await get_state(pid) == 3


async def test_starting_a_second_server_under_a_taken_name_raises_already_started(
    runtime: Runtime,
) -> None:
    pid = await Counter.start(0, name="c")
    with pytest.raises(AlreadyStarted) as err:
        await Counter.start(0, name="c")
    assert err.value.pid is pid
    assert err.value.code == "already_started"


async def test_failing_init_raises_init_error_with_the_cause_and_starter_survives(
    runtime: Runtime,
) -> None:
    class Bad(GenServer):
        async def init(self, args: Any) -> Any:
            raise KeyError("missing")

    class Starter(GenServer):
        async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
            try:
                await Bad.start_link(None)
            except InitError as err:
                return Reply(("init_error", type(err.reason).__name__), state)
            return Reply("started", state)

    starter = await Starter.start(None)
    assert await call(starter, "go") == ("init_error", "KeyError")
    assert is_alive(starter)


async def test_init_returning_stop_fails_start_with_its_reason(runtime: Runtime) -> None:
    class Refuses(GenServer):
        async def init(self, args: Any) -> Any:
            return Stop("no_config", None)

    with pytest.raises(InitError) as err:
        await Refuses.start(None)
    assert err.value.reason == "no_config"


async def test_init_timeout_kills_the_process_and_raises(runtime: Runtime) -> None:
    class Slow(GenServer):
        async def init(self, args: Any) -> Any:
            await runtime.clock.sleep(60)
            return None

    with pytest.raises(InitError) as err:
        await Slow.start(None, timeout=1.0, name="slow")
    assert err.value.reason == "timeout"
    assert runtime.clock.now() == pytest.approx(1.0)
    await wait_until(lambda: whereis("slow") is None)


async def test_callee_crash_raises_process_exited_in_caller_with_reason(runtime: Runtime) -> None:
    pid = await Counter.start(0)
    with pytest.raises(ProcessExited) as err:
        await call(pid, "boom")
    assert isinstance(err.value.reason, RuntimeError)
    assert not is_alive(pid)


async def test_call_to_dead_pid_or_unknown_name_raises_no_process(runtime: Runtime) -> None:
    pid = await Counter.start(0)
    await Counter.stop(pid)
    with pytest.raises(NoProcess):
        await call(pid, "get")
    with pytest.raises(NoProcess):
        await call("nobody", "get")
    with pytest.raises(NoProcess):
        cast("nobody", 1)


async def test_call_timeout_fires_on_the_runtime_clock_and_late_reply_is_discarded(
    runtime: Runtime,
) -> None:
    class Lazy(GenServer):
        async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
            return NoReply(caller)

        async def handle_cast(self, request: Any, state: Any) -> Any:
            reply(state, "late")
            return None

    pid = await Lazy.start(None)
    start = runtime.clock.now()
    with pytest.raises(CallTimeout) as err:
        await call(pid, "x", timeout=2.5)
    assert runtime.clock.now() - start == pytest.approx(2.5, abs=0.002)
    assert err.value.retryable
    cast(pid, "answer now")
    await sync(pid)
    assert is_alive(pid)


async def test_deferred_reply_answers_the_caller_later(runtime: Runtime) -> None:
    class Deferred(GenServer):
        async def init(self, args: Any) -> list[Any]:
            return []

        async def handle_call(self, request: Any, caller: Any, state: list[Any]) -> Any:
            if request == "wait":
                return NoReply([*state, caller])
            for c in state:
                reply(c, request)
            return Reply(len(state), [])

    pid = await Deferred.start(None)
    task = [None]

    async def waiter() -> None:
        task[0] = await call(pid, "wait")

    w = spawn(waiter)
    await sync(pid)
    assert await call(pid, "release") == 1
    await wait_exit(w)
    assert task[0] == "release"


async def test_queued_and_deferred_calls_fail_with_process_exited_when_server_dies(
    runtime: Runtime,
) -> None:
    class Holder(GenServer):
        async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
            if request == "hold":
                return NoReply(state)
            raise RuntimeError("die")

    pid = await Holder.start(None)
    results: list[Any] = []

    async def caller(req: str) -> None:
        try:
            await call(pid, req, timeout=None)
        except ProcessExited as err:
            results.append((req, type(err.reason).__name__))

    callers = [spawn(caller, "hold"), spawn(caller, "die"), spawn(caller, "queued")]
    for c in callers:
        await wait_exit(c)
    assert sorted(results) == [
        ("die", "RuntimeError"),
        ("hold", "RuntimeError"),
        ("queued", "RuntimeError"),
    ]


async def test_stop_with_reply_answers_then_terminates_with_reason(runtime: Runtime) -> None:
    seen: list[Any] = []

    class Stopper(Counter):
        async def terminate(self, reason: Any, state: Any) -> None:
            seen.append((reason, state))

    pid = await Stopper.start(9)
    exited = wait_exit(pid)
    assert await call(pid, "stop") == "bye"
    assert await exited == "normal"
    assert seen == [("normal", 9)]


async def test_genserver_stop_runs_terminate_and_waits(runtime: Runtime) -> None:
    seen: list[Any] = []

    class T(GenServer):
        async def terminate(self, reason: Any, state: Any) -> None:
            seen.append(reason)

    pid = await T.start(None)
    await GenServer.stop(pid, reason="shutdown")
    assert seen == ["shutdown"]
    assert not is_alive(pid)


async def test_crash_in_callback_runs_terminate_with_the_exception(runtime: Runtime) -> None:
    seen: list[Any] = []

    class T(Counter):
        async def terminate(self, reason: Any, state: Any) -> None:
            seen.append(type(reason).__name__)

    pid = await T.start(0)
    cast(pid, "crash")
    reason = await wait_exit(pid)
    assert isinstance(reason, ValueError)
    assert seen == ["ValueError"]


async def test_bad_return_value_crashes_the_server_with_bad_return(runtime: Runtime) -> None:
    pid = await Counter.start(0)
    with pytest.raises(ProcessExited) as err:
        await call(pid, "none")
    assert isinstance(err.value.reason, FoundationError)
    assert err.value.reason.code == "bad_return_value"


async def test_continue_runs_handle_continue_before_next_message(runtime: Runtime) -> None:
    class C(GenServer):
        async def init(self, args: Any) -> Any:
            return Continue(["init"], "after_init")

        async def handle_continue(self, arg: Any, state: list[str]) -> Any:
            return [*state, arg]

        async def handle_call(self, request: Any, caller: Any, state: list[str]) -> Any:
            if request == "more":
                return Reply("ok", state, continue_with="after_call")
            return Reply(state, state)

    pid = await C.start(None)
    assert await call(pid, "get") == ["init", "after_init"]
    assert await call(pid, "more") == "ok"
    assert await call(pid, "get") == ["init", "after_init", "after_call"]


async def test_info_messages_reach_handle_info(runtime: Runtime) -> None:
    class Info(GenServer):
        async def init(self, args: Any) -> list[Any]:
            return []

        async def handle_info(self, msg: Any, state: list[Any]) -> Any:
            return [*state, msg]

        async def handle_call(self, request: Any, caller: Any, state: list[Any]) -> Any:
            return Reply(state, state)

    pid = await Info.start(None)
    send(pid, "a")
    send(pid, ("b", 1))
    assert await call(pid, "get") == ["a", ("b", 1)]


async def test_bounded_mailbox_raises_mailbox_full_to_the_sender(runtime: Runtime) -> None:
    pid = await Counter.start(0, max_mailbox=2)
    cast(pid, 1)
    cast(pid, 1)
    with pytest.raises(MailboxFull):
        cast(pid, 1)
    await sync(pid)
    assert await call(pid, "get") == 2


async def test_a_process_calling_itself_gets_a_clear_error(runtime: Runtime) -> None:
    class Selfish(GenServer):
        async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
            try:
                await call(self.pid, "again")
            except InvalidArgument as err:
                return Reply(err.code, state)
            return Reply("no", state)

    pid = await Selfish.start(None)
    assert await call(pid, "go") == "invalid_argument"


async def test_trapping_server_gets_exit_messages_and_parent_exit_stops_it(
    runtime: Runtime,
) -> None:
    seen: list[Any] = []

    class Trapper(GenServer):
        trap_exit = True

        async def handle_info(self, msg: Any, state: Any) -> Any:
            seen.append(msg)
            return state

        async def terminate(self, reason: Any, state: Any) -> None:
            seen.append(("terminate", reason))

    async def parent_body() -> None:
        await Trapper.start_link(None, name="trapper")
        await receive()

    parent = spawn(parent_body)
    await wait_until_registered("trapper")
    trapper = whereis("trapper")
    assert trapper is not None

    async def watcher() -> Any:
        monitor(trapper)
        return await receive(match=lambda m: isinstance(m, Down))

    spawn(watcher)
    from foundation import exit as exit_signal

    exit_signal(parent, "shutdown")
    assert await wait_exit(trapper) == "shutdown"
    assert seen == [("terminate", "shutdown")]


async def wait_until_registered(name: str) -> None:
    from foundation.testing import wait_until

    await wait_until(lambda: whereis(name))


class Holder(GenServer):
    """Holds its mailbox on the cast ``"hold"``; the test releases it through ``holds``."""

    async def init(self, holds: list[Any]) -> Any:
        self.holds = holds
        return 0

    async def handle_cast(self, request: Any, state: int) -> Any:
        self.holds.append((self, self.hold_mailbox()))
        return state + 1

    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state, state)


def mailbox_length(runtime: Runtime, pid: Any) -> int:
    return next(p.mailbox for p in runtime.processes() if p.pid == pid)


async def holding() -> tuple[Any, Any, list[Any]]:
    """A Holder told to hold its mailbox: (pid, its ``wait_exit``, the [(server, hold)] list)."""
    holds: list[Any] = []
    pid = await Holder.start(holds)
    exited = wait_exit(pid)
    cast(pid, "hold")
    return pid, exited, holds


async def test_a_held_mailbox_takes_no_message_until_it_is_released(runtime: Runtime) -> None:
    pid, _, holds = await holding()
    answers: list[int] = []

    async def caller() -> None:
        answers.append(await call(pid, "get"))

    c = spawn(caller)
    await wait_until(lambda: holds and mailbox_length(runtime, pid) == 1)
    other = await Holder.start([])
    for _ in range(5):  # the loop goes round: the held server could run, and must not
        await call(other, "get")
    assert mailbox_length(runtime, pid) == 1
    assert answers == []  # the call waits behind the hold
    server, hold = holds[0]
    server.release_mailbox(hold)
    await wait_exit(c)
    assert answers == [1]
    server.release_mailbox(hold, RuntimeError("late"))  # a second release changes nothing
    assert await call(pid, "get") == 1


async def test_a_mailbox_released_with_an_error_crashes_the_idle_server_with_it(
    runtime: Runtime,
) -> None:
    _, exited, holds = await holding()
    await wait_until(lambda: bool(holds))
    server, hold = holds[0]
    err = RuntimeError("the change could not be made final")
    server.release_mailbox(hold, err)
    assert await exited is err


async def test_a_mailbox_released_with_an_error_while_a_call_waits_crashes_before_serving_it(
    runtime: Runtime,
) -> None:
    pid, exited, holds = await holding()
    failures: list[BaseException] = []

    async def caller() -> None:
        try:
            await call(pid, "get")
        except ProcessExited as exc:
            failures.append(exc)

    c = spawn(caller)
    await wait_until(lambda: holds and mailbox_length(runtime, pid) == 1)
    server, hold = holds[0]
    err = RuntimeError("the change could not be made final")
    server.release_mailbox(hold, err)
    assert await exited is err
    await wait_exit(c)
    assert [f.reason for f in failures] == [err]  # the waiting call was never served


async def test_stopping_a_server_whose_mailbox_is_held_waits_for_the_release(
    runtime: Runtime,
) -> None:
    pid, _, holds = await holding()
    await wait_until(lambda: bool(holds))
    stopped: list[bool] = []

    async def stopper() -> None:
        await GenServer.stop(pid)
        stopped.append(True)

    s = spawn(stopper)
    await wait_until(lambda: mailbox_length(runtime, pid) == 1)  # the stop request waits
    assert is_alive(pid) and stopped == []
    server, hold = holds[0]
    server.release_mailbox(hold)
    await wait_exit(s)
    assert stopped == [True] and not is_alive(pid)


async def test_stopping_an_idle_server_exits_it_at_once_like_any_exit(runtime: Runtime) -> None:
    """An idle server without ``terminate`` is stopped in place: the caller does not wait for a
    loop pass, yet links, monitors, its name and its pending callers see a normal exit."""

    class Deferring(Counter):
        async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
            if request == "later":
                return NoReply(state)  # never answered: the stop must fail this caller
            return await super().handle_call(request, caller, state)

    pid = await Deferring.start(1, name="idle")
    downs: list[Any] = []

    async def watcher() -> None:
        monitor(pid)
        downs.append(await receive())

    w = spawn(watcher)
    await sync(w)
    failures: list[Any] = []

    async def deferred_caller() -> None:
        try:
            await call(pid, "later")
        except ProcessExited as exc:
            failures.append(exc.reason)

    c = spawn(deferred_caller)
    await call(pid, "get")  # the deferred call was taken before this one
    await GenServer.stop(pid, reason="shutdown")
    assert not is_alive(pid)
    assert whereis("idle") is None
    await wait_exit(w)
    await wait_exit(c)
    assert [(d.pid, d.reason) for d in downs] == [(pid, "shutdown")]
    assert failures == ["shutdown"]


async def test_stop_handles_the_messages_sent_before_it_first(runtime: Runtime) -> None:
    seen: list[int] = []

    class Recording(Counter):
        async def handle_cast(self, request: Any, state: int) -> Any:
            seen.append(request)
            return state + request

    pid = await Recording.start(0)
    for i in range(5):
        cast(pid, i)
    await GenServer.stop(pid)
    assert seen == [0, 1, 2, 3, 4]
    assert not is_alive(pid)


async def test_a_server_stopped_in_place_leaves_no_task_behind_the_runtime(
    runtime: Runtime,
) -> None:
    pid = await Counter.start(0)
    await GenServer.stop(pid)
    await runtime.shutdown()
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert [t for t in left if "Process.main" in repr(t.get_coro())] == []


@pytest.mark.parametrize("timeout", [float("nan"), -1, "5", float("inf")])
async def test_a_bad_timeout_to_start_or_stop_is_refused_before_anything_happens(
    runtime: Runtime, timeout: Any
) -> None:
    before = len(runtime.processes())
    with pytest.raises(InvalidArgument, match="invalid timeout"):
        await Counter.start(0, timeout=timeout)
    assert len(runtime.processes()) == before  # no process was created
    pid = await Counter.start(0)
    with pytest.raises(InvalidArgument, match="invalid timeout"):
        await GenServer.stop(pid, timeout=timeout)
    assert is_alive(pid)
