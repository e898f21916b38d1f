"""Hypothesis state machines: the circuit breaker against a pure model, and buffered delivery
behind it losing nothing.

``BreakerMachine`` drives one circuit on the virtual clock with calls that succeed, raise,
return an error value or raise an ignored exception, slow calls that finish later (their
outcome may arrive after the circuit moved on), trips, resets and clock steps; after every
step the breaker's state equals a pure restatement of the rules (``Model``).

``DeliveryMachine`` sends numbered messages to two receivers, concurrently, while receivers go
silent (deliveries time out and trip their circuits) or answer again, circuits are tripped and
reset by hand, receivers are killed and started again under their name, and virtual time
passes. Always: each message was delivered at most once, in send order per receiver, and never
both delivered and dead-lettered. At the end, with the receivers answering and time passed,
every message sent was delivered exactly once or is in the dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from foundation import GenServer, NoReply, Reply, Runtime, Stop, cast, spawn
from foundation.errors import CircuitOpen, NoProcess
from foundation.kernel.api import exit, receive, send, wait_exit
from foundation.kernel.context import RUNTIME
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.services.breaker_config import BreakerConfig
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.delivery import Delivery
from foundation.testing import VirtualClock, VirtualTimeLoop, wait_until

RECEIVERS = ("r0", "r1")
SETTINGS = settings(
    max_examples=100, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


class _OnVirtualTime:
    """A fresh Runtime on a virtual clock, driven one rule at a time."""

    def setup_runtime(self) -> None:
        self.loop = VirtualTimeLoop()
        self.rt = Runtime(clock=VirtualClock())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            RUNTIME.set(self.rt)
            return await coro

        return self.loop.run_until_complete(main())

    def stop_runtime(self) -> None:
        async def stop() -> list[str]:
            await self.rt.shutdown()
            me = asyncio.current_task()
            return [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]

        try:
            assert self.run(stop()) == []
        finally:
            self.loop.close()


# -- the breaker against a pure model -------------------------------------------------------------


@dataclass
class Model:
    """The breaker's rules, restated: one circuit, as a pure function of the clock."""

    threshold: int
    window: float
    reset: float
    successes_needed: int
    state: str = "closed"
    failures: list[float] = field(default_factory=list)
    until: float = 0.0
    successes: int = 0
    gen: int = 0
    trial: bool = False

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.until:
            self.move("half_open", now)

    def move(self, to: str, now: float) -> None:
        self.state, self.failures, self.successes, self.trial = to, [], 0, False
        self.gen += 1
        if to == "open":
            self.until = now + self.reset

    def permit(self, now: float) -> tuple[int, bool] | None:
        """(generation, is a trial), or None: refused with CircuitOpen."""
        self.tick(now)
        if self.state == "closed":
            return (self.gen, False)
        if self.state == "half_open" and not self.trial:
            self.trial = True
            return (self.gen, True)
        return None

    def outcome(self, ok: bool | None, gen: int, trial: bool, now: float) -> None:
        self.tick(now)
        if gen != self.gen:
            return
        if trial:
            self.trial = False
        if ok is None:
            return
        if self.state == "half_open" and trial:
            if not ok:
                self.move("open", now)
                return
            self.successes += 1
            if self.successes >= self.successes_needed:
                self.move("closed", now)
        elif self.state == "closed" and not ok:
            self.failures = [t for t in [*self.failures, now] if t > now - self.window]
            if len(self.failures) >= self.threshold:
                self.move("open", now)


class Ignored(LookupError):
    """An exception the circuit is told to ignore."""


async def outcome_fn(kind: str) -> Any:
    if kind == "raise":
        raise OSError("service down")
    if kind == "ignored":
        raise Ignored("not the service's fault")
    return {"error": "returned"} if kind == "return_error" else "ok"


def verdict(kind: str) -> bool | None:
    return {"ok": True, "raise": False, "return_error": False, "ignored": None}[kind]


class BreakerMachine(_OnVirtualTime, RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.setup_runtime()
        self.slow: list[tuple[Pid, tuple[int, bool]]] = []  # in-flight calls, with their permit

    @initialize(
        threshold=st.integers(1, 3),
        window=st.sampled_from([1.0, 4.0]),
        reset=st.sampled_from([1.0, 2.5]),
        successes=st.integers(1, 2),
    )
    def boot(self, threshold: int, window: float, reset: float, successes: int) -> None:
        self.model = Model(threshold, window, reset, successes)

        async def start() -> None:
            self.rt.start()
            await CircuitBreaker.start_link()
            await CircuitBreaker.configure(
                "svc", failure_threshold=threshold, window=window, reset_timeout=reset,
                success_threshold=successes, ignore=(Ignored,),
                is_failure=lambda r: isinstance(r, dict) and "error" in r,
            )  # fmt: skip

        self.run(start())

    def teardown(self) -> None:
        self.stop_runtime()

    def now(self) -> float:
        return self.rt.clock.now()

    @rule(kind=st.sampled_from(["ok", "raise", "return_error", "ignored"]))
    def quick_call(self, kind: str) -> None:
        permit = self.model.permit(self.now())
        assert self.run(attempt(lambda: outcome_fn(kind))) == ("ran" if permit else "refused")
        if permit is not None:
            self.model.outcome(verdict(kind), *permit, self.now())

    @precondition(lambda self: len(self.slow) < 2)
    @rule()
    def start_slow_call(self) -> None:
        """A call that holds its permit (maybe the half-open trial) until finished."""
        permit = self.model.permit(self.now())
        phase: list[str] = []

        async def slow_body() -> Any:
            phase.append("ran")
            return await outcome_fn(await receive())

        async def caller() -> None:
            if await attempt(slow_body) == "refused":
                phase.append("refused")

        async def go() -> Pid:
            pid = spawn(caller)
            await wait_until(lambda: phase)
            return pid

        pid = self.run(go())
        assert phase == (["ran"] if permit else ["refused"])
        if permit is not None:
            self.slow.append((pid, permit))

    @precondition(lambda self: self.slow)
    @rule(kind=st.sampled_from(["ok", "raise", "return_error", "ignored"]), first=st.booleans())
    def finish_slow_call(self, kind: str, first: bool) -> None:
        pid, permit = self.slow.pop(0 if first else -1)
        self.run(_finish(pid, kind))
        self.model.outcome(verdict(kind), *permit, self.now())

    @rule(trip=st.booleans())
    def force(self, trip: bool) -> None:
        self.run((CircuitBreaker.trip if trip else CircuitBreaker.reset)("svc"))
        self.model.move("open" if trip else "closed", self.now())

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5]))
    def wait(self, seconds: float) -> None:
        self.run(self.rt.clock.sleep(seconds))
        self.model.tick(self.now())

    @invariant()
    def state_matches_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        self.model.tick(self.now())
        assert self.run(CircuitBreaker.state("svc")) == self.model.state


async def attempt(fn: Any) -> str:
    """A call through the circuit: "ran" (whatever fn did) or "refused" (CircuitOpen)."""
    try:
        await CircuitBreaker.call("svc", fn)
    except CircuitOpen:
        return "refused"
    except (OSError, Ignored):
        pass
    return "ran"


async def _finish(pid: Pid, kind: str) -> None:
    send(pid, kind)
    await wait_exit(pid)


TestBreaker = BreakerMachine.TestCase
TestBreaker.settings = SETTINGS


# -- delivery behind the breaker ------------------------------------------------------------------


class Inbox(GenServer):
    """Records each delivery in a log that outlives it; silent: never answers; doomed: crashes
    right after acknowledging its next delivery (the acknowledgement races its death)."""

    async def init(self, log: list[int]) -> dict[str, Any]:
        return {"log": log, "silent": False, "doomed": False}

    async def handle_call(self, request: Any, caller: From, state: dict[str, Any]) -> Any:
        if state["silent"]:
            return NoReply(state)
        state["log"].append(request)
        if state["doomed"]:
            return Stop("crashed after the ack", state, reply="ack")
        return Reply("ack", state)

    async def handle_cast(self, request: Any, state: dict[str, Any]) -> Any:
        if request == "doomed":
            state["doomed"] = True
        else:
            state["silent"] = request
        return state


def poke(receiver: str, message: Any) -> None:
    """Tell a receiver how to behave, if it is alive (a dead one is started again later)."""
    with contextlib.suppress(NoProcess):
        cast(receiver, message)


class DeliveryMachine(_OnVirtualTime, RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.setup_runtime()
        self.sent: dict[str, list[int]] = {r: [] for r in RECEIVERS}
        self.got: dict[str, list[int]] = {r: [] for r in RECEIVERS}
        self.next = 0

    @initialize(
        threshold=st.integers(1, 3),
        reset=st.sampled_from([0.5, 2.0, 5.0]),
        max_buffer=st.sampled_from([2, 5, 100]),
    )
    def boot(self, threshold: int, reset: float, max_buffer: int) -> None:
        async def start() -> None:
            self.rt.start()
            await CircuitBreaker.start_link()
            for r in RECEIVERS:
                await Inbox.start(self.got[r], name=r)
            cfg = BreakerConfig(failure_threshold=threshold, reset_timeout=reset)
            await Delivery.start_link(
                config=cfg, timeout=1.0, max_attempts=1_000_000, max_buffer=max_buffer,
                retry_delay=0.5,
            )  # fmt: skip

        self.run(start())

    def teardown(self) -> None:
        self.stop_runtime()

    def numbers(self, receiver: str, count: int) -> list[int]:
        numbers = list(range(self.next, self.next + count))
        self.next += count
        self.sent[receiver].extend(numbers)
        return numbers

    @rule(counts=st.tuples(st.integers(0, 4), st.integers(0, 4)))
    def send_concurrently(self, counts: tuple[int, int]) -> None:
        batches = {r: self.numbers(r, n) for r, n in zip(RECEIVERS, counts, strict=True)}

        async def sender(receiver: str, numbers: list[int]) -> None:
            for n in numbers:
                await Delivery.send(receiver, n)

        async def go() -> None:
            for pid in [spawn(sender, r, ns) for r, ns in batches.items()]:
                await wait_exit(pid)

        self.run(go())

    @rule(receiver=st.sampled_from(RECEIVERS), silent=st.booleans())
    def silence(self, receiver: str, silent: bool) -> None:
        async def go() -> None:
            poke(receiver, silent)

        self.run(go())

    @rule(receiver=st.sampled_from(RECEIVERS), trip=st.booleans())
    def force(self, receiver: str, trip: bool) -> None:
        async def go() -> None:
            circuit = f"deliver:{receiver}"
            if CircuitBreaker.peek(circuit) is not None:
                await (CircuitBreaker.trip if trip else CircuitBreaker.reset)(circuit)

        self.run(go())

    @rule(receiver=st.sampled_from(RECEIVERS))
    def doom_receiver(self, receiver: str) -> None:
        async def go() -> None:
            poke(receiver, "doomed")

        self.run(go())

    @rule()
    def restart_dead_receivers(self) -> None:
        self.run(self.revive())

    async def revive(self) -> None:
        for r in RECEIVERS:
            if self.rt.whereis(r) is None:
                await Inbox.start(self.got[r], name=r)

    @rule(receiver=st.sampled_from(RECEIVERS))
    def kill_and_restart_receiver(self, receiver: str) -> None:
        async def go() -> None:
            pid = self.rt.whereis(receiver)
            if pid is not None:
                exit(pid, "kill")
                await wait_exit(pid)
            await self.revive()

        self.run(go())

    @rule(seconds=st.sampled_from([0.3, 1.0, 4.0]))
    def wait(self, seconds: float) -> None:
        self.run(self.rt.clock.sleep(seconds))

    def dead(self) -> dict[str, list[int]]:
        letters = self.run(Delivery.dead_letters())
        return {r: [n for who, n, _ in letters if who == r] for r in RECEIVERS}

    @invariant()
    def at_most_once_in_order_and_never_both(self) -> None:
        dead = self.dead()
        for r, got in self.got.items():
            assert len(got) == len(set(got)), f"{r} got a message twice: {got}"
            assert got == sorted(got), f"{r} got messages out of order: {got}"
            assert set(got) <= set(self.sent[r])
            assert not set(got) & set(dead[r]), f"{r}: delivered and dead-lettered"

    @rule()
    def settle_and_check_nothing_is_lost(self) -> None:
        async def go() -> None:
            await self.revive()
            for r in RECEIVERS:
                cast(r, False)
            for _ in range(4):
                await self.rt.clock.sleep(30)

        self.run(go())
        dead = self.dead()
        for r, got in self.got.items():
            assert sorted(got + dead[r]) == self.sent[r], (r, got, dead[r], self.sent[r])


TestDelivery = DeliveryMachine.TestCase
TestDelivery.settings = SETTINGS
