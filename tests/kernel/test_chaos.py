"""T7 (RELIABILITY.md): chaos under load with invariants, at kernel level.

A supervised tree (``rest_for_one`` top: a ``Registry``, then ``SUBTREES`` nested supervisors
of three permanent workers each: a named ``Echo``, an ``Echo`` named ``("via", registry, key)``
and a ``Counter`` PersistentServer on a ``MemoryStore``) serves client processes that call
every worker continuously. A chaos process strikes every few virtual seconds, following a plan:
``exit(pid, "kill")`` or a cast that makes the worker raise; in the ``subtrees`` mode it also
kills whole nested supervisors, and in both modes the registry. In the ``burst`` mode (no
intensity limit) a strike kills up to three processes of any kind 50 ms apart, so later kills
land in restarts (a supervisor starting its children, a Counter loading its state). Saves and
loads take virtual time (``SlowStore``) and some Echo calls answer late, so kills land mid-save
and mid-call. After each strike the chaos process waits for the victims' exits, lets the tree
settle (``sync`` on every supervisor, bottom up, until the tree stops changing) and checks:

- the tree matches a model of restart intensity (OTP ``add_restart``): every permanent child is
  alive, or its supervisor escalated and its parent restarted it, or the top supervisor exited
  exactly when the model says so (then nothing of the tree is left);
- the registry only ever reports live processes (right after the kill, before its ``Down``),
  and once the ``Down`` is processed it holds no entry for a dead pid; names resolve to the
  supervisor's current children;
- every client call returns the right answer or raises ``NoProcess`` / ``ProcessExited`` /
  ``CallTimeout`` within its (virtual) timeout; clients never hang (they must exit when told);
- each Counter holds exactly its acknowledged increments plus at most the ones whose call
  failed after delivery (``ProcessExited`` / ``CallTimeout``) or is in flight;
- no task or thread leaks at teardown (the ``runtime`` fixture, or ``_run_fresh`` below).

Plans come from ``random.Random(seed)`` over fixed seeds, and from Hypothesis (a list of
strikes, which shrinks to the fewest and simplest strikes).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from foundation import (
    ChildSpec,
    From,
    GenServer,
    NoReply,
    Pid,
    Registry,
    Reply,
    Runtime,
    Supervisor,
    call,
    cancel_timer,
    cast,
    current_pid,
    is_alive,
    receive,
    reply,
    send,
    send_after,
    spawn,
    wait_exit,
    whereis,
)
from foundation import exit as exit_signal
from foundation.errors import CallTimeout, NoProcess, ProcessExited
from foundation.kernel.context import RUNTIME
from foundation.persistence import MemoryStore, PersistentServer
from foundation.persistence.store import Stored
from foundation.testing import VirtualClock, VirtualTimeLoop, sync

SUBTREES = 3
REG = "chaos_registry"
TOP = "chaos_top"
CALL_TIMEOUT = 1.0
TICK = 0.25  # virtual seconds between two calls of one client
SLOW = (0.1, 0.4, 0.1, 1.5)  # Echo answer delays cycled by the w clients (1.5 > CALL_TIMEOUT)
SAVE_DELAY = 0.2
LOAD_DELAY = 0.1
BURST_GAP = 0.05  # virtual seconds between the kills of a burst (less than LOAD_DELAY)
SLACK = 0.01  # call deadlines are kept at millisecond granularity
GUARD = 30.0  # virtual seconds a strike may take to settle and check before it counts as a hang
SEEDS = range(20)


# -- the workers ----------------------------------------------------------------------------------


class Echo(GenServer):
    """Answers ``("pong", request)``; a ``("slow", t, delay)`` request only after ``delay``."""

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        if request[0] == "slow":
            send_after(self.pid, ("answer", caller, request), request[2])
            return NoReply(state)
        return Reply(("pong", request), state)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, tuple) and msg[0] == "answer":
            reply(msg[1], ("pong", msg[2]))
            return state
        return await super().handle_info(msg, state)

    async def handle_cast(self, request: Any, state: Any) -> Any:
        raise RuntimeError(f"chaos: {request!r}")


class Counter(PersistentServer):
    class State(BaseModel):
        count: int = 0

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        if request == "get":
            return Reply(state.count, state)
        new = state.model_copy(update={"count": state.count + 1})
        return Reply(new.count, new)

    async def handle_cast(self, request: Any, state: Any) -> Any:
        raise RuntimeError(f"chaos: {request!r}")


async def pause(seconds: float) -> None:
    """Wait ``seconds`` of loop (virtual) time inside a store call."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    handle = loop.call_later(seconds, wake)
    try:
        await fut
    finally:
        handle.cancel()


class SlowStore(MemoryStore):
    """A MemoryStore whose saves take SAVE_DELAY virtual seconds, so kills land mid-save: odd
    saves wait before writing (a kill loses them), even ones after (a kill loses the answer).
    Loads take LOAD_DELAY, so a restarting subtree is not there at once (callers of the via
    names started after it get ``NoProcess``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def load(self, key: str) -> Stored | None:
        await pause(LOAD_DELAY)
        return await super().load(key)

    async def save_json(
        self, key: str, text: str, expected_version: int | None, *, schema_version: int = 1
    ) -> int:
        self.calls += 1
        if self.calls % 2:
            await pause(SAVE_DELAY)
        version = await super().save_json(
            key, text, expected_version, schema_version=schema_version
        )
        if not self.calls % 2:
            await pause(SAVE_DELAY)
        return version


def via(j: int) -> tuple[str, str, str]:
    return ("via", REG, f"v{j}")


# -- plans and the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Strike:
    delay: float  # virtual seconds after the previous strike settled
    target: int  # index (modulo) into the current victims, in tree order
    how: str  # "kill" (exit signal) or "cast" (the worker raises; supervisors are killed)


@dataclass(frozen=True)
class Plan:
    mode: str  # "pids": registry and workers; "subtrees": also the nested supervisors;
    # "burst": a few kills of any of them in a row, landing mid-restart (no intensity limit)
    top_max_restarts: int
    sub_max_restarts: int
    max_seconds: float
    strikes: tuple[Strike, ...]


def plan_from_seed(mode: str, seed: int, n: int = 12) -> Plan:
    rng = random.Random(f"{mode}-{seed}")
    strikes = tuple(
        Strike(
            delay=rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]),
            target=rng.randrange(64),
            how=rng.choice(["kill", "cast"]),
        )
        for _ in range(n)
    )
    unlimited = mode == "burst"  # no model of intensity there: nothing may escalate
    return Plan(
        mode=mode,
        top_max_restarts=1000 if unlimited else rng.choice([1, 3, 1000]),
        sub_max_restarts=1000 if unlimited else rng.choice([1, 2, 1000]),
        max_seconds=rng.choice([2.0, 5.0, 10.0]),
        strikes=strikes,
    )


class Intensity:
    """OTP's restart intensity, restated: more than ``max_restarts`` in ``max_seconds`` fails."""

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.times: list[float] = []

    def allow(self, now: float) -> bool:
        self.times = [t for t in self.times if t >= now - self.max_seconds]
        self.times.append(now)
        return len(self.times) <= self.max_restarts


class TreeModel:
    """What the tree must look like: whether the top lives; each subtree's restart history."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.top = Intensity(plan.top_max_restarts, plan.max_seconds)
        self.subs = [self.fresh() for _ in range(SUBTREES)]
        self.top_alive = True
        self.escalations = 0
        self.top_restarts = 0

    def fresh(self) -> Intensity:
        return Intensity(self.plan.sub_max_restarts, self.plan.max_seconds)

    def worker_died(self, j: int, now: float) -> None:
        if not self.subs[j].allow(now):
            self.escalations += 1
            self.top_child_died(j, now)

    def top_child_died(self, j: int, now: float) -> None:
        """Top child ``j`` exited (-1: the registry); rest_for_one restarts it and those after."""
        if not self.top.allow(now):
            self.top_alive = False
            return
        self.top_restarts += 1
        for k in range(max(j, 0), SUBTREES):
            self.subs[k] = self.fresh()


# -- shared records (one per run, passed to the processes) -----------------------------------------


@dataclass
class Ledger:
    """What one Counter's only client knows: acknowledged value, failed-after-send calls."""

    ack: int = 0
    unsure: int = 0
    in_flight: bool = False


@dataclass
class World:
    rt: Runtime
    plan: Plan
    model: TreeModel
    top: Pid | None = None
    ledgers: dict[int, Ledger] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    tree_pids: set[Pid] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=dict)
    strikes_done: int = 0

    def note(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def tree_spec(plan: Plan, j: int) -> ChildSpec:
    workers = [
        Echo.child_spec(f"w{j}", id=f"w{j}", name=f"w{j}"),
        Echo.child_spec(f"v{j}", id=f"v{j}", name=via(j)),
        Counter.child_spec(key=f"c{j}", id=f"c{j}", name=f"c{j}"),
    ]
    return Supervisor.child_spec(
        workers,
        id=f"s{j}",
        name=f"sup{j}",
        strategy="one_for_one",
        max_restarts=plan.sub_max_restarts,
        max_seconds=plan.max_seconds,
    )


# -- clients ------------------------------------------------------------------------------------


async def client(world: World, target: Any, j: int, kind: str) -> None:
    """Call ``target`` every TICK until told to stop; check each answer and its latency."""
    me = current_pid()
    clock = world.rt.clock
    ledger = world.ledgers[j] if kind == "counter" else None
    n = 0
    while True:
        timer = send_after(me, "tick", TICK)
        msg = await receive()
        if msg == "stop":
            cancel_timer(timer)
            return
        n += 1
        if kind == "counter":
            request: Any = ("add", 1)
        elif kind == "slow":
            request = ("slow", clock.now(), SLOW[n % len(SLOW)])
        else:
            request = ("ping", clock.now())
        if ledger is not None:
            ledger.in_flight = True
        t0 = clock.now()
        try:
            answer = await call(target, request, timeout=CALL_TIMEOUT)
        except NoProcess:
            world.note("NoProcess")  # never delivered: cannot have been applied
        except (ProcessExited, CallTimeout) as exc:
            world.note(type(exc).__name__)
            if ledger is not None:
                ledger.unsure += 1
        else:
            world.note("ok")
            if ledger is None:
                if answer != ("pong", request):
                    world.errors.append(f"{target!r} answered {answer!r} to {request!r}")
            elif not ledger.ack + 1 <= answer <= ledger.ack + 1 + ledger.unsure:
                world.errors.append(
                    f"{target!r} acknowledged {answer!r} after ack={ledger.ack} "
                    f"with {ledger.unsure} unsure calls: acknowledged state lost or duplicated"
                )
            elif ledger is not None:
                ledger.ack, ledger.unsure = answer, 0
        finally:
            if ledger is not None:
                ledger.in_flight = False
        elapsed = clock.now() - t0
        if elapsed > CALL_TIMEOUT + SLACK:
            world.errors.append(f"call to {target!r} took {elapsed}s (timeout {CALL_TIMEOUT}s)")


# -- the chaos process -----------------------------------------------------------------------------


async def top_children(world: World) -> list[tuple[str, Pid | None]]:
    assert world.top is not None
    return [(str(c.id), c.pid) for c in await Supervisor.which_children(world.top)]


async def snapshot(world: World) -> tuple[Any, ...]:
    """The whole tree's (id, pid) rows; records every pid seen."""
    if world.top is None or not is_alive(world.top):
        return (("top", "exited"),)
    rows: list[Any] = []
    with contextlib.suppress(NoProcess, ProcessExited):
        for cid, pid in await top_children(world):
            rows.append((cid, pid))
            if pid is not None and cid.startswith("s"):
                with contextlib.suppress(NoProcess, ProcessExited):
                    rows.extend((c.id, c.pid) for c in await Supervisor.which_children(pid))
    world.tree_pids.update(p for _, p in rows if p is not None)
    return tuple(rows)


async def settle(world: World) -> None:
    """Sync every supervisor, bottom up, until the tree stops changing."""
    for _ in range(10):
        before = await snapshot(world)
        subs = [p for cid, p in before[::-1] if isinstance(cid, str) and cid.startswith("s")]
        for pid in [*subs, world.top, REG]:
            if pid is not None:
                with contextlib.suppress(NoProcess, ProcessExited):
                    await sync(pid)
        if await snapshot(world) == before:
            return
    raise AssertionError("the tree did not settle")


def registry_reports_only_live() -> None:
    with contextlib.suppress(NoProcess):
        for key, pid, _ in Registry.select(REG):
            assert is_alive(pid), f"registry reports dead {pid!r} under {key!r}"
        for j in range(SUBTREES):
            for pid, _ in Registry.lookup(REG, f"v{j}"):
                assert is_alive(pid), f"registry lookup of v{j} gives dead {pid!r}"


async def check(world: World) -> None:
    model = world.model
    top = world.top
    assert top is not None
    assert is_alive(top) == model.top_alive, (
        f"top supervisor alive={is_alive(top)}, model says {model.top_alive}"
    )
    if not model.top_alive:
        alive = [p for p in world.tree_pids if is_alive(p)]
        assert alive == [], f"the top supervisor exited but {alive} of its tree live on"
        assert whereis(REG) is None
        return
    kids = await top_children(world)
    assert [cid for cid, _ in kids] == ["registry", *(f"s{j}" for j in range(SUBTREES))]
    for cid, pid in kids:
        assert pid is not None and is_alive(pid), f"permanent child {cid} is not running"
    assert whereis(REG) == kids[0][1]
    registry_reports_only_live()
    # White box: once the registry has handled its Downs, its tables hold no dead pid at all.
    tables = getattr(world.rt.resolve(REG), "server", None)
    raw = getattr(tables, "_t", None)
    if raw is not None:
        dead = [p for p in raw.by_pid if not is_alive(p)]
        assert dead == [], f"registry still holds entries of dead {dead} after their Down"
        assert set(raw.monitors) == set(raw.by_pid)
    for j, (_, sub) in enumerate(kids[1:]):
        assert sub is not None
        workers = {str(c.id): c.pid for c in await Supervisor.which_children(sub)}
        assert list(workers) == [f"w{j}", f"v{j}", f"c{j}"]
        for wid, pid in workers.items():
            assert pid is not None and is_alive(pid), f"permanent child {wid} is not running"
        assert whereis(f"w{j}") == workers[f"w{j}"]
        assert whereis(f"c{j}") == workers[f"c{j}"]
        assert Registry.lookup(REG, f"v{j}") == [(workers[f"v{j}"], None)]
        value = await call(f"c{j}", "get", timeout=CALL_TIMEOUT)
        led = world.ledgers[j]
        high = led.ack + led.unsure + int(led.in_flight)
        assert led.ack <= value <= high, (
            f"c{j} holds {value}; acknowledged {led.ack}, {led.unsure} unsure, "
            f"in flight: {led.in_flight}"
        )
    assert Registry.count(REG) == SUBTREES


def burst_victim(name: Any) -> Pid | None:
    """Whoever holds ``name`` right now, even mid-restart or mid-``init`` (no call needed)."""
    if isinstance(name, str):
        return whereis(name)
    with contextlib.suppress(NoProcess):
        return Registry.whereis_name(REG, name[2])
    return None


async def burst(world: World, s: Strike) -> None:
    """Kill 1-3 processes BURST_GAP apart, without waiting for the tree to recover in between:
    later kills land in restarts (a supervisor starting its children, a Counter loading)."""
    me = current_pid()
    names: list[Any] = [REG]
    for j in range(SUBTREES):
        names += [f"sup{j}", f"w{j}", via(j), f"c{j}"]
    for i in range(1 + s.target % 3):
        if i:
            send_after(me, "next", BURST_GAP)
            await receive()
        name = names[(s.target * (i + 1) + i) % len(names)]
        pid = burst_victim(name)
        if pid is None:
            continue
        if s.how == "cast" and name != REG and not str(name).startswith("sup"):
            cast(pid, "boom")  # queued behind its init, if it is still starting
        else:
            exit_signal(pid, "kill")
        await wait_exit(pid, timeout=GUARD)
        registry_reports_only_live()
    await settle(world)
    await check(world)


async def strike(world: World, s: Strike) -> None:
    if world.plan.mode == "burst":
        await burst(world, s)
        return
    rows = await snapshot(world)
    assert rows[0] != ("top", "exited")
    victims: list[tuple[str, Pid, int]] = []  # (kind, pid, subtree index or -1)
    j = -1
    for cid, pid in rows:
        assert pid is not None
        if cid == "registry":
            victims.append(("registry", pid, -1))
        elif cid.startswith("s"):
            j = int(cid[1:])
            if world.plan.mode == "subtrees":
                victims.append(("subtree", pid, j))
        else:
            victims.append(("worker", pid, j))
    kind, pid, j = victims[s.target % len(victims)]
    exited = wait_exit(pid, timeout=GUARD)
    if kind == "worker" and s.how == "cast":
        cast(pid, "boom")
    else:
        exit_signal(pid, "kill")
    await exited
    # The restart is counted when the victim exits: a cast waits behind the victim's earlier
    # messages (and a Counter's mailbox waits for its save), so that can be later than the strike.
    now = world.rt.clock.now()
    registry_reports_only_live()  # even before the registry has seen the Down
    if kind == "worker":
        world.model.worker_died(j, now)
    else:
        world.model.top_child_died(j, now)
    await settle(world)
    await check(world)


async def chaos(world: World) -> None:
    me = current_pid()
    for s in world.plan.strikes:
        send_after(me, "strike", s.delay)
        await receive()
        async with asyncio.timeout(GUARD):  # on the virtual clock: a stuck step is a hang
            await strike(world, s)
        world.strikes_done += 1
        if not world.model.top_alive:
            return


# -- a run -----------------------------------------------------------------------------------------


async def run_chaos(rt: Runtime, plan: Plan) -> World:
    world = World(rt, plan, TreeModel(plan))
    world.top = await Supervisor.start(
        [
            Registry.child_spec(name=REG, id="registry"),
            *(tree_spec(plan, j) for j in range(SUBTREES)),
        ],
        strategy="rest_for_one",
        max_restarts=plan.top_max_restarts,
        max_seconds=plan.max_seconds,
        name=TOP,
    )
    clients: list[Pid] = []
    for j in range(SUBTREES):
        world.ledgers[j] = Ledger()
        clients.append(spawn(client, world, f"w{j}", j, "slow"))
        clients.append(spawn(client, world, via(j), j, "ping"))
        clients.append(spawn(client, world, f"c{j}", j, "counter"))
    # Watched from now on, so a client that dies early is seen with its reason.
    exits = [wait_exit(pid, timeout=CALL_TIMEOUT + 2 * TICK) for pid in clients]
    await snapshot(world)
    await check(world)
    reason = await wait_exit(spawn(chaos, world))
    if isinstance(reason, BaseException):
        raise reason
    assert reason == "normal", reason
    for pid in clients:
        send(pid, "stop")
    for pid, exited in zip(clients, exits, strict=True):
        # A client stuck in a call past its timeout never exits: CallTimeout fails the test.
        assert await exited == "normal", pid
    assert world.errors == []
    assert world.strikes_done == len(plan.strikes) or not world.model.top_alive
    if is_alive(world.top):
        await GenServer.stop(world.top, "shutdown")
    return world


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["pids", "subtrees", "burst"])
async def test_chaos_keeps_invariants(runtime: Runtime, mode: str, seed: int) -> None:
    runtime.store = SlowStore()
    world = await run_chaos(runtime, plan_from_seed(mode, seed))
    assert world.outcomes.get("ok", 0) > 0


async def test_chaos_exercises_every_outcome(runtime: Runtime) -> None:
    """Chaos of this shape reaches escalations, top restarts and every kind of failed call."""
    runtime.store = SlowStore()
    plan = Plan(
        mode="subtrees",
        top_max_restarts=1000,
        sub_max_restarts=1,
        max_seconds=5.0,
        strikes=tuple(Strike(0.5, t, h) for t in (3, 3, 0, 6, 6, 1, 2) for h in ("kill", "cast")),
    )
    world = await run_chaos(runtime, plan)
    assert world.model.escalations > 0
    assert world.model.top_restarts > world.model.escalations
    for outcome in ("ok", "NoProcess", "ProcessExited", "CallTimeout"):
        assert world.outcomes.get(outcome, 0) > 0, (outcome, world.outcomes)
    assert all(led.ack > 0 for led in world.ledgers.values())


async def test_top_supervisor_exits_when_the_model_says(runtime: Runtime) -> None:
    runtime.store = SlowStore()
    plan = Plan("subtrees", 1, 1000, 5.0, tuple(Strike(0.5, 0, "kill") for _ in range(4)))
    world = await run_chaos(runtime, plan)
    assert not world.model.top_alive
    assert world.strikes_done == 2  # the second restart in the window is one too many


# -- Hypothesis: shrinking plans -------------------------------------------------------------------


def _run_fresh(body: Callable[[Runtime], Awaitable[Any]]) -> Any:
    """One run on its own virtual-time loop and runtime, with the fixture's deadlock and leak
    checks (a Hypothesis example cannot share the function-scoped ``runtime`` fixture)."""
    loop = VirtualTimeLoop()
    rt = Runtime(clock=VirtualClock(), store=SlowStore())
    main_task: list[asyncio.Task[Any]] = []

    def deadlock() -> None:
        if main_task and not main_task[0].done():
            main_task[0].cancel()

    loop.on_deadlock = deadlock

    async def main() -> Any:
        RUNTIME.set(rt)
        task = asyncio.current_task()
        assert task is not None
        main_task[:] = [task]
        rt.start()
        try:
            return await body(rt)
        finally:
            await rt.shutdown()

    async def leftovers() -> list[str]:
        me = asyncio.current_task()
        return [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]

    try:
        result = loop.run_until_complete(main())
        leaked = loop.run_until_complete(leftovers())
        assert leaked == [], f"leaked tasks: {leaked}"
        return result
    finally:
        loop.close()


strikes_st = st.lists(
    st.builds(
        Strike,
        delay=st.sampled_from([0.05, 0.25, 1.0, 3.0]),
        target=st.integers(0, 15),
        how=st.sampled_from(["kill", "cast"]),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["pids", "subtrees", "burst"]),
    top_max_restarts=st.sampled_from([1, 3, 1000]),
    sub_max_restarts=st.sampled_from([0, 1, 1000]),
    max_seconds=st.sampled_from([1.0, 5.0]),
    strikes=strikes_st,
)
def test_chaos_plans_shrink(
    mode: str,
    top_max_restarts: int,
    sub_max_restarts: int,
    max_seconds: float,
    strikes: list[Strike],
) -> None:
    if mode == "burst":  # no intensity model for bursts: nothing may escalate
        top_max_restarts = sub_max_restarts = 1000
    plan = Plan(mode, top_max_restarts, sub_max_restarts, max_seconds, tuple(strikes))
    _run_fresh(lambda rt: run_chaos(rt, plan))
