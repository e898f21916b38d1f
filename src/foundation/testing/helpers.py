"""Deterministic test helpers: wait on events, never on the wall clock.

``wait_until`` re-checks a predicate after each message the runtime handles and each process
exit; ``sync`` is a barrier that makes any cast synchronous; ``crash`` and ``restarted`` drive
supervision; ``assert_emitted`` verifies (never waits for) kernel and telemetry events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from foundation.errors import FoundationError, InvalidArgument
from foundation.kernel.api import ExitWaiter, wait_exit
from foundation.kernel.api import exit as exit_signal
from foundation.kernel.context import current_runtime
from foundation.kernel.pid import Pid
from foundation.kernel.sys import get_state, sync

__all__ = [
    "WaitTimeout",
    "assert_emitted",
    "crash",
    "get_state",
    "restarted",
    "sync",
    "wait_until",
]


class WaitTimeout(FoundationError, AssertionError):
    """Raised when ``wait_until``/``restarted`` saw no success before the timeout."""

    code = "wait_timeout"


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, *, message: str | None = None
) -> Any:
    """Return the predicate's first truthy value, re-checking after every handled message.

    ``timeout`` is in runtime-clock seconds (virtual in tests). The predicate must be a plain
    function (not async) that only reads state.
    """
    rt = current_runtime()
    value = predicate()
    if asyncio.iscoroutine(value):
        value.close()
        raise InvalidArgument("wait_until needs a plain predicate, not an async one")
    if value:
        return value
    loop = rt.loop
    signal: list[asyncio.Future[None]] = []
    expired = False

    def wake() -> None:
        if signal and not signal[0].done():
            signal[0].set_result(None)

    def on_timeout() -> None:
        nonlocal expired
        expired = True
        wake()

    timer = rt.clock.call_later(timeout, on_timeout)
    rt.watchers.append(wake)
    try:
        while True:
            signal[:] = [loop.create_future()]
            await signal[0]
            value = predicate()
            if value:
                return value
            if expired:
                what = message or getattr(predicate, "__qualname__", repr(predicate))
                raise WaitTimeout(
                    f"wait_until({what}) still false after {timeout}s; last value: {value!r}",
                    context={"last_value": repr(value), "timeout": timeout},
                )
    finally:
        timer.cancel()
        rt.watchers.remove(wake)


def crash(target: Any, reason: Any = "kill") -> ExitWaiter:
    """Send ``target`` an exit signal (default ``"kill"``: reason ``killed``, untrappable).

    Takes effect at the target's next suspension point; ``await crash(...)`` to wait for it.
    """
    waiter = wait_exit(target)
    exit_signal(target, reason)
    return waiter


async def restarted(name: str, old_pid: Pid | None, timeout: float = 5.0) -> Pid:
    """Wait until ``name`` is held by a process other than ``old_pid`` that finished starting."""
    rt = current_runtime()

    def new_pid() -> Pid | None:
        proc = rt.names.get(name)
        if proc is None or proc.pid is old_pid or proc.status == "starting":
            return None
        return proc.pid

    result: Pid = await wait_until(new_pid, timeout, message=f"restart of {name!r}")
    return result


def _prefix(event: Any) -> tuple[str, ...]:
    if isinstance(event, str):
        return tuple(event.split("."))
    if isinstance(event, tuple | list) and all(isinstance(p, str) for p in event):
        return tuple(event)
    raise InvalidArgument(f"an event name is a dotted str or a tuple of str, not {event!r}")


class Emitted:
    """The events captured by ``assert_emitted``: ``(event, measurements, metadata)`` each."""

    def __init__(self) -> None:
        self.events: list[tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]] = []

    def matching(
        self,
        prefix: tuple[str, ...],
        predicate: Callable[[dict[str, Any], dict[str, Any]], bool] | None,
    ) -> list[tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]]:
        return [
            e
            for e in self.events
            if e[0][: len(prefix)] == prefix and (predicate is None or predicate(e[1], e[2]))
        ]


@contextlib.contextmanager
def assert_emitted(
    event_prefix: Any,
    predicate: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
) -> Iterator[Emitted]:
    """Capture events emitted inside the block; fail if none matches ``event_prefix``/``predicate``.

    The handler is attached before the block runs, so no event can be missed. ``predicate``
    receives ``(measurements, metadata)``. For verifying, never for waiting.
    """
    prefix = _prefix(event_prefix)
    rt = current_runtime()
    captured = Emitted()

    def handler(event: tuple[str, ...], measurements: dict[str, Any], meta: dict[str, Any]) -> None:
        captured.events.append((event, dict(measurements), dict(meta)))

    rt.event_handlers.append(handler)
    try:
        yield captured
    finally:
        with contextlib.suppress(ValueError):
            rt.event_handlers.remove(handler)
    if not captured.matching(prefix, predicate):
        seen = [".".join(e[0]) for e in captured.events]
        raise AssertionError(
            f"no event matching {'.'.join(prefix)!r}"
            + (" and the predicate" if predicate else "")
            + f" was emitted; seen: {seen}"
        )
