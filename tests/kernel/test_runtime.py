"""The runtime: shutdown order and timeouts, introspection, several runtimes, foundation.run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from foundation import GenServer, Runtime, Supervisor, is_alive, receive, spawn, whereis
from foundation.errors import InvalidArgument, NoRuntime
from foundation.kernel.api import wait_exit
from foundation.testing import sync

from .conftest import Stubborn, Worker


async def test_shutdown_stops_top_level_processes_in_reverse_start_order(runtime: Runtime) -> None:
    log: list[Any] = []
    await Worker.start(("a", log), name="a")
    await Supervisor.start([Worker.child_spec(("b", log), name="b")])
    await Worker.start(("c", log), name="c")
    log.clear()
    await runtime.shutdown()
    assert log == [("stop", "c", "shutdown"), ("stop", "b", "shutdown"), ("stop", "a", "shutdown")]
    assert runtime.procs == {}


async def test_shutdown_timeout_kills_a_top_level_worker_that_does_not_stop(
    runtime: Runtime,
) -> None:
    pid = await Stubborn.start(None)
    t0 = runtime.clock.now()
    w = wait_exit(pid)
    await runtime.shutdown()
    assert await w == "killed"
    assert runtime.clock.now() - t0 == pytest.approx(runtime.shutdown_timeout)


async def test_processes_lists_every_live_process_in_start_order(runtime: Runtime) -> None:
    log: list[Any] = []
    sup = await Supervisor.start([Worker.child_spec(("w", log), name="w")])
    infos = runtime.processes()
    assert [i.pid for i in infos] == [sup, whereis("w")]
    assert infos[0].behaviour == "Supervisor"
    assert infos[1].behaviour == "Worker"
    assert infos[1].name == "w"
    assert infos[1].parent is sup
    assert infos[1].restarts == 0


def test_kernel_functions_outside_a_runtime_raise_no_runtime() -> None:
    async def body() -> None:
        return None

    with pytest.raises(NoRuntime):
        spawn(body)


def test_several_runtimes_run_side_by_side_in_one_os_process() -> None:
    async def one(tag: str) -> str:
        async with Runtime() as rt:
            pid = await GenServer.start(tag, name="same-name")
            assert rt.whereis("same-name") is pid
            return tag

    async def both() -> list[str]:
        return list(await asyncio.gather(one("x"), one("y")))

    assert asyncio.run(both()) == ["x", "y"]


def test_runtime_rejects_bad_options() -> None:
    with pytest.raises(InvalidArgument):
        Runtime(shutdown_timeout=-1)
    with pytest.raises(InvalidArgument):
        Runtime(max_threads=0)


def test_run_executes_a_coroutine_function_and_returns_its_result() -> None:
    from foundation import run

    async def main() -> int:
        pid = await GenServer.start(41)
        from foundation.testing import get_state

        return int(await get_state(pid)) + 1

    assert run(main) == 42


async def test_spawned_process_outlives_its_spawner_until_shutdown(runtime: Runtime) -> None:
    async def child() -> None:
        await receive()

    async def parent() -> None:
        spawn(child, name="orphan-free")

    await wait_exit(spawn(parent))
    pid = whereis("orphan-free")
    assert pid is not None and is_alive(pid)
    await sync(pid)


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import sys
    from foundation import GenServer, run

    class W(GenServer):
        trap_exit = True
        async def init(self, name):
            print("started", name, flush=True)
            return name
        async def terminate(self, reason, state):
            print("stopped", state, reason, flush=True)

    run([W.child_spec("a", name="a"), W.child_spec("b", name="b")])
    print("exited cleanly", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_tree_in_reverse_order_and_exits_cleanly(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started a"
    assert proc.stdout.readline().strip() == "started b"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["stopped b shutdown", "stopped a shutdown", "exited cleanly"]
