"""Crash tests: SIGKILL an OS process mid-stream of acknowledged calls; nothing acked is lost.

A child process (``_crash_child.py``) runs counters, as persistent servers (``calls``) or as
plain store saves (``saves``), and prints each acknowledged value; the test kills it with
SIGKILL at random points (seeded), 20 times per store and mode, restarts it on the same store,
and checks that every counter resumes above its last acknowledged value, that no stored state
is partial and (SQLite) that ``PRAGMA integrity_check`` says ``ok``.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from foundation import Runtime
from foundation.persistence import open_store
from tests.conftest import service_or_skip

CHILD = Path(__file__).with_name("_crash_child.py")
KILLS = 20


def _run_and_kill(url: str, mode: str, acks_before_kill: int) -> dict[str, list[int]]:
    """Start the child, read ``acks_before_kill`` acknowledgements, SIGKILL it; acks per key."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), url, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acks: dict[str, list[int]] = {}
    try:
        line = proc.stdout.readline()
        assert line == "ready\n", f"child did not start: {line!r} {proc.stderr.read()!r}"  # type: ignore[union-attr]
        for _ in range(acks_before_kill):
            key, value = proc.stdout.readline().split()
            acks.setdefault(key, []).append(int(value))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    return acks


def _kill_repeatedly(url: str, mode: str, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    acked: dict[str, int] = {}
    for _ in range(KILLS):
        acks = _run_and_kill(url, mode, rng.randint(1, 300))
        for key, values in acks.items():
            # each run resumes from the stored state, which holds at least every acked change
            assert values[0] > acked.get(key, 0), (key, values[0], acked.get(key))
            assert values == list(range(values[0], values[0] + len(values)))
            acked[key] = values[-1]
    return acked


async def _stored(url: str, keys: list[str]) -> dict[str, dict[str, int]]:
    async with Runtime(store=url) as rt:
        out = {}
        for key in keys:
            rec = await rt.store.load(key)
            assert rec is not None, key
            out[key] = rec.data
        return out


def _check(url: str, acked: dict[str, int]) -> None:
    stored = asyncio.run(_stored(url, sorted(acked)))
    for key, last in acked.items():
        data = stored[key]
        assert data["count"] >= last, f"{key}: acknowledged {last}, stored {data['count']}"
        assert data["check"] == 7 * data["count"], f"{key}: partial state {data}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "synchronous"), [("calls", "normal"), ("calls", "full"), ("saves", "normal")]
)
def test_sqlite_loses_no_acknowledged_change_across_20_sigkills(
    tmp_path: Path, mode: str, synchronous: str
) -> None:
    path = tmp_path / "crash.db"
    url = f"sqlite:///{path}?synchronous={synchronous}"
    acked = _kill_repeatedly(url, mode, seed=7)
    assert len(acked) == 8
    _check(url, acked)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["calls", "saves"])
def test_postgres_loses_no_acknowledged_change_across_20_sigkills(mode: str) -> None:
    dsn = service_or_skip("postgres", "FOUNDATION_TEST_PG_DSN")
    table = f"crash_{uuid.uuid4().hex[:10]}"
    url = f"{dsn}?table={table}"
    try:
        acked = _kill_repeatedly(url, mode, seed=11)
        assert len(acked) == 8
        _check(url, acked)
    finally:

        async def drop() -> None:
            async with Runtime(store=url) as rt:
                await rt.store.execute(f"DROP TABLE IF EXISTS {table}")

        asyncio.run(drop())
        assert open_store(url).table == table  # type: ignore[attr-defined]
