"""Hypothesis state machine: a real Supervisor against a small model of OTP's restart rules.

Rules start, stop, crash, terminate, restart and delete children and move the virtual clock;
after every step the live children (ids, whether each runs, and whether its pid changed), the
supervisor's liveness and the absence of leaked tasks must match the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from foundation import GenServer, Pid, Reply, Runtime, Stop, Supervisor, call
from foundation import exit as exit_signal
from foundation.errors import ChildRunning, FoundationError
from foundation.kernel.api import is_alive, wait_exit
from foundation.kernel.context import RUNTIME
from foundation.kernel.sys import sync
from foundation.testing import VirtualClock, VirtualTimeLoop

NORMAL = ("normal", "shutdown")


class Child(GenServer):
    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        if isinstance(request, tuple) and request[0] == "stop":
            return Stop(request[1], state, reply="ok")
        return Reply("pong", state)


@dataclass
class MChild:
    id: str
    restart: str
    alive: bool = True
    generation: int = 0


class Model:
    """OTP supervisor semantics, restated independently of the implementation."""

    def __init__(self, strategy: str, max_restarts: int, max_seconds: float) -> None:
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.children: list[MChild] = []
        self.alive = True
        self.restarts: list[float] = []
        self.now = 0.0

    def find(self, id: str) -> MChild:
        return next(c for c in self.children if c.id == id)

    def on_exit(self, child: MChild, reason: str) -> None:
        child.alive = False
        if child.restart == "temporary":
            self.children.remove(child)
            return
        if child.restart == "transient" and reason in NORMAL:
            return
        self.restarts = [t for t in self.restarts if self.now - t <= self.max_seconds]
        self.restarts.append(self.now)
        if len(self.restarts) > self.max_restarts:
            self.alive = False
            self.children = []
            return
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self.children)
        else:
            group = self.children[self.children.index(child) :]
        for c in group:
            if c is not child and c.restart == "temporary":
                self.children.remove(c)
                continue
            c.alive = True
            c.generation += 1


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        self.rt = Runtime(clock=VirtualClock())
        self.counter = 0
        self.pids: dict[str, tuple[int, Pid | None]] = {}

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            RUNTIME.set(self.rt)
            return await coro

        return self.loop.run_until_complete(main())

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        max_restarts=st.integers(0, 3),
        max_seconds=st.integers(1, 10),
    )
    def boot(self, strategy: str, max_restarts: int, max_seconds: int) -> None:
        async def start() -> Pid:
            self.rt.start()
            return await Supervisor.start(
                [], strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
            )

        self.sup = self.run(start())
        self.model = Model(strategy, max_restarts, max_seconds)

    def teardown(self) -> None:
        async def stop() -> list[str]:
            await self.rt.shutdown()
            me = asyncio.current_task()
            return [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]

        try:
            leaked = self.run(stop())
            assert leaked == [], f"leaked tasks: {leaked}"
        finally:
            self.loop.close()

    async def _settle(self, dead: Pid | None = None) -> None:
        if dead is not None:
            await wait_exit(dead)
        if is_alive(self.sup):
            # The supervisor may escalate while we wait: the model says so too.
            with contextlib.suppress(FoundationError):
                await sync(self.sup)

    async def _children(self) -> dict[str, Pid | None]:
        infos = await Supervisor.which_children(self.sup)
        return {str(c.id): c.pid for c in infos}

    @precondition(lambda self: self.model.alive)
    @rule(restart=st.sampled_from(["permanent", "transient", "temporary"]))
    def start_child(self, restart: str) -> None:
        self.counter += 1
        cid = f"c{self.counter}"
        spec = Child.child_spec(None, id=cid, restart=restart)  # type: ignore[arg-type]
        self.run(Supervisor.start_child(self.sup, spec))
        self.model.children.append(MChild(cid, restart))

    def _live(self) -> list[MChild]:
        return [c for c in self.model.children if c.alive]

    @precondition(lambda self: self.model.alive and any(c.alive for c in self.model.children))
    @rule(data=st.data(), reason=st.sampled_from(["normal", "shutdown", "crash"]))
    def stop_or_crash(self, data: st.DataObject, reason: str) -> None:
        child = data.draw(st.sampled_from(self._live()))

        async def act() -> None:
            pid = (await self._children())[child.id]
            assert pid is not None
            if reason == "crash":
                exit_signal(pid, "kill")
            else:
                await call(pid, ("stop", reason))
            await self._settle(pid)

        self.run(act())
        self.model.on_exit(child, reason)

    @precondition(lambda self: self.model.alive and bool(self.model.children))
    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        child = data.draw(st.sampled_from(self.model.children))
        self.run(Supervisor.terminate_child(self.sup, child.id))
        child.alive = False
        if child.restart == "temporary":
            self.model.children.remove(child)

    @precondition(lambda self: self.model.alive and bool(self.model.children))
    @rule(data=st.data())
    def restart_child(self, data: st.DataObject) -> None:
        child = data.draw(st.sampled_from(self.model.children))

        async def act() -> str:
            try:
                await Supervisor.restart_child(self.sup, child.id)
            except ChildRunning:
                return "running"
            return "ok"

        outcome = self.run(act())
        assert outcome == ("running" if child.alive else "ok")
        if not child.alive:
            child.alive = True
            child.generation += 1

    @precondition(lambda self: self.model.alive and bool(self.model.children))
    @rule(data=st.data())
    def delete_child(self, data: st.DataObject) -> None:
        child = data.draw(st.sampled_from(self.model.children))

        async def act() -> str:
            try:
                await Supervisor.delete_child(self.sup, child.id)
            except ChildRunning:
                return "running"
            return "ok"

        outcome = self.run(act())
        assert outcome == ("running" if child.alive else "ok")
        if not child.alive:
            self.model.children.remove(child)

    @rule(dt=st.sampled_from([0.5, 1.0, 2.5, 5.0, 11.0]))
    def advance(self, dt: float) -> None:
        clock = self.rt.clock
        assert isinstance(clock, VirtualClock)
        clock.advance(dt)
        self.model.now += dt
        self.run(self._settle())

    @invariant()
    def tree_matches_model(self) -> None:
        if not hasattr(self, "model"):
            return
        alive = is_alive(self.sup)
        assert alive == self.model.alive
        if not alive:
            return
        real = self.run(self._children())
        assert list(real) == [c.id for c in self.model.children]
        for c in self.model.children:
            pid = real[c.id]
            assert (pid is not None) == c.alive, (c, pid)
            if pid is not None:
                assert is_alive(pid)
            prev = self.pids.get(c.id)
            if prev is not None and prev[0] == c.generation and c.alive:
                assert prev[1] is pid, f"{c.id} changed pid without a restart"
            if prev is not None and prev[0] != c.generation:
                assert prev[1] is not pid
            self.pids[c.id] = (c.generation, pid)


SupervisorMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_supervisor_matches_otp_model = SupervisorMachine.TestCase
