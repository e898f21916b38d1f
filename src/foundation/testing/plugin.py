"""The pytest plugin (entry point ``pytest11``): a ``runtime`` per test, on a virtual clock.

An ``async def`` test that takes the ``runtime`` fixture runs on the plugin's own loop, with no
marker or configuration. Teardown stops what the test left running (in order, as any shutdown
does), then fails the test if an asyncio task or a thread survived, naming it. A test in which
every process waits and nothing can ever wake them fails at once as a deadlock instead of
hanging. ``@pytest.mark.foundation(clock="real")`` runs on a real-time loop (for tests that talk
to servers), ``autojump=False`` keeps virtual time still unless the test advances it, and any
other keyword goes to ``Runtime(...)``.

Seeds: the session has one seed (``--foundation-seed=N``, else a random one, printed in the
header); the ``foundation_rng`` fixture is a ``random.Random`` drawn from it and the test's id,
so a test that makes its choices with it (chaos, fault injection) replays exactly with the same
seed whatever else runs, and a failing one says the option that replays it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import threading
from collections.abc import Coroutine, Generator, Iterator
from typing import Any

import pytest

from foundation.kernel.context import RUNTIME
from foundation.kernel.runtime import Runtime
from foundation.testing.virtual_clock import VirtualClock, VirtualTimeLoop

__all__ = [
    "Deadlock",
    "clock",
    "foundation_rng",
    "pytest_addoption",
    "pytest_configure",
    "pytest_pyfunc_call",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "runtime",
]

_SEED = pytest.StashKey[int]()


class Deadlock(AssertionError):
    """Every process is waiting and no timer, I/O or outside work can ever wake one."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--foundation-seed",
        type=int,
        default=None,
        help="the seed of the foundation_rng fixture (default: a random one, printed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "foundation(clock='virtual'|'real', autojump=True, **runtime_options): "
        "how the `runtime` fixture builds its Runtime",
    )
    seed = config.getoption("foundation_seed", None)
    config.stash[_SEED] = seed if seed is not None else int.from_bytes(os.urandom(4), "big")


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.stash[_SEED]
    return f"foundation seed: {seed} (replay: --foundation-seed={seed})"


@pytest.fixture
def foundation_rng(request: pytest.FixtureRequest) -> random.Random:
    """A ``random.Random`` for this test, from the session's seed and the test's id."""
    return random.Random(f"{request.config.stash[_SEED]}:{request.node.nodeid}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that drew from ``foundation_rng`` says how to replay its draws."""
    report = yield
    if report.failed and "foundation_rng" in getattr(item, "fixturenames", ()):
        seed = item.config.stash[_SEED]
        report.sections.append(
            ("foundation seed", f"replay this test's draws with --foundation-seed={seed}")
        )
    return report


class _Harness:
    """One test's loop and runtime, and what is needed to drive and check them."""

    def __init__(self, options: dict[str, Any]) -> None:
        real = options.pop("clock", "virtual") == "real"
        autojump = options.pop("autojump", True)
        self.loop: asyncio.AbstractEventLoop
        if real:
            self.loop = asyncio.new_event_loop()
            self.runtime = Runtime(**options)
        else:
            vloop = VirtualTimeLoop(autojump=autojump)
            vloop.on_deadlock = self._deadlock
            self.loop = vloop
            self.runtime = Runtime(clock=VirtualClock(), **options)
        self.threads_before = set(threading.enumerate())
        self.current: asyncio.Task[Any] | None = None
        self.deadlocked = False

    def _deadlock(self) -> None:
        task = self.current
        if task is not None and not task.done():
            self.deadlocked = True
            task.cancel()

    def run(self, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        async def main() -> Any:
            RUNTIME.set(self.runtime)
            self.current = asyncio.current_task()
            try:
                return await coro
            except asyncio.CancelledError:
                if self.deadlocked:
                    raise Deadlock(self._deadlock_report(what)) from None
                raise

        return self.loop.run_until_complete(main())

    def _deadlock_report(self, what: str) -> str:
        waiting = [
            f"{p.pid!r} {p.behaviour}" + (f" ({p.name})" if p.name else "")
            for p in list(self.runtime.procs.values())
        ]
        return (
            f"deadlock during {what}: every process is waiting and no timer, I/O or outside "
            f"work can wake one; processes: {waiting or 'none'}"
        )

    async def _start(self) -> None:
        self.runtime.start()

    def start(self) -> None:
        self.loop.run_until_complete(self._start())

    def close(self) -> list[str]:
        leaks: list[str] = []
        try:
            self.run(self.runtime.shutdown(), "runtime shutdown")
            tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            leaks.extend(f"asyncio task {t!r}" for t in tasks)
            for t in tasks:
                t.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
        leaks.extend(
            f"thread {t.name!r}"
            for t in threading.enumerate()
            if t not in self.threads_before and t.is_alive()
        )
        return leaks


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A fresh Runtime on a virtual clock; stopped and checked for leaks after the test."""
    marker = request.node.get_closest_marker("foundation")
    harness = _Harness(dict(marker.kwargs) if marker is not None else {})
    harness.start()
    request.node._foundation_harness = harness
    yield harness.runtime
    leaks = harness.close()
    if leaks:
        pytest.fail("leaked after the runtime stopped: " + "; ".join(leaks), pytrace=False)


@pytest.fixture
def clock(runtime: Runtime) -> Any:
    """The runtime's clock (``now()``, ``advance(seconds)`` on a virtual clock)."""
    return runtime.clock


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests that use the ``runtime`` fixture on that runtime's loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    harness: _Harness | None = getattr(pyfuncitem, "_foundation_harness", None)
    if harness is None:
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    harness.run(pyfuncitem.obj(**kwargs), f"test {pyfuncitem.name}")
    return True
