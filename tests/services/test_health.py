"""HealthChecks: checks in their own runners, behind their own breakers, one aggregate status."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import Runtime, Supervisor, call
from foundation.errors import InvalidArgument, NotFound
from foundation.kernel.context import current_runtime
from foundation.persistence import MemoryStore
from foundation.services import CircuitBreaker, HealthCheck, HealthChecks, SignalBus
from foundation.testing import assert_emitted, crash, restarted

from ._support import Inbox


async def start(runtime: Runtime, *, breaker: bool = True) -> None:
    runtime.store = MemoryStore()
    specs = [SignalBus.child_spec(name="signal_bus")]
    if breaker:
        specs.append(CircuitBreaker.child_spec())
    await Supervisor.start_link([*specs, HealthChecks.child_spec()])


async def test_health_aggregates_checks_and_announces_changes(runtime: Runtime) -> None:
    await start(runtime)
    listener = await Inbox.start()
    await SignalBus.subscribe("signal_bus", "health.changed", subscriber=listener)
    state = {"db": True, "cache": True}

    async def db() -> bool:
        return state["db"]

    async def cache() -> bool:
        if not state["cache"]:
            raise ConnectionError("cache down")
        return True

    await HealthChecks.register("db", db, interval=5)
    await HealthChecks.register("cache", cache, interval=5, critical=False)
    await runtime.clock.sleep(0.1)
    assert (await HealthChecks.status())[0] == "healthy"
    state["cache"] = False
    with assert_emitted(("foundation", "health", "changed"), lambda _, m: m["to"] == "degraded"):
        result = await HealthChecks.check_now("cache")
    assert result.ok is False
    assert "cache down" in (result.error or "")
    state["db"] = False
    await runtime.clock.sleep(5)
    status, checks = await HealthChecks.status()
    assert status == "unhealthy"
    assert (checks["db"].ok, checks["db"].error) == (False, "returned a falsy value")
    state["db"] = state["cache"] = True
    await runtime.clock.sleep(20)
    assert (await HealthChecks.status())[0] == "healthy"
    changes = [(s.data["from"], s.data["to"]) for s, _ in await call(listener, "got")]
    assert changes == [("healthy", "degraded"), ("degraded", "unhealthy"),
                       ("unhealthy", "healthy")]  # fmt: skip


async def test_seed_a_failing_check_opens_its_own_breaker_after_three_failures(
    runtime: Runtime,
) -> None:
    await start(runtime)
    runs: list[float] = []

    async def flaky() -> bool:
        runs.append(current_runtime().clock.now())
        raise ConnectionError("down")

    await HealthChecks.register("flaky", flaky, interval=5)
    await runtime.clock.sleep(22)
    assert runs == [0, 5, 10]  # open after three failures: 15 and 20 are not run
    assert await CircuitBreaker.state("health:flaky") == "open"
    _, checks = await HealthChecks.status()
    assert checks["flaky"].ok is False
    assert "CircuitOpen" in (checks["flaky"].error or "")
    await runtime.clock.sleep(5)
    assert runs == [0, 5, 10, 25]  # one trial after three intervals


async def test_a_slow_check_times_out_in_its_runner_and_never_blocks_the_service(
    runtime: Runtime,
) -> None:
    await start(runtime, breaker=False)

    async def slow() -> bool:
        await current_runtime().clock.sleep(60)
        return True

    await HealthChecks.register("slow", slow, interval=10, timeout=2)
    assert (await HealthChecks.status())[0] == "healthy"  # answered while the check runs
    await runtime.clock.sleep(2.5)
    status, checks = await HealthChecks.status()
    assert (status, checks["slow"].error) == ("unhealthy", "timed out after 2s")


async def test_checks_are_replaced_and_unregistered_without_harm_to_the_service(
    runtime: Runtime,
) -> None:
    await start(runtime)
    calls: dict[str, int] = {"old": 0, "new": 0}

    def check(which: str, ok: bool) -> Any:
        async def run() -> bool:
            calls[which] += 1
            return ok

        return run

    await HealthChecks.register("x", check("old", False), interval=1)
    pid = runtime.whereis("health")
    await runtime.clock.sleep(0.5)
    assert (await HealthChecks.status())[0] == "unhealthy"
    await HealthChecks.register("x", check("new", True), interval=1)  # the old runner is stopped
    await runtime.clock.sleep(3.5)
    assert calls == {"old": 1, "new": 4}
    assert (await HealthChecks.status())[0] == "healthy"
    assert runtime.whereis("health") == pid  # killing the old runner did not kill the service
    assert await HealthChecks.unregister("x") is True
    assert await HealthChecks.unregister("x") is False
    assert (await HealthChecks.status()) == ("healthy", {})
    with pytest.raises(NotFound):
        await HealthChecks.check_now("x")
    with pytest.raises(InvalidArgument):
        await HealthChecks.register("y", check("new", True), interval=0)


async def test_checks_declared_at_start_come_back_with_every_restart(runtime: Runtime) -> None:
    """Declared checks live in the child spec: a restarted service runs them again; a check
    registered at run time is gone with the process that held it."""
    runtime.store = MemoryStore()
    up = {"db": True}

    async def db() -> bool:
        return up["db"]

    async def extra() -> bool:
        return True

    spec = HealthChecks.child_spec(checks={"db": HealthCheck(db, interval=5)})
    await Supervisor.start_link([spec])
    await HealthChecks.register("extra", extra, interval=5)
    await runtime.clock.sleep(0.1)
    assert sorted((await HealthChecks.status())[1]) == ["db", "extra"]
    up["db"] = False  # seen by the restarted service's first run (the next tick is 5 s away)
    old = runtime.whereis("health")
    crash(old)
    await restarted("health", old)
    await runtime.clock.sleep(0.1)
    status, checks = await HealthChecks.status()
    assert sorted(checks) == ["db"] and status == "unhealthy"  # db ran again, and failed
    with pytest.raises(InvalidArgument):
        HealthCheck(db, interval=0)
    with pytest.raises(InvalidArgument):
        await HealthChecks.start_link(name="other", checks={"x": db})  # type: ignore[dict-item]
