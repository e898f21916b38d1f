"""Agents benchmark: durable agent actions per second and recovery of 1,000 persisted agents.

Run alone: ``.venv/bin/python bench/agents_bench.py [--quick] [--rounds N] [--store URL]``
(default store: a SQLite file in a temporary directory, the embedded default). Asserts nothing
about timings; prints absolute figures and ratios measured in the same run.

- **agent actions/s**: C clients (1, 10, 100), each running ``run(agent_i, "add", {"n": 1})`` in
  turn on its own agent: params validated, action run, new state durable before the answer.
  Baselines in the same run: (a) the same update as a plain GenServer ``call`` with nothing
  persisted (what validation and durability cost), (b) a naive sqlite3 loop, one commit per
  update, same payload and ``synchronous`` setting (what group commit saves).
- **recovery**: 1,000 agents with stored state; a fresh runtime on the same store starts them
  all again under the AgentSupervisor; per-agent start latency (p50, p99) and the total. The
  issue's targets: p99 under 100 ms per agent, all 1,000 under 2 s.
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

from foundation import GenServer, Reply, Runtime, Supervisor, call
from foundation.agents import Agent, AgentSupervisor, action, run, start_agent
from foundation.kernel.api import spawn, wait_exit


class Adder(Agent):
    capabilities = ("add",)

    class State(BaseModel):
        total: int = 0
        history: list[int] = []

    class Add(BaseModel):
        n: int

    @action
    async def add(self, params: Add, state: State) -> tuple[int, State]:
        new = state.model_copy(
            update={"total": state.total + params.n, "history": [*state.history[-9:], params.n]}
        )
        return new.total, new


class PlainAdder(GenServer):
    async def init(self, args: Any) -> dict[str, Any]:
        return {"total": 0, "history": []}

    async def handle_call(self, request: Any, caller: Any, state: dict[str, Any]) -> Any:
        n = request["n"]
        new = {"total": state["total"] + n, "history": [*state["history"][-9:], n]}
        return Reply(new["total"], new)


async def _clients(clients: int, per: int, op: Any) -> float:
    """Actions per second with ``clients`` concurrent clients doing ``per`` actions each."""

    async def client(i: int) -> None:
        for _ in range(per):
            await op(i)

    t0 = time.perf_counter()
    pids = [spawn(client, i) for i in range(clients)]
    for pid in pids:
        await wait_exit(pid)
    return clients * per / (time.perf_counter() - t0)


async def agent_rate(url: str, clients: int, per: int) -> float:
    async with Runtime(store=url):
        await Supervisor.start_link(AgentSupervisor.child_specs())
        ids = [f"a{i}" for i in range(clients)]
        for agent_id in ids:
            await start_agent(Adder, agent_id)
        return await _clients(clients, per, lambda i: run(ids[i], "add", {"n": 1}))


async def plain_rate(clients: int, per: int) -> float:
    async with Runtime():
        pids = [await PlainAdder.start() for _ in range(clients)]
        return await _clients(clients, per, lambda i: call(pids[i], {"n": 1}))


def naive_sqlite_rate(path: str, n: int, synchronous: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS s (key TEXT PRIMARY KEY, data TEXT, version INT)")
    state: dict[str, Any] = {"total": 0, "history": []}
    t0 = time.perf_counter()
    for i in range(n):
        state = {"total": state["total"] + 1, "history": [*state["history"][-9:], 1]}
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO s VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET data=excluded.data,"
            " version=excluded.version",
            ("k", json.dumps(state), i),
        )
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


async def recovery(url: str, n: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, total s) to start ``n`` stored agents again on a fresh runtime."""
    async with Runtime(store=url):
        await Supervisor.start_link(AgentSupervisor.child_specs())
        for i in range(n):
            await start_agent(Adder, f"r{i}")
            await run(f"r{i}", "add", {"n": i})
    async with Runtime(store=url):
        await Supervisor.start_link(AgentSupervisor.child_specs())
        latencies = []
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            await start_agent(Adder, f"r{i}")
            latencies.append((time.perf_counter() - s) * 1000)
        total = time.perf_counter() - t0
        if not url.startswith("memory:"):  # a memory store does not outlive its runtime
            assert await run(f"r{n - 1}", "add", {"n": 0}) == n - 1, "the state came back"
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], total


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", default=None, help="store URL (default: a temp SQLite file)")
    args = parser.parse_args()
    per_total = 2_000 if args.quick else 20_000
    n_recover = 200 if args.quick else 1_000
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{os.path.join(tmp, 'agents.db')}"
        print(f"store: {url.split('://')[0]}; {args.rounds} rounds, medians")
        print(
            f"{'clients':>8} {'agent run/s':>12} {'plain call/s':>13} {'naive sqlite/s':>15}"
            f" {'÷ plain':>8} {'÷ naive':>8}"
        )
        for clients in (1, 10, 100):
            per = max(per_total // clients // 10, 20)
            a, p, s = [], [], []
            for r in range(args.rounds):
                a.append(await agent_rate(url.replace(".db", f"-{clients}-{r}.db"), clients, per))
                p.append(await plain_rate(clients, per))
                s.append(
                    naive_sqlite_rate(
                        os.path.join(tmp, f"naive-{clients}-{r}.db"),
                        min(per * clients, 2_000),
                        "NORMAL",
                    )
                )
            ma, mp, ms = statistics.median(a), statistics.median(p), statistics.median(s)
            print(
                f"{clients:>8} {ma:>12,.0f} {mp:>13,.0f} {ms:>15,.0f} {ma / mp:>7.2f}x"
                f" {ma / ms:>7.2f}x"
            )
        p50, p99, total = await recovery(url.replace(".db", "-recovery.db"), n_recover)
        print(
            f"recovery of {n_recover} agents: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"total {total:.2f} s (targets: p99 < 100 ms, total < 2 s for 1,000)"
        )


if __name__ == "__main__":
    asyncio.run(main())
