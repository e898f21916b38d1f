"""MonitorAgent: checks the health of every registered agent and of the services, on schedule.

Its checks are a schedule in the ``Scheduler`` (``monitor:<id>``, every ``interval`` seconds,
sent to the monitor's registered name), so they survive the monitor's restarts and it never
schedules messages to itself. Each round runs in a probe process the monitor owns: an agent
that answers a system barrier (``sync``) within ``probe_timeout`` is healthy, a slow one
degraded, one that does not answer unhealthy; the services' aggregate comes from
``HealthChecks`` when it runs. A change of an agent's health is recorded in the agent registry
(what ``find_agents(health=...)`` filters on), kept in the monitor's durable state, and
published as the signal ``agent.health.changed`` (``services.health.changed`` for the services).
Actions: ``system_health`` and ``check_now`` (run a round at once and answer when it is done).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

from pydantic import BaseModel

from foundation.agents.action import action
from foundation.agents.agent import Agent, find_agents, set_health
from foundation.errors import FoundationError
from foundation.kernel.api import current_pid, spawn_link
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import cast
from foundation.kernel.messages import Exit
from foundation.kernel.sys import sync
from foundation.services.health import HEALTH, HealthChecks
from foundation.services.scheduler import SCHEDULER, Scheduler
from foundation.services.signal_bus import SignalBus

__all__ = ["MonitorAgent"]

_TICK = "monitor_tick"


class MonitorAgent(Agent):
    """Health of agents and services on the scheduler; see the module docstring."""

    capabilities: ClassVar[tuple[str, ...]] = ("monitor",)
    trap_exit = True
    interval: ClassVar[float] = 5.0
    probe_timeout: ClassVar[float] = 1.0
    scheduler: ClassVar[str] = SCHEDULER
    health_service: ClassVar[str] = HEALTH

    class State(BaseModel):
        """Each agent's last known health, the services' status and how many rounds ran."""

        agents: dict[str, str] = {}
        services: str | None = None
        rounds: int = 0
        changes: list[dict[str, Any]] = []

    async def on_start(self, state: Any) -> Any:
        self._probe: Any = None
        self._waiting: list[Any] = []
        await Scheduler.schedule(
            f"monitor:{self.agent_id}", self.agent_id, _TICK, every=self.interval,
            scheduler=self.scheduler,
        )  # fmt: skip
        return state

    @action
    async def system_health(self, state: State) -> tuple[dict[str, Any], State]:
        """Each agent's health and the services' aggregate, as last checked."""
        return {"agents": dict(state.agents), "services": state.services,
                "rounds": state.rounds}, state  # fmt: skip

    @action
    async def check_now(self, state: State) -> tuple[int, State]:
        """Start a round now (the test twin of a tick); answers the rounds started so far."""
        self._start_round()
        return state.rounds, state

    def _start_round(self) -> None:
        if self._probe is None:
            me = current_pid()
            self._probe = spawn_link(
                _probe_round, me, self.agent_id, self.probe_timeout, self.health_service
            )

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if msg == _TICK:
            self._start_round()
            return state
        if type(msg) is Exit:
            if msg.pid == self._probe:
                self._probe = None
            return state
        return await super().handle_info(msg, state)

    async def handle_cast(self, request: Any, state: Any) -> Any:
        if isinstance(request, tuple) and request[:1] == ("round",):
            return await self._record(request[1], request[2], state)
        return await super().handle_cast(request, state)

    async def _record(self, agents: dict[str, str], services: str | None, state: Any) -> Any:
        changes = []
        for agent_id, health in agents.items():
            before = state.agents.get(agent_id)
            if before != health and (before is not None or health != "healthy"):
                changes.append({"agent": agent_id, "from": before, "to": health,
                                "at": time.time()})  # fmt: skip
                with contextlib.suppress(FoundationError):  # gone meanwhile
                    await set_health(agent_id, health, wait=False)  # type: ignore[arg-type]
        rt = current_runtime()
        bus = rt.whereis(self.signal_bus)
        for change in changes:
            if bus is not None:
                with contextlib.suppress(FoundationError):
                    await SignalBus.publish(self.signal_bus, "agent.health.changed", change,
                                            source=self.agent_id)  # fmt: skip
        if services != state.services and state.services is not None and bus is not None:
            with contextlib.suppress(FoundationError):
                await SignalBus.publish(self.signal_bus, "services.health.changed",
                                        {"from": state.services, "to": services},
                                        source=self.agent_id)  # fmt: skip
        return state.model_copy(
            update={
                "agents": dict(agents.items()),
                "services": services,
                "rounds": state.rounds + 1,
                "changes": [*state.changes, *changes][-100:],
            }
        )


async def _probe_round(monitor: Any, me: str, timeout: float, health: str) -> None:
    """One round: probe every registered agent (but the monitor) and read the services."""
    clock = current_runtime().clock
    results: dict[str, str] = {}
    for info in find_agents():
        if info.id == me:
            continue
        start = clock.now()
        try:
            await sync(info.pid, timeout=timeout)
        except FoundationError:
            results[info.id] = "unhealthy"
            continue
        results[info.id] = "degraded" if clock.now() - start > timeout / 2 else "healthy"
    services = None
    if current_runtime().whereis(health) is not None:
        with contextlib.suppress(FoundationError):
            services = (await HealthChecks.status(health=health))[0]
    cast(monitor, ("round", results, services))
