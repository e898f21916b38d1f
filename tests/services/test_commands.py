"""SystemCommands: allow-list, caps, group-killing timeouts, and a loop that never blocks."""

from __future__ import annotations

import itertools
import os
import subprocess
from typing import Any

import pytest

from foundation import GenServer, Reply, Runtime, call, spawn
from foundation.errors import (
    CommandFailed,
    CommandNotAllowed,
    CommandTimeout,
    InvalidArgument,
    OutputTooLarge,
    Overloaded,
)
from foundation.kernel.api import wait_exit
from foundation.services.commands import SystemCommands
from foundation.testing import crash, sync

TEST_ALLOW = ("echo", "sh", "false", "yes", "true", "uptime", "no-such-program-xyz")


_MARKERS = itertools.count(1)


def unique_sleep() -> str:
    """A ``sleep`` duration no other run on this machine uses (the suite may run twice at once),
    so ``leftover`` sees only this test's processes: 30 s and a fraction made of our pid."""
    return f"30.{os.getpid():07d}{next(_MARKERS):03d}"


def leftover(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


async def until_running(n: int) -> None:
    """Barrier loop: each round waits for the service to handle one more message."""
    while (await SystemCommands.stats()).running < n:
        await sync("system_commands")


class Counter(GenServer):
    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state + 1, state + 1)


async def test_allowed_command_runs_without_a_shell_and_returns_its_output(
    runtime: Runtime,
) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW)
    result = await SystemCommands.run("echo", "hello", "$HOME")
    assert result.exit_code == 0
    assert result.stdout == "hello $HOME\n"  # no shell: nothing expanded
    assert not result.cached


async def test_command_off_the_allow_list_or_missing_is_refused(runtime: Runtime) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW)
    with pytest.raises(CommandNotAllowed, match="not allowed"):
        await SystemCommands.run("rm", "-rf", "/tmp/nothing")
    with pytest.raises(CommandNotAllowed, match="not installed"):
        await SystemCommands.run("no-such-program-xyz")
    with pytest.raises(InvalidArgument):
        await SystemCommands.run("echo", 3)  # type: ignore[arg-type]
    assert (await SystemCommands.stats()).rejected == 2


async def test_3f8_non_zero_exit_is_an_error_never_an_ok_value(runtime: Runtime) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW)
    with pytest.raises(CommandFailed) as err:
        await SystemCommands.run("sh", "-c", "echo oops >&2; exit 3")
    assert err.value.context["exit_code"] == 3
    assert "oops" in err.value.context["stderr_tail"]
    unchecked = await SystemCommands.run("false", check=False)
    assert unchecked.exit_code == 1


async def test_result_cache_serves_within_ttl_on_the_runtime_clock(runtime: Runtime) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW, cache_ttl=30)
    first = await SystemCommands.run("echo", "x", use_cache=True)
    second = await SystemCommands.run("echo", "x", use_cache=True)
    assert (first.cached, second.cached) == (False, True)
    assert second.stdout == first.stdout
    runtime.clock.advance(31)
    assert not (await SystemCommands.run("echo", "x", use_cache=True)).cached
    assert (await SystemCommands.stats()).cache_hits == 1


async def test_output_cap_kills_the_command(runtime: Runtime) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW, max_output=10_000)
    with pytest.raises(OutputTooLarge):
        await SystemCommands.run("yes")
    assert (await SystemCommands.stats()).running == 0


@pytest.mark.foundation(clock="real")
async def test_timeout_kills_the_whole_process_group_leaving_no_child(runtime: Runtime) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW)
    marker = unique_sleep()
    with pytest.raises(CommandTimeout):
        await SystemCommands.run("sh", "-c", f"sleep {marker} & sleep {marker}", timeout=0.3)
    assert leftover(f"sleep {marker}") == []


@pytest.mark.foundation(clock="real")
async def test_event_loop_keeps_serving_calls_while_a_slow_command_runs(runtime: Runtime) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW)
    counter = await Counter.start(0)

    async def slow() -> None:
        await SystemCommands.run("sh", "-c", "sleep 0.5")

    runner = spawn(slow)
    await until_running(1)
    served = 0
    for _ in range(200):
        served = await call(counter, "inc")
    assert (await SystemCommands.stats()).running == 1  # all 200 calls answered meanwhile
    assert served == 200
    await wait_exit(runner)


@pytest.mark.foundation(clock="real")
async def test_concurrency_cap_answers_overloaded_and_a_killed_caller_frees_its_slot(
    runtime: Runtime,
) -> None:
    await SystemCommands.start_link(allow=TEST_ALLOW, max_concurrent=1)
    marker = unique_sleep()

    async def long() -> None:
        await SystemCommands.run("sh", "-c", f"sleep {marker}", timeout=60)

    runner = spawn(long)
    await until_running(1)
    with pytest.raises(Overloaded) as err:
        await SystemCommands.run("true")
    assert err.value.retryable
    await crash(runner)
    stats = await SystemCommands.stats()
    assert stats.running == 0
    assert leftover(f"sleep {marker}") == []
    assert (await SystemCommands.run("true")).exit_code == 0
