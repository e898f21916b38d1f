"""Dead letters, feature flags, scheduler, health checks and the services tree."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from foundation import GenServer, NoReply, Reply, Runtime, Supervisor, call, cast
from foundation.errors import InvalidArgument, NotFound, UnknownFlag
from foundation.kernel.process import From
from foundation.persistence import MemoryStore, SQLiteStore
from foundation.services import (
    Cron,
    DeadLetterQueue,
    FeatureFlags,
    HealthChecks,
    Scheduler,
    Services,
)
from foundation.testing import assert_emitted, crash, restarted, sync


class Inbox(GenServer):
    """Records what it gets; calls are acknowledged unless it is silent."""

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

    async def handle_info(self, msg: Any, state: dict[str, Any]) -> Any:
        state["got"].append((msg, current_time()))
        return state


def current_time() -> float:
    from foundation.kernel.context import current_runtime

    return current_runtime().clock.now()


# -- dead letters ------------------------------------------------------------------------------


async def test_3f3_dead_letters_are_durable_and_never_silently_lost(
    runtime: Runtime, tmp_path: Path
) -> None:
    runtime.store = MemoryStore()
    await Supervisor.start_link([DeadLetterQueue.child_spec()])
    first = await DeadLetterQueue.put("inbox", {"n": 1}, "receiver_down", {"by": "test"})
    await DeadLetterQueue.put("inbox", object(), "noproc")
    entries = await DeadLetterQueue.list(recipient="inbox")
    assert [e.reason for e in entries] == ["receiver_down", "noproc"]
    assert entries[1].message_is_repr
    assert (await runtime.store.load(f"dlq/{first}")) is not None  # stored before the answer
    old = runtime.whereis("dead_letters")
    crash(old)  # type: ignore[arg-type]
    await restarted("dead_letters", old)
    assert len(await DeadLetterQueue.list()) == 2  # reloaded from the store
    assert (await DeadLetterQueue.stats())["by_reason"] == {"receiver_down": 1, "noproc": 1}


async def test_dead_letters_are_retried_with_backoff_and_removed_once_delivered(
    runtime: Runtime,
) -> None:
    runtime.store = MemoryStore()
    await DeadLetterQueue.start_link(backoff=10.0)
    await Inbox.start(name="inbox")
    cast("inbox", True)  # silent: deliveries time out
    await DeadLetterQueue.put("inbox", "hello", "timeout")
    assert await DeadLetterQueue.retry(timeout=1.0) == {"delivered": 0, "failed": 1, "not_due": 0}
    assert (await DeadLetterQueue.list())[0].attempts == 2
    assert (await DeadLetterQueue.retry())["not_due"] == 1  # backing off
    cast("inbox", False)
    await runtime.clock.sleep(11)
    assert (await DeadLetterQueue.retry())["delivered"] == 1
    assert await DeadLetterQueue.list() == []
    assert await call("inbox", "got") == ["hello"]


async def test_old_dead_letters_are_purged(runtime: Runtime) -> None:
    runtime.store = MemoryStore()
    await DeadLetterQueue.start_link()
    await DeadLetterQueue.put("x", 1, "r")
    assert await DeadLetterQueue.purge(3600) == 0
    assert await DeadLetterQueue.purge(0) == 1
    with pytest.raises(InvalidArgument):
        await DeadLetterQueue.purge(-1)


async def test_other_services_hand_what_they_cannot_deliver_to_the_queue(
    runtime: Runtime,
) -> None:
    from foundation.kernel.api import wait_exit
    from foundation.services import CircuitBreaker, Delivery

    runtime.store = MemoryStore()
    await Supervisor.start_link(Services.child_specs(scheduler_epoch=0.0))
    inbox = await Inbox.start(name="inbox")
    assert await Delivery.send("inbox", "first") == "delivered"
    await CircuitBreaker.trip("deliver:inbox")
    for m in ("a", "b"):
        assert await Delivery.send("inbox", m) == "buffered"
    crash(inbox)
    await wait_exit(inbox)
    await sync("delivery")
    entries = await DeadLetterQueue.list(reason="receiver_down")
    assert [(e.recipient, e.message) for e in entries] == [("inbox", "a"), ("inbox", "b")]
    assert len(await runtime.store.list("dlq/")) == 2


# -- feature flags -----------------------------------------------------------------------------


async def test_3f10_a_ten_percent_rollout_is_not_fully_on(runtime: Runtime) -> None:
    runtime.store = MemoryStore()
    await FeatureFlags.start_link()
    await FeatureFlags.define("new_ui", percentage=10)
    assert FeatureFlags.enabled("new_ui") is False
    share = sum(FeatureFlags.enabled_for("new_ui", f"user-{i}") for i in range(10_000))
    assert 800 < share < 1200
    assert FeatureFlags.enabled_for("new_ui", "user-7") == FeatureFlags.enabled_for(
        "new_ui", "user-7"
    )
    await FeatureFlags.define("new_ui", percentage=100)
    assert FeatureFlags.enabled("new_ui") is True
    await FeatureFlags.define("dark", True)
    assert FeatureFlags.enabled("dark") is True


async def test_flags_are_stored_announced_and_unknown_ones_are_errors(runtime: Runtime) -> None:
    runtime.store = MemoryStore()
    await Supervisor.start_link([FeatureFlags.child_spec()])
    with assert_emitted(("foundation", "feature_flags", "changed"), lambda _, m: m["flag"] == "f"):
        await FeatureFlags.define("f", True)
    old = runtime.whereis("feature_flags")
    crash(old)  # type: ignore[arg-type]
    await restarted("feature_flags", old)
    assert FeatureFlags.enabled("f") is True  # reloaded from the store
    with pytest.raises(UnknownFlag, match="'nope'"):
        FeatureFlags.enabled("nope")
    with pytest.raises(InvalidArgument):
        await FeatureFlags.define("bad", percentage=150)
    await FeatureFlags.remove("f")
    with pytest.raises(UnknownFlag):
        FeatureFlags.enabled("f")


# -- scheduler ---------------------------------------------------------------------------------


async def start_scheduler(runtime: Runtime) -> None:
    runtime.store = runtime.store or MemoryStore()
    await Supervisor.start_link(
        [Scheduler.child_spec(epoch=0.0), Inbox.child_spec(None, name="inbox")]
    )


async def got() -> list[Any]:
    return await call("inbox", "got")  # type: ignore[no-any-return]


async def test_f3_schedules_live_in_the_scheduler_and_survive_the_targets_restarts(
    runtime: Runtime,
) -> None:
    await start_scheduler(runtime)
    await Scheduler.schedule("ping", "inbox", "ping", every=1.0)
    await runtime.clock.sleep(2.5)
    old = runtime.whereis("inbox")
    crash(old)  # type: ignore[arg-type]
    await restarted("inbox", old)
    await runtime.clock.sleep(1.0)
    assert await got() == [("ping", pytest.approx(3.0))]  # the new inbox gets the next tick
    assert (await Scheduler.get("ping")).ticks == 3


async def test_ten_thousand_ticks_do_not_drift(runtime: Runtime) -> None:
    await start_scheduler(runtime)
    job = await Scheduler.schedule("fast", "inbox", "t", every=0.01, durable=False)
    await runtime.clock.sleep(100.005)
    ticks = await got()
    assert len(ticks) == 10_000
    assert ticks[-1][1] == pytest.approx(job.anchor + 10_000 * 0.01, abs=1e-6)


async def test_one_shots_fire_once_and_missed_ticks_follow_the_policy(runtime: Runtime) -> None:
    await start_scheduler(runtime)
    await Scheduler.schedule("once", "inbox", "boom", after=2.0)
    await runtime.clock.sleep(3)
    assert [m for m, _ in await got()] == ["boom"]
    assert "once" not in await Scheduler.jobs()
    await Scheduler.schedule("skip", "nobody", "x", every=1.0)
    await Scheduler.schedule("owed", "late", "y", every=1.0, missed="catch_up")
    await runtime.clock.sleep(3.5)
    assert (await Scheduler.get("skip")).skipped == 3
    late = await Inbox.start(name="late")
    await runtime.clock.sleep(0.1)
    assert [m for m, _ in await call(late, "got")] == ["y"]  # three missed ticks, caught up once
    await runtime.clock.sleep(0.5)
    assert [m for m, _ in await call(late, "got")] == ["y", "y"]  # then on the grid again


async def test_bad_schedules_are_clear_errors(runtime: Runtime) -> None:
    await start_scheduler(runtime)
    with pytest.raises(InvalidArgument, match="exactly one"):
        await Scheduler.schedule("x", "inbox", 1, every=1, after=2)
    with pytest.raises(InvalidArgument, match="JSON-ready"):
        await Scheduler.schedule("x", "inbox", object(), every=1)
    with pytest.raises(InvalidArgument, match="bad minute"):
        await Scheduler.schedule("x", "inbox", 1, cron="99 * * * *")
    with pytest.raises(NotFound):
        await Scheduler.get("nothing")


def test_cron_expressions_find_the_next_matching_minute() -> None:
    every_15 = Cron.parse("*/15 * * * *")
    assert every_15.next_after(0) == 15 * 60
    weekdays_9 = Cron.parse("0 9 * * 1-5")
    t = weekdays_9.next_after(0)  # 1970-01-01 was a Thursday
    assert t == 9 * 3600
    assert weekdays_9.next_after(t) == 86400 + 9 * 3600  # Friday
    assert weekdays_9.next_after(86400 + 9 * 3600) == 4 * 86400 + 9 * 3600  # Monday
    with pytest.raises(InvalidArgument, match="5 fields"):
        Cron.parse("* * *")


def test_durable_schedules_survive_a_restart_of_the_whole_runtime(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def first() -> None:
        async with Runtime(store=SQLiteStore(path)):
            await Scheduler.start_link()
            await Scheduler.schedule("nightly", "reporter", ["report"], cron="0 3 * * *")
            await Scheduler.schedule("temp", "reporter", "x", every=5, durable=False)

    async def second() -> dict[str, Any]:
        async with Runtime(store=SQLiteStore(path)):
            await Scheduler.start_link()
            return await Scheduler.jobs()

    asyncio.run(first())
    jobs = asyncio.run(second())
    assert set(jobs) == {"nightly"}
    assert jobs["nightly"].message == ["report"]


# -- health checks -----------------------------------------------------------------------------


async def test_health_aggregates_checks_and_announces_changes(runtime: Runtime) -> None:
    runtime.store = MemoryStore()
    await Supervisor.start_link(Services.child_specs(scheduler_epoch=0.0))
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
    assert checks["db"].ok is False
    state["db"] = state["cache"] = True
    await runtime.clock.sleep(20)
    assert (await HealthChecks.status())[0] == "healthy"


async def test_the_services_tree_starts_every_service_in_order(runtime: Runtime) -> None:
    runtime.store = MemoryStore()
    await Supervisor.start_link([Services.supervisor_spec()])
    names = [
        "dead_letters", "signal_bus", "circuit_breaker", "delivery", "scheduler",
        "system_commands", "task_pools", "coordination", "feature_flags", "health",
    ]  # fmt: skip
    pids = [runtime.whereis(n) for n in names]
    assert all(pids)
    assert [p.id for p in pids] == sorted(p.id for p in pids)  # type: ignore[union-attr]
