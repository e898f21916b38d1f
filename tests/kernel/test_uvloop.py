"""The kernel runs unchanged on uvloop (the ``foundation[fast]`` extra)."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import GenServer, Reply, Runtime, Supervisor, TaskSupervisor, call, cast, whereis
from foundation.testing import crash, restarted

uvloop = pytest.importorskip("uvloop")


class Counter(GenServer):
    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state, state)

    async def handle_cast(self, request: int, state: int) -> int:
        return state + request


def test_calls_supervision_tasks_and_shutdown_work_on_uvloop() -> None:
    async def main() -> tuple[int, int, int]:
        async with Runtime():
            await Supervisor.start([Counter.child_spec(0, name="c")])
            for _ in range(1000):
                cast("c", 1)
            total = await call("c", "get")
            old = whereis("c")
            await crash(old)
            await restarted("c", old)
            after_restart = await call("c", "get")
            sup = await TaskSupervisor.start()
            doubled = await TaskSupervisor.run_sync(sup, lambda: 21 * 2)
            return total, after_restart, doubled

    assert uvloop.run(main()) == (1000, 0, 42)
