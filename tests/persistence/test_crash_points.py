"""Crash-point enumeration (T2): the OS process dies at each numbered point of the write path.

A child process (``_crash_point_child.py``, whose ``POINTS`` table numbers and describes the
points) runs 4 persistent counters making acknowledged calls at once, so that each group-commit
batch holds several writes, and calls ``os._exit(137)`` the ``m``-th time it reaches point ``k``
(printing ``crash k m KEY=COUNT ...``: the writes concerned). The test reopens the store and
checks, for every counter:

- nothing partial: the stored state validates and is exactly the fold of the first ``count``
  calls sent to it (``items`` lists each call's value in order: none lost, none applied twice);
- nothing acknowledged is lost, nothing beyond the one call in flight is stored:
  ``acked <= stored <= acked + 1`` (a counter with no acknowledgement may have no record yet);
- the writes of the batch the crash hit (each one its counter's unacknowledged call) are, at
  points 1-3 (queued, after BEGIN, before COMMIT), **absent**: the counter is at the state
  before it; at points 4-5 (after COMMIT, before or while answering), **present** though never
  acknowledged (allowed: the caller never heard of it, the next call goes on from it); at point
  6 (after the acknowledgement was printed) the printed value is the stored one.

Then the child runs again on the same store with no crash point, and each counter goes on from
its stored state (the next acknowledgement is the stored count + 1). The grid: 6 points x
``m`` in {1, 8} (``m`` = 1 of points 1-4 falls in the first server's start, whose save is
alone in its batch; 8 falls among calls, 4 writes a batch) x {SQLite, PostgreSQL}.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation import Runtime
from tests.conftest import service_or_skip
from tests.persistence._crash_point_child import CRASH_EXIT, POINTS, SERVERS, Counter, token

CHILD = Path(__file__).with_name("_crash_point_child.py")
KEYS = tuple(f"cp/c{i}" for i in range(SERVERS))
CALLS = 12  # per counter in the crashing run: enough for 8 batches of calls
AGAIN = 3  # per counter in the run after the crash
LOST = (1, 2, 3)  # points at which the batch hit is not stored
KEPT = (4, 5)  # points at which it is stored, unacknowledged


def _child(url: str, point: int, m: int, calls: int) -> tuple[int, list[str], str]:
    proc = subprocess.run(
        [sys.executable, str(CHILD), url, str(point), str(m), str(calls)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def _acks(lines: list[str]) -> dict[str, list[int]]:
    acks: dict[str, list[int]] = {}
    for line in lines:
        word, key, count = line.split()
        assert word == "ack", line
        acks.setdefault(key, []).append(int(count))
    return acks


async def _load(url: str) -> dict[str, int]:
    """Each counter's stored count (-1: no record), after checking its state is whole."""
    out = {}
    async with Runtime(store=url) as rt:
        for key in KEYS:
            rec = await rt.store.load(key)
            if rec is None:
                out[key] = -1
                continue
            state = Counter.State.model_validate(rec.data)
            n = state.count
            assert state.check == 7 * n, f"{key}: torn state {rec.data}"
            assert state.items == [token(key, i) for i in range(1, n + 1)], (
                f"{key}: not the fold of its first {n} calls: {rec.data}"
            )
            out[key] = n
    return out


def _crash_and_check(url: str, point: int, m: int) -> None:
    code, lines, err = _child(url, point, m, CALLS)
    assert lines and lines[-1] != "done", f"point {point} not reached {m} times: {err}"
    assert code == CRASH_EXIT, f"exit {code}, not the crash point's: {err}"
    marker = lines[-1].split()
    assert marker[:3] == ["crash", str(point), str(m)], lines[-1]
    hit = {k: int(c) for k, c in (w.split("=") for w in marker[3:])}
    acks = _acks(lines[:-1])
    for key, values in acks.items():
        assert values == list(range(1, len(values) + 1)), (key, values)
    acked = {key: values[-1] for key, values in acks.items()}

    stored = asyncio.run(_load(url))
    for key in KEYS:
        lo, hi = acked.get(key, -1), acked.get(key, 0) + 1
        assert lo <= stored[key] <= hi, (
            f"{key}: acknowledged {lo}, in flight at most {hi}, stored {stored[key]}"
        )
    assert hit, lines[-1]
    for key, count in hit.items():
        if point == 6:
            assert count == acked[key] == stored[key], (key, count, acked, stored)
            continue
        # the batch hit holds each counter's unacknowledged call (or its first save)
        assert acked.get(key, -1) < count <= acked.get(key, 0) + 1, (key, count, acked)
        if point in LOST:
            assert stored[key] == (count - 1 if count > 0 else -1), (
                f"{key}: crash at point {point} ({POINTS[point]}): the write of {count} must"
                f" not be stored; stored {stored[key]}"
            )
        else:
            assert point in KEPT
            assert stored[key] == count, (
                f"{key}: crash at point {point} ({POINTS[point]}): the committed write of"
                f" {count} is lost; stored {stored[key]}"
            )
    if point == 5:
        assert len(hit) >= 2, lines[-1]

    # restart: every counter goes on from its stored state
    code, lines, err = _child(url, 0, 0, AGAIN)
    assert code == 0 and lines[-1:] == ["done"], (code, lines[-3:], err)
    acks = _acks(lines[:-1])
    for key in KEYS:
        start = max(stored[key], 0)
        assert acks[key] == list(range(start + 1, start + AGAIN + 1)), (key, stored, acks)
    again = asyncio.run(_load(url))
    assert again == {key: max(stored[key], 0) + AGAIN for key in KEYS}


GRID = tuple((point, m) for point in sorted(POINTS) for m in (1, 8))


@pytest.mark.parametrize(("point", "m"), GRID)
def test_sqlite_crash_point(tmp_path: Path, point: int, m: int) -> None:
    path = tmp_path / "crash.db"
    _crash_and_check(f"sqlite:///{path}", point, m)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
    table = f"crashpt_{uuid.uuid4().hex[:10]}"
    url = f"{dsn}?table={table}"
    yield url

    async def drop() -> None:
        async with Runtime(store=url) as rt:
            await rt.store.execute(f"DROP TABLE IF EXISTS {table}")

    asyncio.run(drop())


@pytest.mark.postgres
@pytest.mark.parametrize(("point", "m"), GRID)
def test_postgres_crash_point(pg_url: str, point: int, m: int) -> None:
    _crash_and_check(pg_url, point, m)
