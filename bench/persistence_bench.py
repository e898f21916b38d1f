"""Persistence benchmark: acknowledged durable saves (and calls) per second against naive loops.

Run: ``.venv/bin/python bench/persistence_bench.py [--quick] [--rounds N] [--pg DSN]`` (or
``bench/run.py persistence ...``). Asserts nothing about timings. Three tables, each against
a naive baseline measured in the same run, same payload and same ``synchronous`` setting:

1. ``SQLiteStore`` saves: 1, 10 and 100 concurrent writers, each awaiting its save (its own
   key, the version it got back) before the next, against a plain ``sqlite3`` loop, WAL mode,
   one transaction and commit per save; for ``synchronous`` normal and full.
2. The same through persistent servers: 1, 10 and 100 servers, each with one client awaiting
   one state-changing call after another (every acknowledgement is a durable save).
3. With ``--pg DSN`` (default: ``$FOUNDATION_TEST_PG_DSN`` if set): ``PostgresStore`` saves
   against a naive asyncpg loop, one transaction per save.

The issue's targets at 100 concurrent writers/servers: >= 50,000 acknowledged per second with
the default (normal), and >= 8x the naive loop with ``synchronous="full"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from foundation import Reply, Runtime, call, spawn
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.persistence import PersistentServer, SQLiteStore
from foundation.persistence.postgres import PostgresStore


class Account(PersistentServer):
    class State(BaseModel):
        balance: int = 0
        history: list[int] = []

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        new = self.State(balance=state.balance + request, history=[*state.history[-9:], request])
        return Reply(new.balance, new)


def payload(i: int) -> dict[str, Any]:
    return {"balance": i, "history": list(range(max(0, i - 9), i + 1))}


async def _writers(store: Any, writers: int, per: int) -> float:
    """Saves/s of ``writers`` processes, each saving its own key ``per`` times in turn."""

    async def writer(key: str) -> None:
        version = None
        for i in range(per):
            version = await store.save(key, payload(i), version)

    await store.save("warm", {}, None)  # the connection opened, the table made
    t0 = time.perf_counter()
    pids = [spawn(writer, f"acct-{i}") for i in range(writers)]
    for pid in pids:
        await wait_exit(pid)
    return writers * per / (time.perf_counter() - t0)


async def store_saves(path: str, synchronous: str, writers: int, per: int) -> float:
    store = SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    async with Runtime(store=store):
        return await _writers(store, writers, per)


async def durable_calls(path: str, synchronous: str, servers: int, per: int) -> float:
    store = SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    async with Runtime(store=store):
        pids = [await Account.start(key=f"acct-{i}") for i in range(servers)]

        async def client(pid: Any) -> None:
            for _ in range(per):
                await call(pid, 1)

        t0 = time.perf_counter()
        clients = [spawn(client, pid) for pid in pids]
        for c in clients:
            await wait_exit(c)
        return servers * per / (time.perf_counter() - t0)


def naive(path: str, synchronous: str, n: int) -> float:
    """The baseline: a plain sqlite3 loop, one transaction and commit per save."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS s (key TEXT PRIMARY KEY, data TEXT, version INTEGER,"
        " schema_version INTEGER, updated_at REAL)"
    )
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO s VALUES (?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET"
            " data=excluded.data, version=excluded.version, updated_at=excluded.updated_at",
            (f"acct-{i % 100}", json.dumps(payload(i)), i, time.time()),
        )
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


async def pg_saves(dsn: str, writers: int, per: int) -> float:
    store = PostgresStore(dsn, table=f"bench_{uuid.uuid4().hex[:10]}")
    async with Runtime(store=store):
        try:
            return await _writers(store, writers, per)
        finally:
            await store.execute(f"DROP TABLE {store.table}")


async def pg_naive(dsn: str, n: int) -> float:
    """The PostgreSQL baseline: one asyncpg connection, one transaction per save."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    table = f"naive_{uuid.uuid4().hex[:10]}"
    await conn.execute(
        f"CREATE TABLE {table} (key TEXT PRIMARY KEY, data JSONB, version BIGINT,"
        " schema_version INTEGER, updated_at DOUBLE PRECISION)"
    )
    try:
        t0 = time.perf_counter()
        for i in range(n):
            async with conn.transaction():
                await conn.execute(
                    f"INSERT INTO {table} VALUES ($1, $2::jsonb, $3, 1, $4) ON CONFLICT (key)"
                    " DO UPDATE SET data=excluded.data, version=excluded.version,"
                    " updated_at=excluded.updated_at",
                    f"acct-{i % 100}",
                    json.dumps(payload(i)),
                    i,
                    time.time(),
                )
        return n / (time.perf_counter() - t0)
    finally:
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()


def _row(label: str, n: int, ours: list[float], base: list[float]) -> None:
    mf, mb = statistics.median(ours), statistics.median(base)
    print(f"{label:>11} {n:>7} {mf:>11,.0f} {mb:>11,.0f} {mf / mb:>6.2f}x", flush=True)


async def sqlite_table(
    what: str,
    measure: Callable[[str, str, int, int], Awaitable[float]],
    tmp: str,
    args: argparse.Namespace,
) -> None:
    total = 3_000 if args.quick else 30_000
    print(f"\nSQLite, WAL; {what}; {args.rounds} rounds, medians, per second")
    print(f"{'synchronous':>11} {'writers':>7} {'foundation':>11} {'naive loop':>11} {'ratio':>7}")
    for sync in ("normal", "full"):
        naive_n = 2_000 if sync == "full" else 10_000
        if args.quick:
            naive_n //= 4
        for writers in (1, 10, 100):
            per = max(total // writers, 10) if writers > 1 else total // 3
            ours, base = [], []
            for _ in range(args.rounds):
                name = uuid.uuid4().hex
                ours.append(await measure(os.path.join(tmp, f"f{name}.db"), sync, writers, per))
                base.append(naive(os.path.join(tmp, f"n{name}.db"), sync, naive_n))
            _row(sync, writers, ours, base)


async def pg_table(dsn: str, args: argparse.Namespace) -> None:
    total = 1_000 if args.quick else 6_000
    print(f"\nPostgreSQL ({dsn}); PostgresStore saves; {args.rounds} rounds, medians, per second")
    print(f"{'':>11} {'writers':>7} {'foundation':>11} {'naive loop':>11} {'ratio':>7}")
    for writers in (1, 10, 100):
        per = max(total // writers, 10) if writers > 1 else total // 6
        ours, base = [], []
        for _ in range(args.rounds):
            ours.append(await pg_saves(dsn, writers, per))
            base.append(await pg_naive(dsn, total // 6))
        _row("", writers, ours, base)


def uvloop_row(tmp: str, args: argparse.Namespace) -> None:
    """Persistent server calls at 100 servers (normal) on uvloop (``foundation[fast]``), each
    round beside the same on the default asyncio loop and the naive loop."""
    try:
        import uvloop
    except ImportError:
        print("\nuvloop: skipped (not installed: the fast extra)")
        return
    per = 30 if args.quick else 300
    on_uv, on_asyncio, base = [], [], []
    for _ in range(args.rounds):
        name = uuid.uuid4().hex
        on_uv.append(
            uvloop.run(durable_calls(os.path.join(tmp, f"u{name}.db"), "normal", 100, per))
        )
        on_asyncio.append(
            asyncio.run(durable_calls(os.path.join(tmp, f"a{name}.db"), "normal", 100, per))
        )
        base.append(naive(os.path.join(tmp, f"n{name}.db"), "normal", 10_000))
    print(
        f"\nPersistent server calls, 100 servers, normal; {args.rounds} rounds, medians, per second"
    )
    print(f"{'loop':>11} {'servers':>7} {'foundation':>11} {'naive loop':>11} {'ratio':>7}")
    _row("asyncio", 100, on_asyncio, base)
    _row("uvloop", 100, on_uv, base)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("FOUNDATION_TEST_PG_DSN", ""))
    parser.add_argument("--only", choices=["store", "calls", "uvloop", "pg"], default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "store"):
            asyncio.run(sqlite_table("SQLiteStore saves", store_saves, tmp, args))
        if args.only in (None, "calls"):
            asyncio.run(sqlite_table("persistent server calls", durable_calls, tmp, args))
        if args.only in (None, "uvloop"):
            uvloop_row(tmp, args)
    if args.pg and args.only in (None, "pg"):
        try:
            import asyncpg  # noqa: F401
        except ImportError:
            print("\nPostgreSQL: skipped (asyncpg is not installed: the postgres extra)")
            return
        asyncio.run(pg_table(args.pg, args))


if __name__ == "__main__":
    main()
