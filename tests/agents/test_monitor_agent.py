"""MonitorAgent: agent health on the scheduler, in the registry, as signals; nothing self-timed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from foundation import Runtime, Supervisor, spawn
from foundation.agents import (
    Agent,
    AgentSupervisor,
    MonitorAgent,
    action,
    find_agents,
    run,
    start_agent,
)
from foundation.kernel.api import receive, wait_exit
from foundation.kernel.context import current_runtime
from foundation.persistence import MemoryStore
from foundation.services import Scheduler, Services, SignalBus
from foundation.services.signal_bus import Signal
from foundation.testing import crash, restarted


class Sleepy(Agent):
    capabilities = ("nap",)

    class State(BaseModel):
        naps: int = 0

    class Nap(BaseModel):
        seconds: float

    @action
    async def nap(self, params: Nap, state: State) -> tuple[int, State]:
        await current_runtime().clock.sleep(params.seconds)
        return state.naps + 1, state.model_copy(update={"naps": state.naps + 1})


class Monitor(MonitorAgent):
    interval = 2.0
    probe_timeout = 0.5


async def start_system(runtime: Runtime) -> None:
    runtime.store = MemoryStore()
    await Supervisor.start_link(
        [*Services.child_specs(scheduler_epoch=0.0), *AgentSupervisor.child_specs()],
        strategy="rest_for_one",
    )
    await start_agent(Sleepy, "s1")
    await start_agent(Sleepy, "s2")
    await start_agent(Monitor, "monitor")


async def test_its_checks_are_a_durable_schedule_that_survives_its_restarts(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    job = await Scheduler.get("monitor:monitor")
    assert (job.target, job.every, job.durable) == ("monitor", 2.0, True)
    await runtime.clock.sleep(4.1)
    assert (await run("monitor", "system_health"))["rounds"] == 2
    old = runtime.whereis("monitor")
    crash(old)  # type: ignore[arg-type]
    await restarted("monitor", old)
    await runtime.clock.sleep(2.1)
    health = await run("monitor", "system_health")
    assert health["rounds"] == 3  # kept in its durable state, and the ticks went on
    assert health["agents"] == {"s1": "healthy", "s2": "healthy"}
    assert health["services"] == "healthy"


async def test_a_stuck_agent_is_marked_unhealthy_announced_and_recovers(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    seen: list[Signal] = []

    async def listener() -> None:
        await SignalBus.subscribe("signal_bus", "agent.health.*")
        while True:
            seen.append(await receive())

    watcher = spawn(listener)
    await runtime.clock.sleep(0.01)

    async def stuck() -> None:
        await run("s1", "nap", {"seconds": 5}, timeout=10)

    napper = spawn(stuck)
    await runtime.clock.sleep(2.6)  # a round while s1 naps (its probe gives up at 2.5)
    health = await run("monitor", "system_health")
    assert health["agents"]["s1"] == "unhealthy"
    assert health["agents"]["s2"] == "healthy"
    assert [(s.data["agent"], s.data["to"]) for s in seen] == [("s1", "unhealthy")]
    await wait_exit(napper)
    await runtime.clock.sleep(0.01)
    assert [a.id for a in find_agents("nap", health="unhealthy")] == ["s1"]  # recorded by s1
    await runtime.clock.sleep(2.0)  # the next round (at 6) finds it answering again
    assert (await run("monitor", "system_health"))["agents"]["s1"] == "healthy"
    await runtime.clock.sleep(0.01)
    assert [a.id for a in find_agents("nap", health="healthy")] == ["s1", "s2"]
    assert [s.data["to"] for s in seen] == ["unhealthy", "healthy"]
    crash(watcher)
    _ = Any
