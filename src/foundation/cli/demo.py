"""``foundation demo``: the whole system at work while a chaos monkey kills parts of it.

It starts the system on the embedded default store (a SQLite file): the signal bus, the agent
registry and supervisor, eleven TaskAgents in five capabilities, and the workflow coordinator
and supervisor. It submits a few hundred five-step workflows (fetch, then parse and enrich in
parallel, score, store) and, while they run, kills random agents, workflow processes and the
coordinator itself. A live display shows progress; the summary is computed from the store:
each workflow's status and each step's recorded result, checked against the expected value.

``foundation demo --kill-process`` runs the system in a child OS process instead, SIGKILLs it
at random moments several times, starts it again on the same database each time, and checks
that every workflow completes with each step's result recorded exactly once.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from foundation import Runtime, Supervisor, spawn
from foundation import exit as exit_signal
from foundation.agents import AgentSupervisor, find_agents, start_agent
from foundation.cli.demo_agents import (
    DemoMonitor,
    expected_results,
    pipeline_steps,
    worker_types,
)
from foundation.kernel.api import wait_exit
from foundation.services.tree import Services
from foundation.workflows import (
    WorkflowSystem,
    await_workflow,
    list_workflows,
    start_workflow,
)
from foundation.workflows.process import COORDINATOR

__all__ = ["DemoOptions", "Tally", "main", "run_demo", "verify_store"]

log = logging.getLogger("foundation.demo")


@dataclass
class DemoOptions:
    """What ``foundation demo`` runs: how many workflows, how many kills, where, which seed."""

    workflows: int = 300
    kills: int = 60
    store: str = "foundation-demo.db"
    seed: int = 1
    fresh: bool = True


@dataclass
class Tally:
    """What happened: submissions, crashes by kind, restarts seen, and the verified outcome."""

    submitted: int = 0
    completed: int = 0
    kills: dict[str, int] = field(default_factory=lambda: {"agent": 0, "workflow": 0, "coord": 0})
    restarts: int = 0
    outcome: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    process_kills: int = 0


def _tree() -> list[Any]:
    return [
        Services.supervisor_spec(),
        *AgentSupervisor.child_specs(max_restarts=100_000),
        *WorkflowSystem.child_specs(max_restarts=100_000),
    ]


async def _start_system() -> None:
    await Supervisor.start_link(_tree(), max_restarts=1_000, max_seconds=5)
    for cls, count in worker_types():
        for i in range(count):
            await start_agent(cls, f"{cls.capabilities[0]}-{i + 1}")
    await start_agent(DemoMonitor, "monitor")


def _restart_counter(rt: Runtime, tally: Tally) -> None:
    seen: set[str] = set()

    def on_event(
        event: tuple[str, ...], measurements: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        if event == ("foundation", "process", "start") and meta.get("name"):
            if meta["name"] in seen:
                tally.restarts += 1
            seen.add(meta["name"])

    rt.event_handlers.append(on_event)


async def _chaos(rt: Runtime, tally: Tally, kills: int, seed: int, ids: list[str]) -> None:
    """Kill ``kills`` random processes: agents, workflow processes, the coordinator."""
    rng = random.Random(seed)
    for _ in range(kills):
        await rt.clock.sleep(rng.uniform(0.005, 0.04))
        kind = rng.choices(["agent", "workflow", "coord"], weights=[5, 4, 1])[0]
        if kind == "agent":
            agents = [a for a in find_agents() if a.id != "monitor"]
            target = rng.choice(agents).pid if agents else None
        elif kind == "workflow":
            running = [p.pid for p in rt.processes() if p.behaviour == "WorkflowProcess"]
            target = rng.choice(running) if running else None
        else:
            target = rt.whereis(COORDINATOR)
        if target is not None:
            exit_signal(target, "kill")
            tally.kills[kind] += 1


def _table(tally: Tally, total: int, started: float) -> Table:
    table = Table(title="foundation demo: workflows under a chaos monkey")
    for col in (
        "submitted",
        "completed",
        "agents killed",
        "workflows killed",
        "coordinator killed",
        "restarts",
        "elapsed",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        f"{tally.submitted}/{total}",
        str(tally.completed),
        str(tally.kills["agent"]),
        str(tally.kills["workflow"]),
        str(tally.kills["coord"]),
        str(tally.restarts),
        f"{time.monotonic() - started:.1f}s",
    )  # fmt: skip
    return table


async def verify_store(rt: Runtime, items: int) -> dict[str, int]:
    """Read every demo workflow from the store and check each step's recorded result."""
    outcome = {"completed": 0, "failed": 0, "cancelled": 0, "running": 0, "lost": 0,
               "steps recorded": 0, "wrong results": 0}  # fmt: skip
    # lost: submitted but not completed (no record at all, or failed, cancelled, still running)
    for item in range(items):
        rec = await rt.store.load(f"workflow/item-{item}")
        if rec is None:
            outcome["lost"] += 1
            continue
        data = rec.data
        outcome[data["status"]] += 1
        want = expected_results(item)
        for step_id, step in data["steps"].items():
            if step["status"] == "completed":
                outcome["steps recorded"] += 1
                if step["result"] != want[step_id]:
                    outcome["wrong results"] += 1
    outcome["lost"] += outcome["failed"] + outcome["running"] + outcome["cancelled"]
    return outcome


async def run_demo(opts: DemoOptions, *, live: bool = True, child: bool = False) -> Tally:
    """Start the system, submit the workflows, unleash the monkey, wait, verify; the tally."""
    tally = Tally()
    started = time.monotonic()
    url = f"sqlite:///{opts.store}"
    console = Console()
    async with Runtime(store=url) as rt:
        _restart_counter(rt, tally)
        await _start_system()
        ids = [f"item-{i}" for i in range(opts.workflows)]
        steps = {"name": "pipeline", "steps": pipeline_steps()}
        monkey = None
        if opts.kills:
            monkey = spawn(_chaos, rt, tally, opts.kills, opts.seed, ids[: max(1, opts.workflows)])
        quiet = Console(file=io.StringIO())
        with Live(_table(tally, opts.workflows, started), console=console if live else quiet,
                  refresh_per_second=8) as display:  # fmt: skip
            for i, wid in enumerate(ids):
                await start_workflow(steps, {"item": i}, workflow_id=wid)
                tally.submitted += 1
                if child:
                    print(json.dumps({"submitted": tally.submitted}), flush=True)
                if i % 10 == 0:
                    display.update(_table(tally, opts.workflows, started))
            for wid in ids:
                entry = await await_workflow(wid, timeout=600)
                tally.completed += entry.status == "completed"
                display.update(_table(tally, opts.workflows, started))
                if child:
                    print(json.dumps({"completed": tally.completed}), flush=True)
        if monkey is not None:
            await wait_exit(monkey)
        tally.outcome = await verify_store(rt, opts.workflows)
        tally.outcome["known to the coordinator"] = len(await list_workflows())
    tally.seconds = time.monotonic() - started
    return tally


def _summary(tally: Tally, opts: DemoOptions, title: str) -> Table:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("workflows submitted", str(tally.submitted or opts.workflows))
    for key, value in tally.outcome.items():
        table.add_row(f"workflows {key}" if key in ("completed", "failed", "cancelled",
                      "running", "lost") else key, str(value))  # fmt: skip
    table.add_row("steps expected", str(5 * opts.workflows))
    if tally.process_kills:
        table.add_row("SIGKILLs of the OS process", str(tally.process_kills))
    else:
        for kind, n in tally.kills.items():
            table.add_row(f"kills: {kind}", str(n))
        table.add_row("restarts", str(tally.restarts))
    table.add_row("seconds", f"{tally.seconds:.1f}")
    return table


def _fresh(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def _kill_process_demo(opts: DemoOptions, kills: int) -> int:
    """Run the system in a child OS process, SIGKILL it ``kills`` times, then let it finish."""
    console = Console()
    started = time.monotonic()
    rng = random.Random(opts.seed)
    cmd = [
        *(sys.executable, "-m", "foundation.cli", "demo", "--child", "--store", opts.store),
        *("--workflows", str(opts.workflows), "--kills", "0", "--seed", str(opts.seed)),
    ]
    for n in range(kills + 1):
        last = n == kills
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        lines = 0 if last else rng.randint(10, 2 * opts.workflows)
        seen = ""
        for line in proc.stdout:
            seen = line.strip()
            lines -= 1
            if not last and lines <= 0:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        proc.stdout.close()
        what = "ran to the end" if last else "SIGKILLed"
        console.print(f"run {n + 1}: {what} (exit {proc.returncode}); last output: {seen[:60]}")
        if last and proc.returncode != 0:
            return proc.returncode
    tally = Tally(process_kills=kills, seconds=time.monotonic() - started)

    async def verify() -> None:
        async with Runtime(store=f"sqlite:///{opts.store}") as rt:
            tally.outcome = await verify_store(rt, opts.workflows)

    asyncio.run(verify())
    console.print(_summary(tally, opts, f"after {kills} SIGKILLs of the whole OS process"))
    ok = tally.outcome["completed"] == opts.workflows and tally.outcome["wrong results"] == 0
    ok = ok and tally.outcome["steps recorded"] == 5 * opts.workflows
    console.print("[green]every workflow completed, each step's result recorded exactly once"
                  if ok else "[red]workflows were lost or wrong")  # fmt: skip
    _state_hint(console, opts.store)
    return 0 if ok else 1


def main(
    *,
    workflows: int = 300,
    kills: int = 60,
    store: str = "foundation-demo.db",
    seed: int = 1,
    kill_process: int = 0,
    child: bool = False,
) -> int:
    """Run the demo (see the module docstring); the process exit code (0: nothing lost)."""
    logging.basicConfig(level=logging.CRITICAL)  # the monkey's crash reports would flood it
    opts = DemoOptions(workflows=workflows, kills=kills, store=store, seed=seed)
    if child:
        tally = asyncio.run(run_demo(opts, live=False, child=True))
        print(json.dumps({"done": True, **tally.outcome}), flush=True)
        return 0
    _fresh(store)
    if kill_process:
        return _kill_process_demo(opts, kill_process)
    tally = asyncio.run(run_demo(opts))
    console = Console()
    console.print(_summary(tally, opts, "summary (computed from the store)"))
    lost = tally.outcome["lost"]
    ok = lost == 0 and tally.outcome["wrong results"] == 0
    console.print("[green]nothing lost: every workflow completed with the expected results"
                  if ok else f"[red]{lost} workflows lost or failed")  # fmt: skip
    _state_hint(console, store)
    return 0 if ok else 1


def _state_hint(console: Console, store: str) -> None:
    url = f"sqlite:///{store}"
    console.print(
        f"state kept in {store}: see it with `foundation state list --store {url}`"
        f" or `foundation workflows --store {url}`",
        markup=False,
        soft_wrap=True,
    )
