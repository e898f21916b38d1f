"""History-checked multi-process test (T11, "Jepsen-lite") on one shared PostgreSQL store.

``PROCS`` OS processes (``_history_child.py``) each run a ``Runtime`` on the same PostgreSQL
table, with a supervised persistent server on each of the same 4 keys: list-append registers,
as in Elle's list-append workload (each append adds a value unique to the run and answers the
list the server holds after it; a read answers the list). Several processes serve each key at
once; only the store's version check (``StaleVersion``) keeps them from overwriting each other.
Every client operation is logged by the child as JSON lines: invoke, then ok (with the list),
fail (an error meaning "not applied", with its code) or info (unknown outcome); an invoke left
open by a killed process is info.

The nemesis (seeded) SIGKILLs a child (and starts a new incarnation in its place some events
later), or pauses one with SIGSTOP and resumes it with SIGCONT once the others have logged a
number of operations. Pauses are bounded in subprocess events; only if no child logs anything
for ``QUIET`` seconds (the paused one may hold row locks mid-commit, so the others wait on it)
is the pause ended early. Between rounds the test reads each key's stored version (stored
versions only grow). At the end, with every child finished, it checks the history against the
final records:

- no value twice in a list (or in two keys' lists), and no value nobody appended;
- each record's version is its list's length + 1 (records are created at version 1, empty):
  every version step is exactly one append, so no update was lost or applied twice;
- an acknowledged append is in its key's final list, and the list it was answered with is a
  prefix of the final list ending with its value (one line of history per key, no fork);
- an acknowledged read's list is a prefix of the final list;
- a failed append is absent from the final list (a ``fail`` means not applied);
- real time: an append acknowledged before another append was invoked precedes it in the list.

Reads are served from a server's memory with no check against the store, so a read in one
process may miss appends acknowledged in another (stale reads are counted, not failed: the
runtime has no coordination between processes that would make them linearizable).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from foundation import Runtime
from tests.conftest import service_or_skip
from tests.persistence._history_child import KEYS

CHILD = Path(__file__).with_name("_history_child.py")
PROCS = 3
CLIENTS = 3
OPS = 50  # per client of each incarnation
ROUNDS = 6  # nemesis actions per run
QUIET = 1.0  # seconds with no event from any child: end a pause early (liveness escape)

pytestmark = [pytest.mark.postgres]


@dataclass
class Child:
    slot: int
    incarnation: int
    proc: subprocess.Popen[bytes]
    buf: bytes = b""
    paused: bool = False
    lines: list[str] = field(default_factory=list)


@dataclass
class Run:
    url: str
    seed: int
    sel: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    live: dict[int, Child] = field(default_factory=dict)  # slot -> child
    history: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, list[int]] = field(default_factory=dict)
    incarnations: int = 0
    kills: int = 0
    pauses: int = 0
    quiet_resumes: int = 0
    stderr: list[str] = field(default_factory=list)

    def start(self, slot: int) -> None:
        inc = self.incarnations
        self.incarnations += 1
        args = [self.url, str(inc), str(self.seed * 100 + inc), str(CLIENTS), str(OPS)]
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        child = Child(slot, inc, proc)
        self.live[slot] = child
        self.sel.register(proc.stdout, selectors.EVENT_READ, child)

    def events(self, timeout: float) -> list[tuple[Child, str | None]]:
        """The next lines from the children (``None``: that child's output ended)."""
        out: list[tuple[Child, str | None]] = []
        for key, _ in self.sel.select(timeout):
            child: Child = key.data
            data = os.read(key.fd, 65536)
            if not data:
                self.sel.unregister(key.fileobj)
                out.append((child, None))
                continue
            child.buf += data
            *complete, child.buf = child.buf.split(b"\n")
            out.extend((child, line.decode()) for line in complete)
        return out

    def take(self, child: Child, line: str | None) -> bool:
        """Record one line; ``True`` if it is an operation (an event for the nemesis)."""
        if line is None:
            child.proc.wait()
            assert child.proc.stdout is not None
            child.proc.stdout.close()
            if self.live.get(child.slot) is child:
                del self.live[child.slot]
            if child.proc.returncode not in (0, -signal.SIGKILL):
                self.stderr.append(f"incarnation {child.incarnation}: {child.proc.returncode}")
            return False
        if line in ("ready", "done"):
            return False
        self.history.append(json.loads(line))
        return True

    def pump(self, n: int, paused: Child | None = None) -> None:
        """Read until ``n`` operations were logged (or every child is done); a paused child is
        resumed early if nothing at all comes for ``QUIET`` seconds."""
        seen = 0
        while seen < n and (self.live or self.sel.get_map()):
            batch = self.events(QUIET)
            if not batch:
                if paused is not None and paused.paused:
                    self.quiet_resumes += 1
                    self.resume(paused)
                    continue
                if not self.live and not self.sel.get_map():
                    return
                continue
            for child, line in batch:
                seen += self.take(child, line)

    def resume(self, child: Child) -> None:
        if child.paused and child.proc.returncode is None:
            child.proc.send_signal(signal.SIGCONT)
        child.paused = False

    def poll_versions(self) -> None:
        for key, version in asyncio.run(_records(self.url)).items():
            self.versions.setdefault(key, []).append(version[0])


async def _records(url: str) -> dict[str, tuple[int, list[str]]]:
    async with Runtime(store=url) as rt:
        out = {}
        for key in KEYS:
            rec = await rt.store.load(key)
            assert rec is not None, key
            out[key] = (rec.version, list(rec.data["items"]))
        return out


async def _create(url: str) -> None:
    """Each register at version 1, empty: servers of several processes starting on a key with
    no record would race to create it, and all but one would fail to start (``StaleVersion``)."""
    async with Runtime(store=url) as rt:
        for key in KEYS:
            await rt.store.save(key, {"items": []}, None)


async def _drop(url: str, table: str) -> None:
    async with Runtime(store=url) as rt:
        await rt.store.execute(f"DROP TABLE IF EXISTS {table}")


def _nemesis(run: Run) -> None:
    rng = random.Random(run.seed)
    for slot in range(PROCS):
        run.start(slot)
    run.pump(rng.randint(20, 60))
    for _ in range(ROUNDS):
        run.poll_versions()
        targets = sorted(run.live)
        if not targets:
            break
        victim = run.live[rng.choice(targets)]
        if rng.random() < 0.5:
            run.kills += 1
            victim.proc.send_signal(signal.SIGKILL)
            run.pump(rng.randint(10, 40))
            if victim.slot not in run.live:
                run.start(victim.slot)
        else:
            run.pauses += 1
            victim.proc.send_signal(signal.SIGSTOP)
            victim.paused = True
            run.pump(rng.randint(20, 80), paused=victim)
            run.resume(victim)
        # keep PROCS processes in the run: a child that finished its operations is replaced
        for slot in range(PROCS):
            if slot not in run.live:
                run.start(slot)
        run.pump(rng.randint(20, 60))
    for child in list(run.live.values()):
        run.resume(child)
    run.pump(10**9)  # every child runs to its end
    run.poll_versions()


def _check(run: Run, final: dict[str, tuple[int, list[str]]]) -> dict[str, int]:
    ops: dict[tuple[int, int, str | None, str, str], dict[str, Any]] = {}
    completed: list[dict[str, Any]] = []
    for event in run.history:
        op_id = (event["p"], event["c"], event["v"], event["k"], event["f"])
        if event["type"] == "invoke":
            ops[op_id] = event
        else:
            completed.append({**event, "invoked": ops.pop(op_id)["ts"]})
    infos = [{**e, "type": "info"} for e in ops.values()]  # open when their process died

    appended = {e["v"]: e["k"] for e in run.history if e["type"] == "invoke" and e["f"] == "append"}
    where: dict[str, tuple[str, int]] = {}
    for key, (version, items) in final.items():
        assert version == len(items) + 1, f"{key}: version {version} for {len(items)} appends"
        for i, value in enumerate(items):
            assert value not in where, f"{value!r} twice: {where[value]} and {(key, i)}"
            assert appended.get(value) == key, f"{key}: {value!r} never appended to it"
            where[value] = (key, i)

    for key, seen in run.versions.items():
        assert seen == sorted(seen), f"{key}: stored versions went back: {seen}"

    counts = {"ok": 0, "fail": 0, "info": len(infos), "stale_reads": 0}
    for e in completed:
        counts[e["type"]] += 1
        items = final[e["k"]][1]
        if e["type"] == "ok":
            got = e["l"]
            assert got == items[: len(got)], f"{e}: not a prefix of {e['k']}'s final list"
            if e["f"] == "append":
                assert got and got[-1] == e["v"], f"{e}: answered list does not end with it"
        elif e["type"] == "fail" and e["f"] == "append":
            assert e["v"] not in where, f"{e}: failed, yet stored at {where[e['v']]}"

    for key in KEYS:
        acked = [e for e in completed if e["k"] == key and e["type"] == "ok"]
        appends = sorted(
            (where[e["v"]][1], e["invoked"], e["ts"]) for e in acked if e["f"] == "append"
        )
        earliest_ack_after = float("inf")  # of the appends placed later in the list
        for pos, invoked, acked_at in reversed(appends):
            assert earliest_ack_after > invoked, (
                f"{key}: the append at {pos} was invoked after a later one was acknowledged"
            )
            earliest_ack_after = min(earliest_ack_after, acked_at)
        for read in (e for e in acked if e["f"] == "read"):
            before = [pos for pos, _, at in appends if at < read["invoked"]]
            if before and len(read["l"]) <= max(before):
                counts["stale_reads"] += 1
    return counts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_list_append_history_across_processes_under_kill_and_pause(seed: int) -> None:
    dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
    table = f"hist_{uuid.uuid4().hex[:10]}"
    url = f"{dsn}?table={table}"
    run = Run(url, seed)
    try:
        asyncio.run(_create(url))
        try:
            _nemesis(run)
        finally:
            for child in list(run.live.values()):
                child.proc.send_signal(signal.SIGKILL)
                child.proc.wait()
        assert not run.stderr, run.stderr
        final = asyncio.run(_records(url))
        counts = _check(run, final)
        print(
            f"seed {seed}: {run.incarnations} incarnations, {run.kills} kills, "
            f"{run.pauses} pauses ({run.quiet_resumes} ended by quiet), {counts}, "
            f"final lengths {[len(final[k][1]) for k in KEYS]}"
        )
        assert counts["ok"] > 0 and run.kills + run.pauses == ROUNDS
    finally:
        asyncio.run(_drop(url, table))
