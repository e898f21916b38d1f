"""Hypothesis state machine: scheduler ticks land exactly on their grid, once, through restarts.

Rules add (or replace) durable periodic schedules, cancel them, let virtual time pass, crash the
target (its supervisor restarts it at once), stop it for a while and start it again, and crash
the scheduler itself (it reloads its schedules from the store). After each step, every tick the
target received is ``anchor + k * every`` for a grid point passed while its schedule was active
and the target was up, and every such grid point gave exactly one tick: none missing, none
twice, none early or late, none while the target was down (the policy is "skip"). A tick due
at the very instant a rule ran (a step boundary) may run just before or just after that rule:
there, a tick may be missing, but one that came must be a grid point of that instant, once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from foundation import GenServer, Runtime, Supervisor
from foundation.kernel.context import RUNTIME, current_runtime
from foundation.persistence import MemoryStore
from foundation.services import Scheduler
from foundation.testing import VirtualClock, VirtualTimeLoop, crash, restarted

NAMES = ("a", "b", "c")
EPS = 1e-6


class Recorder(GenServer):
    """Appends every tick it gets, with its time, to a list owned by the test."""

    async def handle_info(self, msg: Any, log: list[tuple[str, float]]) -> Any:
        log.append((msg, current_runtime().clock.now()))
        return log


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        self.rt = Runtime(clock=VirtualClock(), store=MemoryStore())
        self.log: list[tuple[str, float]] = []
        self.model: dict[str, tuple[float, float]] = {}  # name -> (anchor, every)
        self.history: list[tuple[str, float, float, float]] = []  # (name, anchor, every, end)
        self.down: list[tuple[float, float]] = []  # the target's downtimes
        self.down_since: float | None = None
        self.edges: list[float] = [0.0]  # instants at which a rule ran

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            RUNTIME.set(self.rt)
            return await coro

        return self.loop.run_until_complete(main())

    @initialize()
    def boot(self) -> None:
        async def start() -> None:
            self.rt.start()
            self.sup = await Supervisor.start_link(
                [Scheduler.child_spec(epoch=0.0), Recorder.child_spec(self.log, name="target")],
                strategy="one_for_one",
                max_restarts=1_000,
            )

        self.run(start())

    def teardown(self) -> None:
        async def stop() -> list[str]:
            await self.rt.shutdown()
            me = asyncio.current_task()
            return [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]

        try:
            assert self.run(stop()) == []
        finally:
            self.loop.close()

    def _edge(self) -> float:
        now: float = self.rt.clock.now()
        self.edges.append(now)
        return now

    def _end(self, name: str) -> None:
        if name in self.model:
            anchor, every = self.model.pop(name)
            self.history.append((name, anchor, every, self.rt.clock.now()))

    @rule(name=st.sampled_from(NAMES), every=st.sampled_from([0.5, 1.0, 2.5]))
    def add(self, name: str, every: float) -> None:
        self._edge()
        self._end(name)
        job = self.run(Scheduler.schedule(name, "target", name, every=every))
        self.model[name] = (job.anchor, every)

    @rule(name=st.sampled_from(NAMES))
    def cancel(self, name: str) -> None:
        self._edge()
        self.run(Scheduler.cancel(name))
        self._end(name)

    @rule(seconds=st.sampled_from([0.3, 1.0, 3.7]))
    def wait(self, seconds: float) -> None:
        self.run(self.rt.clock.sleep(seconds))

    def _crash(self, name: str) -> None:
        self._edge()

        async def go() -> None:
            old = self.rt.whereis(name)
            assert old is not None
            crash(old)
            await restarted(name, old)

        self.run(go())

    @precondition(lambda self: self.down_since is None)
    @rule()
    def crash_target(self) -> None:
        self._crash("target")

    @rule()
    def crash_scheduler(self) -> None:
        self._crash("scheduler")

    @precondition(lambda self: self.down_since is None)
    @rule()
    def stop_target(self) -> None:
        self.down_since = self._edge()
        self.run(Supervisor.terminate_child(self.sup, "target"))

    @precondition(lambda self: self.down_since is not None)
    @rule()
    def start_target(self) -> None:
        assert self.down_since is not None
        self.down.append((self.down_since, self._edge()))
        self.down_since = None
        self.run(Supervisor.restart_child(self.sup, "target"))

    @invariant()
    def ticks_are_exactly_on_the_grid(self) -> None:
        now = self.rt.clock.now()
        periods = [*self.history, *((n, a, e, now) for n, (a, e) in self.model.items())]
        down = [*self.down, *([(self.down_since, math.inf)] if self.down_since is not None else [])]
        expected: list[tuple[str, float]] = []
        at_edges: list[tuple[str, float]] = []  # grid points at an edge: may or may not tick
        edges = [*self.edges, now]

        def at_edge(t: float) -> bool:
            return any(abs(t - e) <= EPS for e in edges)

        for name, anchor, every, end in periods:
            k = 1
            while (t := anchor + k * every) <= end + EPS:
                if at_edge(t):
                    at_edges.append((name, t))
                elif not any(d <= t <= u for d, u in down):
                    expected.append((name, t))
                k += 1
        got = sorted(tick for tick in self.log if not at_edge(tick[1]))
        assert len(got) == len(expected), (got, sorted(expected))
        for (gn, gt), (wn, wt) in zip(got, sorted(expected), strict=True):
            assert gn == wn and abs(gt - wt) < EPS, (got, sorted(expected))
        # a tick at an edge is one of the grid points there, each at most once
        for name, t in (tick for tick in self.log if at_edge(tick[1])):
            match = next((m for m in at_edges if m[0] == name and abs(m[1] - t) <= EPS), None)
            assert match is not None, ("off-grid tick at a step boundary", name, t)
            at_edges.remove(match)


TestScheduler = SchedulerMachine.TestCase
TestScheduler.settings = settings(
    max_examples=100,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
