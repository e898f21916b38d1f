"""Agent: validated actions, durable state, registration by capability, signals, hooks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from foundation import Runtime, Supervisor, call
from foundation.agents import (
    AGENT_REGISTRY,
    Agent,
    AgentSupervisor,
    action,
    agent_key,
    find_agents,
    run,
    set_health,
    start_agent,
    stop_agent,
)
from foundation.errors import (
    InvalidArgument,
    NoProcess,
    ProcessExited,
    UnknownAction,
    ValidationError,
)
from foundation.persistence import MemoryStore
from foundation.services.signal_bus import Signal, SignalBus
from foundation.testing import assert_emitted, crash, restarted, sync, wait_until


class Counter(Agent):
    capabilities = ("count", "math")
    signals = ("counter.**",)

    class State(BaseModel):
        total: int = 0
        seen: list[str] = []
        starts: int = 0

    class AddParams(BaseModel):
        n: int
        note: str = ""

    @action
    async def add(self, params: AddParams, state: State) -> tuple[int, State]:
        """Add n to the total."""
        new = state.model_copy(update={"total": state.total + params.n})
        return new.total, new

    @action
    async def total(self, state: State) -> tuple[int, State]:
        return state.total, state

    @action
    async def refuse(self, state: State) -> tuple[None, State]:
        raise InvalidArgument("refused on purpose")

    @action
    async def explode(self, state: State) -> tuple[None, State]:
        changed = state.model_copy(update={"total": -1})
        raise RuntimeError(f"bug, would have set {changed.total}")

    async def on_start(self, state: State) -> State:
        return state.model_copy(update={"starts": state.starts + 1})

    async def on_signal(self, signal: Signal, state: State) -> State:
        return state.model_copy(update={"seen": [*state.seen, signal.type]})


async def start_system(runtime: Runtime) -> MemoryStore:
    store = MemoryStore()
    runtime.store = store
    await Supervisor.start_link(
        [SignalBus.child_spec(name="signal_bus"), *AgentSupervisor.child_specs()]
    )
    return store


async def test_an_action_runs_validated_and_its_result_is_durable_when_answered(
    runtime: Runtime,
) -> None:
    agents = await start_system(runtime)
    await start_agent(Counter, "c1")
    assert await run("c1", "add", {"n": 5}) == 5
    assert await run("c1", "add", Counter.AddParams(n=2)) == 7
    stored = await agents.load(agent_key(Counter, "c1"))
    assert stored is not None
    assert stored.data["total"] == 7


async def test_invalid_params_are_a_validation_error_naming_the_field_and_the_agent_lives(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    pid = await start_agent(Counter, "c1")
    with pytest.raises(ValidationError) as info:
        await run("c1", "add", {"n": "five"})
    assert info.value.errors[0]["field"] == "n"
    assert "n (" in str(info.value)
    with pytest.raises(ValidationError, match="n"):
        await run("c1", "add", {})
    assert runtime.is_alive(pid)
    assert await run("c1", "add", {"n": 1}) == 1


async def test_an_unknown_action_is_a_clear_error_listing_the_actions(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Counter, "c1")
    with pytest.raises(UnknownAction, match=r"'nope'.*'add'"):
        await run("c1", "nope")
    assert await run("c1", "total") == 0


async def test_an_action_raising_a_foundation_error_answers_it_and_keeps_the_state(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    pid = await start_agent(Counter, "c1")
    await run("c1", "add", {"n": 3})
    with pytest.raises(InvalidArgument, match="refused on purpose"):
        await run("c1", "refuse")
    assert runtime.is_alive(pid)
    assert await run("c1", "total") == 3


async def test_an_unexpected_error_crashes_the_agent_which_restarts_with_its_durable_state(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    pid = await start_agent(Counter, "c1")
    await run("c1", "add", {"n": 4})
    with pytest.raises(ProcessExited):
        await run("c1", "explode")
    new = await restarted("c1", pid)
    assert new != pid
    assert await run("c1", "total") == 4


async def test_the_same_id_always_gets_back_its_own_state(runtime: Runtime) -> None:
    agents = await start_system(runtime)
    pid = await start_agent(Counter, "c1")
    assert await start_agent(Counter, "c1") == pid
    await run("c1", "add", {"n": 9})
    await start_agent(Counter, "c2")
    await stop_agent("c1")
    assert runtime.whereis("c1") is None
    await start_agent(Counter, "c1")
    assert await run("c1", "total") == 9
    assert await run("c2", "total") == 0
    stored = await agents.load(agent_key(Counter, "c1"))
    assert stored is not None
    assert stored.data["starts"] == 2


async def test_agents_are_found_by_capability_and_health(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Counter, "c1")
    p2 = await start_agent(Counter, "c2")
    assert [a.id for a in find_agents("math")] == ["c1", "c2"]
    assert find_agents("nothing") == []
    await set_health("c1", "degraded")
    assert [a.id for a in find_agents("count", health="healthy")] == ["c2"]
    assert [(a.id, a.health) for a in find_agents(health="degraded")] == [("c1", "degraded")]
    crash(p2)
    new = await restarted("c2", p2)
    assert [a.pid for a in find_agents("math", health="healthy")] == [new]
    with pytest.raises(InvalidArgument):
        find_agents("count", health="sick")


async def test_agents_receive_the_signal_types_they_subscribe_to(runtime: Runtime) -> None:
    agents = await start_system(runtime)
    await start_agent(Counter, "c1")
    assert await SignalBus.publish("signal_bus", "counter.reset.all") == 1
    assert await SignalBus.publish("signal_bus", "other.thing") == 0
    await sync("c1")
    state = (await agents.load(agent_key(Counter, "c1"))).data  # type: ignore[union-attr]
    assert state["seen"] == ["counter.reset.all"]


async def test_agents_join_a_restarted_registry_and_bus_again(runtime: Runtime) -> None:
    """A restarted registry or bus starts empty: the agents that had joined it restart (from
    their durable state) and register and subscribe again; none is left unfindable or deaf."""
    await start_system(runtime)
    c1 = await start_agent(Counter, "c1")
    await run("c1", "add", {"n": 2})
    old_registry = runtime.whereis(AGENT_REGISTRY)
    crash(old_registry)
    await restarted(AGENT_REGISTRY, old_registry)
    again = await restarted("c1", c1)
    await wait_until(lambda: [a.pid for a in find_agents("math")] == [again])
    assert await run("c1", "total") == 2  # restarted from its durable state
    old_bus = runtime.whereis("signal_bus")
    crash(old_bus)
    await restarted("signal_bus", old_bus)
    third = await restarted("c1", again)
    await wait_until(lambda: [a.pid for a in find_agents("count")] == [third])
    assert await SignalBus.publish("signal_bus", "counter.after.restart") == 1
    await sync("c1")
    assert await run("c1", "total") == 2


async def test_each_action_is_a_telemetry_span(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Counter, "c1")
    with assert_emitted(("foundation", "agent", "action", "stop")):
        await run("c1", "add", {"n": 1})
    with assert_emitted(
        ("foundation", "agent", "action", "exception"), lambda _, m: m["action"] == "refuse"
    ):
        with pytest.raises(InvalidArgument):
            await run("c1", "refuse")


async def test_bad_arguments_to_run_and_start_agent_are_clear_errors(runtime: Runtime) -> None:
    await start_system(runtime)
    await start_agent(Counter, "c1")
    with pytest.raises(InvalidArgument, match="params must be a dict"):
        await run("c1", "add", [1])
    with pytest.raises(InvalidArgument):
        await start_agent(Counter, "")
    with pytest.raises(InvalidArgument):
        await start_agent(int, "x")  # type: ignore[arg-type]
    with pytest.raises(NoProcess):
        await run("ghost", "add", {"n": 1})


async def test_an_agent_without_a_registry_fails_to_start_saying_what_to_do(
    runtime: Runtime,
) -> None:
    runtime.store = MemoryStore()
    with pytest.raises(Exception, match="no agent registry"):
        await Counter.start(key="agent/Counter/x")


async def test_run_on_a_process_that_is_not_an_agent_is_a_clear_error(runtime: Runtime) -> None:
    await start_system(runtime)
    with pytest.raises(Exception, match=r"has no handle_call|not an agent"):
        await run("signal_bus", "add", {"n": 1})
    assert await call("foundation.agents", ("count_children",)) is not None


def test_an_action_must_be_async() -> None:
    with pytest.raises(InvalidArgument, match="async def"):

        class Bad(Agent):
            class State(BaseModel):
                x: int = 0

            @action
            def sync_action(self, state: Any) -> Any:
                return None, state
