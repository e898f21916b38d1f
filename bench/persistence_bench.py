"""Persistence benchmark: acknowledged durable calls per second against a naive SQLite loop.

Run alone: ``.venv/bin/python bench/persistence_bench.py [--quick] [--rounds N]``. Asserts
nothing about timings. For ``synchronous`` normal and full, with 1, 10 and 100 concurrent
persistent servers (each with one client awaiting one call after another, every call changing
the state, so every acknowledgement is a durable save), against the naive baseline measured in
the same run: a plain ``sqlite3`` loop, one transaction and commit per save, same payload, same
``synchronous`` setting, WAL mode. The issue's targets at 100 servers: >= 50,000 acknowledged
calls/s with the default (normal), and >= 8x the naive loop with ``synchronous="full"``.
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
from typing import Any

from pydantic import BaseModel

from foundation import Reply, Runtime, call, spawn
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.persistence import PersistentServer, SQLiteStore


class Account(PersistentServer):
    class State(BaseModel):
        balance: int = 0
        history: list[int] = []

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        new = self.State(balance=state.balance + request, history=[*state.history[-9:], request])
        return Reply(new.balance, new)


def payload(i: int) -> dict[str, Any]:
    return {"balance": i, "history": list(range(max(0, i - 9), i + 1))[-10:]}


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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total = 3_000 if args.quick else 30_000
    print(f"SQLite, WAL; {args.rounds} rounds, medians; acknowledged durable calls per second")
    print(f"{'synchronous':>11} {'servers':>7} {'foundation':>11} {'naive loop':>11} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        run = 0
        for sync in ("normal", "full"):
            naive_n = 2_000 if sync == "full" else 10_000
            for servers in (1, 10, 100):
                per = max(total // servers, 10) if servers > 1 else total // 3
                f, b = [], []
                for _ in range(args.rounds):
                    run += 1
                    f.append(
                        await durable_calls(os.path.join(tmp, f"f{run}.db"), sync, servers, per)
                    )
                    b.append(
                        naive(
                            os.path.join(tmp, f"n{run}.db"),
                            sync,
                            naive_n // 4 if args.quick else naive_n,
                        )
                    )
                mf, mb = statistics.median(f), statistics.median(b)
                print(f"{sync:>11} {servers:>7} {mf:>11,.0f} {mb:>11,.0f} {mf / mb:>6.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
