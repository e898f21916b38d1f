"""FND005: a test that sleeps, or polls the wall clock, instead of waiting on a condition."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import (
    ModuleContext,
    Rule,
    Violation,
    call_name,
    dotted,
    violation,
    walk_local,
)

__all__ = ["SleepInTests"]

_SLEEPS = frozenset({"time.sleep", "asyncio.sleep", "trio.sleep", "anyio.sleep"})
_DELAY_KEYWORDS = frozenset({"delay", "seconds", "secs"})
_CLOCKS = frozenset(
    {
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.monotonic_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
    }
)
_LOOP_GETTERS = frozenset({"get_running_loop", "get_event_loop"})


def _is_zero(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value == 0


def _delay(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg in _DELAY_KEYWORDS:
            return keyword.value
    return None


def _is_loop(receiver: ast.expr) -> bool:
    """``loop``, ``self._loop``, ``asyncio.get_running_loop()``: something that is an event loop."""
    if isinstance(receiver, ast.Call):
        text = dotted(receiver.func)
        return text is not None and text.rpartition(".")[2] in _LOOP_GETTERS
    text = dotted(receiver)
    return text is not None and "loop" in text.rpartition(".")[2].lower()


class SleepInTests(Rule):
    """FND005 sleep or wall-clock polling in tests (only in files matched by ``test-paths``).

    Reported, in test files only:

    - a call to ``time.sleep``, ``asyncio.sleep``, ``trio.sleep`` or ``anyio.sleep`` (through
      any import alias) whose delay is anything but the literal ``0``: a test that sleeps is
      slow when the delay is long and flaky when it is short;
    - a call to ``time.time/time_ns/monotonic/monotonic_ns/perf_counter/perf_counter_ns()`` or
      to ``<loop>.time()`` (a receiver named like ``loop``, or ``asyncio.get_running_loop()``)
      inside the test or body of a ``while`` loop (not in a function nested in it): polling the
      clock until something happens.

    Not reported: ``await asyncio.sleep(0)`` (a plain yield to the loop), reading the clock
    once outside a loop, and any of this in non-test code.
    """

    code = "FND005"
    name = "sleep-in-tests"
    hint = (
        "run on the virtual clock and wait for the condition itself "
        "(foundation.testing.wait_until, sync, or an Event the code under test sets)"
    )
    tests_only = True

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        polled: dict[int, ast.Call] = {}
        for node in ctx.nodes:
            if isinstance(node, ast.Call):
                if ctx.qualname(node.func) in _SLEEPS:
                    delay = _delay(node)
                    if delay is None or not _is_zero(delay):
                        yield violation(
                            node,
                            f"`{call_name(node)}(...)` in a test waits for time to pass "
                            "instead of for the condition",
                        )
            elif isinstance(node, ast.While):
                for inner in walk_local([node.test, *node.body, *node.orelse]):
                    if isinstance(inner, ast.Call) and self._reads_clock(ctx, inner):
                        polled[id(inner)] = inner
        for call in polled.values():
            yield violation(
                call,
                f"`{call_name(call)}()` read in a `while` loop polls the wall clock "
                "until something happens",
            )

    @staticmethod
    def _reads_clock(ctx: ModuleContext, call: ast.Call) -> bool:
        if ctx.qualname(call.func) in _CLOCKS:
            return True
        func = call.func
        return (
            isinstance(func, ast.Attribute)
            and func.attr == "time"
            and not call.args
            and _is_loop(func.value)
        )
