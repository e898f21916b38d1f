"""T9 (RELIABILITY.md) in test-only form: a deterministic simulation of a token ring.

One OS process, the ``runtime`` fixture's virtual clock, one ``random.Random(seed)`` deciding
everything, and seeded faults, each at a small probability per step: a node is killed (exit
signal ``kill``) or crashes (its handler raises), between steps or in the middle of one; a save
fails before it lands (``FaultyStore``: ``busy``, ``full`` or ``ioerr``), or lands and then
answers with the error (``fail_after_write``); a load fails (a restart's first attempt).
No fault hook lives in ``src/foundation``. The store is a ``FaultyStore`` over a
``MemoryStore`` (servers save through ``save_json``, awaited) for ``SEEDS``, and over a
``SQLiteStore`` (``save_json_then``, answered by callback: a mid-step kill can land while the
victim's commit is in flight) for ``SQLITE_SEEDS``.

Workload (FoundationDB's Cycle invariant): a ring of ``N`` ``Node`` PersistentServers under a
``one_for_one`` Supervisor, node ``i`` passing to node ``(i + 1) % N``. Each node's durable
state is ``token`` (the sequence number of the token it holds, ``None`` if it holds none),
``sending`` (it is handing that token on), ``last_seen`` (the highest sequence number it has
received) and ``received`` (how many tokens it has received: its pass counter). Node 0 starts
with token 0.

The hand-off protocol (two-phase, idempotent, retried by the sender; it relies only on what
the library guarantees: a persistent server's changed state is durable before it takes its next
message, a failed save crashes it and its restart serves the last durable state):

1. On a ``tick`` (the driver plays the node's timer), a holder that is not yet sending makes
   ``sending = True`` durable and sends itself ``"send"``: that message is taken only once the
   state is durable, and is lost with the process if the save fails.
2. While ``sending`` (on ``"send"`` and on every later tick, also after any restart) the holder
   casts ``("receive", token + 1, i)`` to its successor; a dead successor is simply retried.
3. The successor, on ``receive(seq)`` with ``seq > last_seen``, makes ``token = seq``,
   ``sending = False``, ``last_seen = seq``, ``received + 1`` durable and only then (through a
   message to itself) casts ``("ack", seq)`` back; with ``seq <= last_seen`` (a retry) it only
   acks again. A token received is therefore counted exactly once.
4. The sender, on ``ack(seq)`` with ``sending`` and ``seq == token + 1``, drops the token
   (``token = None``, ``sending = False``); any other ack is stale and ignored. If the token
   came round the ring again before an ack arrived, ``receive`` has already replaced the
   pending send with the new token: the old send had been received, or the token could not
   have come back.

Each step picks faults, ticks a random subset of the nodes in random order, then lets the
system settle: rounds of ``sync`` over every node and the supervisor until a round in which no
process handled anything but those syncs (a watcher counts handled messages). Then, reading
the truth from the inner store:

- every node is up (supervised restarts), a node killed this step runs under a new pid, and
  each server's state is exactly its durable record (a restart serves what was acknowledged);
- with ``M`` the highest durable token: exactly one node holds ``M`` (never duplicated, never
  lost) and every node holding an older token is ``sending`` it (that hand-off already landed);
- ``sum(received) == M`` (each pass counted exactly once), ``M`` and every ``received`` only
  grow;
- after the faults stop and the system settles, passes resume: ``M`` grows by at least ``N``
  over a few fault-free steps, and the invariants above still hold;
- the ``runtime`` fixture fails the test on a leaked task or thread.

A failing seed is replayed with ``pytest "tests/properties/test_token_ring_simulation.py::
test_token_ring_survives_seeded_faults[17]"`` (SQLite: ``..._on_sqlite[3]``).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from foundation import Pid, Runtime, Supervisor, cast, send
from foundation.errors import NoProcess, ProcessExited
from foundation.persistence import MemoryStore, PersistentServer, SQLiteStore, StateStore
from foundation.testing import FaultyStore, crash, get_state, sync
from foundation.testing.faults import FAULTS, Fault

N = 5
STEPS = 300
CALM_STEPS = 4 * N  # fault-free steps at the end: passes must resume
SEEDS = range(50)
SQLITE_SEEDS = range(5)  # the callback save path (``save_json_then``), slower: a few seeds

P_KILL = 0.03  # kill a node between steps
P_RAISE = 0.02  # a node's handler raises
P_KILL_MID = 0.03  # kill a node right after the ticks went out
P_SAVE_FAIL = 0.06  # one of the next few saves fails, nothing lands
P_LOST_ANSWER = 0.03  # one of the next few saves lands, then answers with the error
P_LOAD_FAIL = 0.01  # one of the next few loads (restarts) fails
P_TICK = 0.7  # each node's chance to be ticked in a step

MAX_SETTLE_ROUNDS = 50
KINDS: tuple[Fault, ...] = tuple(sorted(FAULTS))  # type: ignore[arg-type]


class Node(PersistentServer):
    """One node of the ring; see the module docstring for the protocol."""

    class State(BaseModel):
        index: int
        token: int | None = None
        sending: bool = False
        last_seen: int = 0
        received: int = 0

    async def init(self, args: Any) -> Any:
        index = int(args)
        return self.State(index=index, token=0 if index == 0 else None)

    async def handle_cast(self, request: Any, state: Node.State) -> Any:
        kind = request[0]
        if kind == "tick":
            if state.token is None:
                return state
            if not state.sending:
                send(self.pid, "send")  # taken once ``sending`` is durable
                return state.model_copy(update={"sending": True})
            self._offer(state)
            return state
        if kind == "receive":
            _, seq, sender = request
            if seq <= state.last_seen:
                _cast(node_name(sender), ("ack", seq))  # a retry: already durable
                return state
            send(self.pid, ("ack_to", sender, seq))  # taken once the token is durable
            return state.model_copy(
                update={
                    "token": seq,
                    "sending": False,
                    "last_seen": seq,
                    "received": state.received + 1,
                }
            )
        if kind == "ack":
            seq = request[1]
            if state.sending and state.token is not None and seq == state.token + 1:
                return state.model_copy(update={"token": None, "sending": False})
            return state  # stale
        if kind == "raise":
            raise RuntimeError("simulated crash")
        raise AssertionError(f"unexpected cast {request!r}")

    async def handle_info(self, msg: Any, state: Node.State) -> Any:
        if msg == "send":
            if state.sending:
                self._offer(state)
            return state
        if isinstance(msg, tuple) and msg[0] == "ack_to":
            _cast(node_name(msg[1]), ("ack", msg[2]))
            return state
        return await super().handle_info(msg, state)

    def _offer(self, state: Node.State) -> None:
        assert state.token is not None
        _cast(node_name((state.index + 1) % N), ("receive", state.token + 1, state.index))


def _cast(name: str, request: Any) -> None:
    """A cast that may find its target down (restarting): the sender's retry covers it."""
    with contextlib.suppress(NoProcess):
        cast(name, request)


def node_name(i: int) -> str:
    return f"ring.node{i}"


# -- the driver ----------------------------------------------------------------------------------


@dataclass
class Sim:
    rt: Runtime
    store: FaultyStore
    rng: random.Random
    sup: Pid
    handled: list[int] = field(default_factory=lambda: [0])
    last_m: int = 0
    last_received: list[int] = field(default_factory=lambda: [0] * N)
    log: list[str] = field(default_factory=list)

    def pid(self, i: int) -> Pid | None:
        return self.rt.whereis(node_name(i))

    async def settle(self) -> None:
        """Sync every node and the supervisor until a round in which nothing else happened."""
        for _ in range(MAX_SETTLE_ROUNDS):
            before = self.handled[0]
            pids = [self.pid(i) for i in range(N)]
            quiet = True
            for i in range(N):
                try:
                    await sync(node_name(i))
                except (NoProcess, ProcessExited):
                    quiet = False
            await sync(self.sup)
            if (
                quiet
                and self.handled[0] - before == N + 1
                and pids == [self.pid(i) for i in range(N)]
            ):
                return
        raise AssertionError(f"the ring did not settle in {MAX_SETTLE_ROUNDS} rounds: {self.log}")

    async def durable(self) -> list[Node.State]:
        states = []
        for i in range(N):
            record = await self.store.inner.load(node_name(i))
            assert record is not None, f"node {i} has no durable state"
            states.append(Node.State.model_validate(record.data))
        return states

    async def check(self, killed: set[Pid]) -> int:
        """The invariants of the module docstring, once settled; the current sequence number."""
        states = await self.durable()
        for i, stored in enumerate(states):
            pid = self.pid(i)
            assert pid is not None, f"node {i} is not running after settling"
            assert pid not in killed, f"node {i} still runs as the killed {pid}"
            live = await get_state(pid)
            assert live == stored, f"node {i} serves {live!r}, its durable state is {stored!r}"
        tokens = [s.token for s in states if s.token is not None]
        assert tokens, f"the token is lost: {states}"
        m = max(tokens)
        holders = [s.index for s in states if s.token == m]
        assert len(holders) == 1, f"token {m} is duplicated: held by nodes {holders}"
        for s in states:
            if s.token is not None and s.token < m:
                assert s.sending, f"node {s.index} holds the old token {s.token} as live: {states}"
        assert sum(s.received for s in states) == m, f"passes not counted once each: {states}"
        assert m >= self.last_m, f"the sequence number went back: {self.last_m} -> {m}"
        for s in states:
            assert s.received >= self.last_received[s.index], f"node {s.index}'s counter shrank"
        self.last_m = m
        self.last_received = [s.received for s in states]
        return m

    def victim(self) -> tuple[int, Pid | None]:
        i = self.rng.randrange(N)
        return i, self.pid(i)

    async def step(self, n: int, *, faults: bool) -> int:
        rng = self.rng
        killed: set[Pid] = set()
        if faults:
            saves, loads = self.store.calls["save"], self.store.calls["load"]
            if rng.random() < P_SAVE_FAIL:
                kind = rng.choice(KINDS)
                at = saves + 1 + rng.randrange(3)
                self.store.fail.setdefault("save", {})[at] = kind
                self.log.append(f"{n}: save #{at} fails ({kind})")
            if rng.random() < P_LOST_ANSWER:
                at = saves + 1 + rng.randrange(3)
                self.store.fail_after_write.add(at)
                self.log.append(f"{n}: save #{at} lands, its answer is lost")
            if rng.random() < P_LOAD_FAIL:
                at = loads + 1 + rng.randrange(2)
                self.store.fail.setdefault("load", {})[at] = rng.choice(KINDS)
                self.log.append(f"{n}: load #{at} fails")
            if rng.random() < P_KILL:
                i, pid = self.victim()
                if pid is not None:
                    self.log.append(f"{n}: kill node {i}")
                    killed.add(pid)
                    await crash(pid)
            if rng.random() < P_RAISE:
                i, pid = self.victim()
                self.log.append(f"{n}: node {i} raises")
                _cast(node_name(i), ("raise",))
        order = list(range(N))
        rng.shuffle(order)
        for i in order:
            if rng.random() < P_TICK:
                _cast(node_name(i), ("tick",))
        if faults and rng.random() < P_KILL_MID:
            # Let part of the step run first (one node's messages so far), so the kill may land
            # in a handler or, on SQLite, while the victim's save is being committed.
            _, first = self.victim()
            if first is not None:
                with contextlib.suppress(NoProcess, ProcessExited):
                    await sync(first)
            i, pid = self.victim()
            if pid is not None:
                self.log.append(f"{n}: kill node {i} mid-step")
                killed.add(pid)
                await crash(pid)
        await self.settle()
        return await self.check(killed)


def make_inner(backend: str, directory: Path) -> StateStore:
    return MemoryStore() if backend == "memory" else SQLiteStore(directory / "ring.db")


async def simulate(runtime: Runtime, backend: str, seed: int, directory: Path) -> None:
    store = FaultyStore(make_inner(backend, directory))
    runtime.store = store
    sim_handled = [0]

    def count() -> None:
        sim_handled[0] += 1

    runtime.watchers.append(count)
    try:
        sup = await Supervisor.start_link(
            [Node.child_spec(i, key=node_name(i), name=node_name(i)) for i in range(N)],
            max_restarts=1_000_000,
            max_seconds=1.0,
        )
        sim = Sim(runtime, store, random.Random(seed), sup, handled=sim_handled)
        await sim.settle()
        assert await sim.check(set()) == 0
        for n in range(STEPS):
            await sim.step(n, faults=True)
        store.fail.clear()
        store.fail_after_write.clear()
        start = await sim.step(STEPS, faults=False)
        for n in range(STEPS + 1, STEPS + 1 + CALM_STEPS):
            await sim.step(n, faults=False)
        assert sim.last_m >= start + N, (
            f"passes did not resume: {start} -> {sim.last_m} in {CALM_STEPS} fault-free steps"
        )
    finally:
        runtime.watchers.remove(count)


@pytest.mark.parametrize("seed", SEEDS)
async def test_token_ring_survives_seeded_faults(
    runtime: Runtime, seed: int, tmp_path: Path
) -> None:
    await simulate(runtime, "memory", seed, tmp_path)


@pytest.mark.parametrize("seed", SQLITE_SEEDS)
async def test_token_ring_survives_seeded_faults_on_sqlite(
    runtime: Runtime, seed: int, tmp_path: Path
) -> None:
    await simulate(runtime, "sqlite", seed, tmp_path)
