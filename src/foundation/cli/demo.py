"""``foundation demo``: a supervision tree that heals itself, crashed on purpose.

Run with ``make demo`` or ``foundation demo``. It starts a small tree (a counter, a nested
supervisor with two workers in rest_for_one), serves some calls, crashes children on purpose
and prints what the supervisors did: which processes stopped, which restarted, and that the
tree keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["main", "run_demo"]

from foundation import (
    GenServer,
    Reply,
    Runtime,
    Supervisor,
    call,
    cast,
    whereis,
)
from foundation import exit as exit_signal
from foundation.kernel.api import wait_exit
from foundation.testing import restarted, sync


class Counter(GenServer):
    """Counts what it is told to count; crashes when asked to divide by zero."""

    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        if request == "get":
            return Reply(state, state)
        if request == "divide_by_zero":
            return Reply(1 / 0, state)
        return Reply(None, state)

    async def handle_cast(self, request: int, state: int) -> int:
        return state + request


class Worker(GenServer):
    """A named worker that says hello."""

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        return Reply(f"hello from {state}", state)


def show(rt: Runtime, title: str) -> None:
    print(f"\n{title}")
    print(f"  {'pid':<8}{'name':<10}{'behaviour':<12}{'restarts':<10}links")
    for info in rt.processes():
        links = " ".join(repr(p) for p in sorted(info.links, key=lambda p: p.id))
        name = info.name or "-"
        print(f"  {info.pid!r:<8}{name:<10}{info.behaviour:<12}{info.restarts:<10}{links}")


def on_event(event: tuple[str, ...], measurements: dict[str, Any], meta: dict[str, Any]) -> None:
    if event[1] == "supervisor":
        print(f"  event {'.'.join(event)}: {meta}")
    elif event[-1] == "exit":
        print(f"  event process exit: {meta['pid']!r} ({meta['name']}) reason={meta['reason']!r}")


async def _demo() -> None:
    async with Runtime() as rt:
        rt.event_handlers.append(on_event)
        workers = Supervisor.child_spec(
            [Worker.child_spec("w1", name="w1"), Worker.child_spec("w2", name="w2")],
            id="workers",
            strategy="rest_for_one",
        )
        root = await Supervisor.start_link(
            [Counter.child_spec(0, name="counter"), workers],
            strategy="one_for_one",
            max_restarts=3,
            max_seconds=5,
        )
        show(rt, "The tree is up:")
        for n in range(1, 4):
            cast("counter", n)
        print(f"\ncounter after three casts: {await call('counter', 'get')}")

        print("\nCrashing the counter with a ZeroDivisionError inside a call...")
        old = whereis("counter")
        try:
            await call("counter", "divide_by_zero")
        except Exception as err:
            print(f"  the caller got {type(err).__name__}: {err}")
        new = await restarted("counter", old)
        value = await call("counter", "get")
        print(f"  counter restarted: {old!r} -> {new!r}, state back to {value}")

        print("\nKilling w1 (rest_for_one: w1 and w2 restart, the counter is untouched)...")
        old_w1, old_w2 = whereis("w1"), whereis("w2")
        exit_signal("w1", "kill")
        await wait_exit(old_w1)
        new_w2 = await restarted("w2", old_w2)
        print(f"  w1 {old_w1!r} -> {whereis('w1')!r}, w2 {old_w2!r} -> {new_w2!r}")
        print(f"  {await call('w1', 'hi')}; {await call('w2', 'hi')}")
        await sync(root)
        show(rt, "The tree after the crashes:")
        print("\nStopping the runtime: children stop in reverse start order.")
    print("done.")


class _OneLine(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return ""


async def run_demo() -> None:
    """The demo itself (see the module docstring)."""
    await _demo()


def main() -> None:
    """Run the demo on a fresh event loop, with one-line logs."""
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine("  log %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    asyncio.run(run_demo())
