"""Scheduler: ticks by registered name, on the grid, through target, scheduler and OS restarts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from foundation import Runtime, Supervisor, call
from foundation.errors import InvalidArgument, NotFound, PersistenceError
from foundation.persistence import MemoryStore, SQLiteStore
from foundation.services import Cron, Scheduler
from foundation.testing import crash, restarted

from ._support import FailingStore, Inbox, in_fresh_runtime


async def start(runtime: Runtime, *, inbox: bool = True) -> None:
    runtime.store = runtime.store or MemoryStore()
    specs = [Scheduler.child_spec(epoch=0.0)]
    if inbox:
        specs.append(Inbox.child_spec(None, name="inbox"))
    await Supervisor.start_link(specs, max_restarts=10)


async def got(name: str = "inbox") -> list[Any]:
    return await call(name, "got")  # type: ignore[no-any-return]


async def test_f3_schedules_live_in_the_scheduler_and_survive_the_targets_restarts(
    runtime: Runtime,
) -> None:
    await start(runtime)
    await Scheduler.schedule("ping", "inbox", "ping", every=1.0)
    await runtime.clock.sleep(2.5)
    old = runtime.whereis("inbox")
    crash(old)  # type: ignore[arg-type]
    await restarted("inbox", old)
    await runtime.clock.sleep(1.0)
    assert await got() == [("ping", pytest.approx(3.0))]  # the new inbox gets the next tick
    assert (await Scheduler.get("ping")).ticks == 3


async def test_ten_thousand_ticks_do_not_drift(runtime: Runtime) -> None:
    await start(runtime)
    job = await Scheduler.schedule("fast", "inbox", "t", every=0.01, durable=False)
    await runtime.clock.sleep(100.005)
    ticks = await got()
    assert len(ticks) == 10_000
    assert ticks[-1][1] == pytest.approx(job.anchor + 10_000 * 0.01, abs=1e-6)
    assert all(t == pytest.approx(job.anchor + (k + 1) * 0.01, abs=1e-6)
               for k, (_, t) in enumerate(ticks))  # fmt: skip


async def test_a_scheduler_restart_keeps_durable_ticks_on_their_grid(runtime: Runtime) -> None:
    await start(runtime)
    await runtime.clock.sleep(0.3)
    await Scheduler.schedule("beat", "inbox", "b", every=1.0)  # grid: 1.3, 2.3, ...
    await runtime.clock.sleep(1.5)
    old = runtime.whereis("scheduler")
    crash(old)  # type: ignore[arg-type]
    await restarted("scheduler", old)  # reloads "beat" from the store
    await runtime.clock.sleep(2.0)
    assert [t for _, t in await got()] == pytest.approx([1.3, 2.3, 3.3])


async def test_one_shots_fire_once_at_their_time(runtime: Runtime) -> None:
    await start(runtime)
    await Scheduler.schedule("later", "inbox", "after", after=2.0)
    await Scheduler.schedule("then", "inbox", "at", at=5.0)
    await runtime.clock.sleep(10)
    assert await got() == [("after", pytest.approx(2.0)), ("at", pytest.approx(5.0))]
    assert await Scheduler.jobs() == {}
    assert await runtime.store.list("schedule/") == []  # type: ignore[union-attr]


async def test_missed_ticks_are_skipped_or_caught_up_once(runtime: Runtime) -> None:
    await start(runtime)
    await Scheduler.schedule("skip", "nobody", "x", every=1.0)
    await Scheduler.schedule("owed", "late", "y", every=1.0, missed="catch_up")
    await runtime.clock.sleep(3.5)
    assert (await Scheduler.get("skip")).skipped == 3
    assert (await Scheduler.get("owed")).owed
    late = await Inbox.start(name="late")
    await runtime.clock.sleep(0.1)
    assert [m for m, _ in await call(late, "got")] == ["y"]  # three missed ticks, caught up once
    await runtime.clock.sleep(0.5)
    assert [m for m, _ in await call(late, "got")] == ["y", "y"]  # then on the grid again
    assert (await call(late, "got"))[1][1] == pytest.approx(4.0)


async def test_cron_schedules_tick_on_matching_minutes(runtime: Runtime) -> None:
    await start(runtime)
    await Scheduler.schedule("quarter", "inbox", "q", cron="*/15 * * * *")
    await runtime.clock.sleep(3601)
    assert [t for _, t in await got()] == pytest.approx([900, 1800, 2700, 3600])


async def test_schedules_are_replaced_listed_run_now_and_cancelled(runtime: Runtime) -> None:
    await start(runtime)
    await Scheduler.schedule("a", "inbox", "a", every=1.0)
    await Scheduler.schedule("b", "inbox", "b", every=5.0)
    await Scheduler.schedule("c", "other", "c", every=5.0)
    await Scheduler.schedule("a", "inbox", "A", every=2.0)  # replaces "a"
    await runtime.clock.sleep(2.5)
    assert [m for m, _ in await got()] == ["A"]
    assert set(await Scheduler.jobs(target="inbox")) == {"a", "b"}
    assert await Scheduler.run_now("b") is True
    assert await Scheduler.run_now("c") is False  # "other" is not running
    assert [m for m, _ in await got()] == ["A", "b"]
    assert await Scheduler.cancel_target("inbox") == 2
    assert await Scheduler.cancel("a") is False
    assert set(await Scheduler.jobs()) == {"c"}
    assert await runtime.store.list("schedule/") == ["schedule/c"]  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await Scheduler.run_now("a")


async def test_bad_schedules_are_clear_errors(runtime: Runtime) -> None:
    await start(runtime)
    with pytest.raises(InvalidArgument, match="exactly one"):
        await Scheduler.schedule("x", "inbox", 1, every=1, after=2)
    with pytest.raises(InvalidArgument, match="JSON-ready"):
        await Scheduler.schedule("x", "inbox", object(), every=1)
    with pytest.raises(InvalidArgument, match="bad minute"):
        await Scheduler.schedule("x", "inbox", 1, cron="99 * * * *")
    with pytest.raises(InvalidArgument, match="every must be"):
        await Scheduler.schedule("x", "inbox", 1, every=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="at must be"):
        await Scheduler.schedule("x", "inbox", 1, at=float("nan"))
    with pytest.raises(InvalidArgument, match="registered name"):
        await Scheduler.schedule("x", None, 1, every=1)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await Scheduler.get("nothing")
    await Scheduler.schedule("ok", "inbox", object(), every=1, durable=False)  # not stored


def test_cron_expressions_find_the_next_matching_minute() -> None:
    every_15 = Cron.parse("*/15 * * * *")
    assert every_15.next_after(0) == 15 * 60
    weekdays_9 = Cron.parse("0 9 * * 1-5")
    t = weekdays_9.next_after(0)  # 1970-01-01 was a Thursday
    assert t == 9 * 3600
    assert weekdays_9.next_after(t) == 86400 + 9 * 3600  # Friday
    assert weekdays_9.next_after(86400 + 9 * 3600) == 4 * 86400 + 9 * 3600  # Monday
    first_or_sunday = Cron.parse("0 0 1 * 0")  # either day field matches, as in cron
    assert first_or_sunday.next_after(0) == 3 * 86400  # Sunday 1970-01-04
    assert Cron.parse("30 4,16 * * *").next_after(5 * 3600) == 16 * 3600 + 30 * 60
    with pytest.raises(InvalidArgument, match="5 fields"):
        Cron.parse("* * *")
    with pytest.raises(InvalidArgument, match="bad day of week"):
        Cron.parse("* * * * 8")


def _stores(kind: str, tmp_path: Path) -> Callable[[], Any]:
    """A factory of stores over one database: each call is a new OS process's connection."""
    if kind == "sqlite":
        return lambda: SQLiteStore(tmp_path / "schedules.db")
    from foundation.persistence.postgres import PostgresStore
    from tests.conftest import service_or_skip

    dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
    table = f"sched_{uuid.uuid4().hex[:12]}"
    return lambda: PostgresStore(dsn, table=table)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_durable_schedules_survive_a_restart_of_the_whole_runtime(
    kind: str, tmp_path: Path
) -> None:
    new_store = _stores(kind, tmp_path)
    try:
        _check_restart(new_store)
    finally:
        if kind == "postgres":
            in_fresh_runtime(new_store(), _drop_table)


async def _drop_table(rt: Runtime) -> None:
    pool = await rt.store._db()
    await pool.execute(f"DROP TABLE IF EXISTS {rt.store.table}")


def _check_restart(new_store: Callable[[], Any]) -> None:
    async def first(rt: Runtime) -> list[Any]:  # an OS process that runs from wall time 0 to 25
        await Supervisor.start_link([Inbox.child_spec(None, name="inbox"),
                                     Scheduler.child_spec(epoch=0.0)])  # fmt: skip
        await Scheduler.schedule("owed", "inbox", ["owed"], every=10, missed="catch_up")
        await Scheduler.schedule("skip", "inbox", ["skip"], every=10)
        await Scheduler.schedule("once_owed", "inbox", "once_owed", at=50, missed="catch_up")
        await Scheduler.schedule("once_gone", "inbox", "once_gone", at=50)
        await Scheduler.schedule("temp", "inbox", "temp", every=10, durable=False)
        await rt.clock.sleep(25)
        return await got()

    async def second(rt: Runtime) -> tuple[list[Any], dict[str, Any]]:  # wall time 100 to 125
        await Supervisor.start_link([Inbox.child_spec(None, name="inbox"),
                                     Scheduler.child_spec(epoch=100.0)])  # fmt: skip
        await rt.clock.sleep(25)
        return await got(), await Scheduler.jobs()

    ticks = in_fresh_runtime(new_store(), first)
    assert sorted(m if isinstance(m, str) else m[0] for m, _ in ticks) == [
        "owed", "owed", "skip", "skip", "temp", "temp",
    ]  # fmt: skip
    ticks, jobs = in_fresh_runtime(new_store(), second)
    assert set(jobs) == {"owed", "skip"}  # the one-shots are done, "temp" was not durable
    owed = [t for m, t in ticks if m == ["owed"]]
    assert owed == pytest.approx([0.05, 10, 20])  # caught up once at start, then on the grid
    assert [t for m, t in ticks if m == ["skip"]] == pytest.approx([10, 20])  # wall 110, 120
    assert [m for m, _ in ticks if m in ("once_owed", "once_gone")] == ["once_owed"]
    assert jobs["owed"].ticks == 5  # 2 in the first run, saved per tick, and 3 now


def test_f3_agents_and_workflows_never_time_messages_to_themselves() -> None:
    import foundation

    root = Path(foundation.__file__).parent
    timers = ("send_after", "call_later", "call_at")  # a message (or callback) for later
    found = [
        f"{path.relative_to(root)}: {word}"
        for layer in ("agents", "workflows")
        for path in sorted((root / layer).rglob("*.py"))
        for word in timers
        if word in path.read_text()
    ]
    assert found == []  # their periodic and delayed messages are schedules in the Scheduler


_CHILD = """
import asyncio, json, os, signal, sys
from foundation import Runtime
from foundation.persistence import SQLiteStore
from foundation.services import Scheduler

async def main(path, mode):
    async with Runtime(store=SQLiteStore(path)):
        await Scheduler.start_link()
        if mode == "schedule":
            await Scheduler.schedule("nightly", "reporter", ["report"], cron="0 3 * * *")
            os.kill(os.getpid(), signal.SIGKILL)  # acknowledged, then the OS process dies
        jobs = await Scheduler.jobs()
        print(json.dumps({n: [j.target, j.message, j.cron] for n, j in jobs.items()}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_an_acknowledged_schedule_survives_a_sigkill_of_the_os_process(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    path = str(tmp_path / "kill9.db")
    first = subprocess.run([sys.executable, "-c", _CHILD, path, "schedule"], check=False,
                           capture_output=True, timeout=60)  # fmt: skip
    assert first.returncode == -signal.SIGKILL, first.stderr.decode()
    second = subprocess.run([sys.executable, "-c", _CHILD, path, "load"], check=True,
                            capture_output=True, timeout=60)  # fmt: skip
    assert json.loads(second.stdout) == {"nightly": ["reporter", ["report"], "0 3 * * *"]}


async def test_a_schedule_the_store_refused_is_an_error_and_not_scheduled(
    runtime: Runtime,
) -> None:
    store = runtime.store = FailingStore()
    await start(runtime)
    store.fail_saves = 1
    with pytest.raises(PersistenceError):
        await Scheduler.schedule("beat", "inbox", "b", every=1.0)
    await runtime.clock.sleep(2.5)
    assert await got() == []
    assert await Scheduler.jobs() == {}
