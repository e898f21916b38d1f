"""send_after / cancel_timer on the runtime clock, and call deadlines."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import Runtime, cancel_timer, receive, send_after, spawn
from foundation.kernel.api import wait_exit


async def test_send_after_delivers_at_the_exact_virtual_time(runtime: Runtime) -> None:
    got: list[Any] = []

    async def body() -> None:
        for _ in range(3):
            msg = await receive()
            got.append((msg, runtime.clock.now()))

    pid = spawn(body)
    send_after(pid, "late", 300.0)
    send_after(pid, "early", 0.5)
    send_after(pid, "middle", 60.0)
    await wait_exit(pid)
    assert got == [("early", 0.5), ("middle", 60.0), ("late", 300.0)]


async def test_cancel_timer_returns_time_left_and_prevents_delivery(runtime: Runtime) -> None:
    got: list[Any] = []

    async def body() -> None:
        got.append(await receive())

    pid = spawn(body)
    ref = send_after(pid, "cancelled", 10.0)
    send_after(pid, "kept", 20.0)
    runtime.clock.advance(4.0)
    assert cancel_timer(ref) == pytest.approx(6.0)
    assert cancel_timer(ref) is False
    await wait_exit(pid)
    assert got == ["kept"]


async def test_send_after_to_a_dead_process_is_dropped_quietly(runtime: Runtime) -> None:
    async def quick() -> None:
        return None

    pid = spawn(quick)
    await wait_exit(pid)
    ref = send_after(pid, "nobody", 1.0)
    await runtime.clock.sleep(2.0)  # virtual time: returns at once
    assert ref not in runtime.timers
    assert cancel_timer(ref) is False


async def test_a_ten_minute_backoff_schedule_runs_instantly_at_exact_times(
    runtime: Runtime,
) -> None:
    attempts: list[float] = []

    async def retrier() -> None:
        delay = 1.0
        while delay <= 600:
            attempts.append(runtime.clock.now())
            send_after(_self(), "retry", delay)
            await receive()
            delay *= 2

    def _self() -> Any:
        from foundation import current_pid

        return current_pid()

    await wait_exit(spawn(retrier))
    assert attempts == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0, 255.0, 511.0]
