"""The pytest plugin itself: async tests run without markers, leaks and deadlocks fail tests."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest(
        "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"
    )


def test_async_test_with_runtime_runs_without_marker_on_virtual_time(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
import asyncio
import pytest
from foundation import GenServer, call

async def test_x(runtime):
    pid = await GenServer.start(7)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), timeout=3600)
    assert runtime.clock.now() == 3600
    from foundation.testing import get_state
    assert await get_state(pid) == 7
""",
    )
    result.assert_outcomes(passed=1)


def test_a_leaked_asyncio_task_fails_the_test_and_is_named(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import asyncio

kept = []  # held, as a leaked task usually is: the garbage collector must not hide it

async def forever():
    await asyncio.Event().wait()

async def test_leaks(runtime):
    kept.append(asyncio.get_running_loop().create_task(forever()))
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaked after the runtime stopped: asyncio task*forever*"])


def test_a_leaked_thread_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import threading

stop = threading.Event()

async def test_leaks_thread(runtime):
    threading.Thread(target=stop.wait, args=(2,), name="straggler", daemon=True).start()
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaked after the runtime stopped: thread 'straggler'*"])


def test_processes_left_running_are_stopped_not_reported(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from foundation import GenServer, Supervisor

async def test_leaves_a_tree(runtime):
    await Supervisor.start([GenServer.child_spec(1, name="w")])
""",
    )
    result.assert_outcomes(passed=1)


def test_a_deadlock_fails_fast_listing_the_processes(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from foundation import GenServer, NoReply, call

class Never(GenServer):
    async def handle_call(self, request, caller, state):
        return NoReply(state)

async def test_waits_forever(runtime):
    pid = await Never.start(None, name="never")
    await call(pid, "x", timeout=None)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Deadlock: deadlock during test test_waits_forever*never*"])


def test_wait_until_timeout_reports_the_last_value(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from foundation.testing import wait_until

async def test_times_out(runtime):
    await wait_until(lambda: [] , timeout=2)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*WaitTimeout*still false after 2s; last value: []*"])


def test_assert_emitted_fails_with_the_events_seen(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from foundation import GenServer
from foundation.testing import assert_emitted

async def test_wrong_event(runtime):
    with assert_emitted("foundation.supervisor.restart"):
        await GenServer.start(None)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*no event matching 'foundation.supervisor.restart' was emitted*foundation.process.start*"]
    )


def test_real_clock_marker_runs_on_a_real_time_loop(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
from foundation.testing import VirtualClock

@pytest.mark.foundation(clock="real")
async def test_real(runtime):
    assert not isinstance(runtime.clock, VirtualClock)
""",
    )
    result.assert_outcomes(passed=1)


def test_the_session_seed_is_printed_and_foundation_rng_replays_with_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_inner="""
def test_draws(foundation_rng):
    print("DRAW", [foundation_rng.randrange(10**9) for _ in range(3)])
    assert False
"""
    )
    args = ("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-s")
    first = pytester.runpytest(*args, "--foundation-seed=1234")
    again = pytester.runpytest(*args, "--foundation-seed=1234")
    other = pytester.runpytest(*args, "--foundation-seed=99")
    draws = [
        next(line[line.index("DRAW") :] for line in r.outlines if "DRAW" in line)
        for r in (first, again, other)
    ]
    assert draws[0] == draws[1] != draws[2]
    first.stdout.fnmatch_lines(
        ["foundation seed: 1234 (replay: --foundation-seed=1234)", "*--foundation-seed=1234*"]
    )
    unseeded = pytester.runpytest(*args)
    unseeded.stdout.fnmatch_lines(["foundation seed: * (replay: --foundation-seed=*)"])
