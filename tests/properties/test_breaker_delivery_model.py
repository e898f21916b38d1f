"""Hypothesis state machine: buffered delivery behind circuit breakers loses nothing.

Rules send bursts of numbered messages to two receivers, make receivers go silent (their
deliveries time out and trip the circuit) or answer again, trip and reset circuits by hand,
and let virtual time pass. Always: each receiver got every message at most once and in send
order. At the end, once the receivers answer and time passes: every message sent was
delivered exactly once, in order, or is in the dead letters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from foundation import GenServer, NoReply, Reply, Runtime, call, cast, spawn
from foundation.kernel.api import wait_exit
from foundation.kernel.context import RUNTIME
from foundation.kernel.process import From
from foundation.services.circuit_breaker import BreakerConfig, CircuitBreaker
from foundation.services.delivery import Delivery
from foundation.testing import VirtualClock, VirtualTimeLoop

RECEIVERS = ("r0", "r1")


class Inbox(GenServer):
    async def init(self, args: Any) -> dict[str, Any]:
        return {"got": [], "silent": False}

    async def handle_call(self, request: Any, caller: From, state: dict[str, Any]) -> Any:
        if request == "got":
            return Reply(list(state["got"]), state)
        if state["silent"]:
            return NoReply(state)
        state["got"].append(request)
        return Reply("ack", state)

    async def handle_cast(self, request: Any, state: dict[str, Any]) -> Any:
        state["silent"] = request
        return state


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        self.rt = Runtime(clock=VirtualClock())
        self.sent: dict[str, list[int]] = {r: [] for r in RECEIVERS}
        self.next = 0

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            RUNTIME.set(self.rt)
            return await coro

        return self.loop.run_until_complete(main())

    @initialize(threshold=st.integers(1, 3), reset=st.sampled_from([0.5, 2.0, 5.0]))
    def boot(self, threshold: int, reset: float) -> None:
        async def start() -> None:
            self.rt.start()
            await CircuitBreaker.start_link(name="circuit_breaker")
            for r in RECEIVERS:
                await Inbox.start(name=r)
            cfg = BreakerConfig(failure_threshold=threshold, reset_timeout=reset)
            await Delivery.start_link(config=cfg, timeout=1.0, max_attempts=1_000_000)

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

    @rule(receiver=st.sampled_from(RECEIVERS), count=st.integers(1, 5))
    def send(self, receiver: str, count: int) -> None:
        numbers = list(range(self.next, self.next + count))
        self.next += count
        self.sent[receiver].extend(numbers)

        async def sender() -> None:
            for n in numbers:
                await Delivery.send(receiver, n)

        async def go() -> None:
            await wait_exit(spawn(sender))

        self.run(go())

    @rule(receiver=st.sampled_from(RECEIVERS), silent=st.booleans())
    def silence(self, receiver: str, silent: bool) -> None:
        async def go() -> None:
            cast(receiver, silent)

        self.run(go())

    @rule(receiver=st.sampled_from(RECEIVERS), trip=st.booleans())
    def force(self, receiver: str, trip: bool) -> None:
        async def go() -> None:
            circuit = f"deliver:{receiver}"
            if circuit in self.rt.extensions.get("cb:circuit_breaker", {}):
                await (CircuitBreaker.trip if trip else CircuitBreaker.reset)(circuit)

        self.run(go())

    @rule(seconds=st.sampled_from([0.3, 1.0, 4.0]))
    def wait(self, seconds: float) -> None:
        self.run(self.rt.clock.sleep(seconds))

    def got(self) -> dict[str, list[int]]:
        async def go() -> dict[str, list[int]]:
            return {r: await call(r, "got") for r in RECEIVERS}

        return self.run(go())  # type: ignore[no-any-return]

    @invariant()
    def at_most_once_and_in_order(self) -> None:
        for r, got in self.got().items():
            assert len(got) == len(set(got)), f"{r} got a message twice: {got}"
            assert got == sorted(got), f"{r} got messages out of order: {got}"
            assert set(got) <= set(self.sent[r])

    @rule()
    def settle_and_check_nothing_is_lost(self) -> None:
        async def go() -> list[tuple[Any, Any, str]]:
            for r in RECEIVERS:
                cast(r, False)
            for _ in range(4):
                await self.rt.clock.sleep(30)
            return await Delivery.dead_letters()

        dead = self.run(go())
        for r, got in self.got().items():
            lost = [n for who, n, _ in dead if who == r]
            assert sorted(got + lost) == self.sent[r], (r, got, lost, self.sent[r])


TestDelivery = DeliveryMachine.TestCase
TestDelivery.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
