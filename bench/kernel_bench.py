"""The kernel benchmark, run inside ``bench/.venv-bench`` by ``bench/run.py`` (``make bench``).

Every workload of every contender is measured in one run, in rounds: each round runs each
workload for every contender back to back (in an order rotated per round), so that noise on a
shared machine falls on all of them alike. Rates are the median over rounds; restart latencies
pool every crash of every round. Memory is measured in a fresh interpreter per contender.
Nothing is asserted about timings: the tables say what was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import baselines
import contender_foundation as fnd
from memprobe import Probe

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")

try:
    import uvloop
except ImportError:  # Windows, or installed without the fast extra
    uvloop = None


def asyncio_runner(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> Any:
    """Wrap ``workload(n) -> coroutine`` into ``run(n) -> result`` on a fresh loop."""

    def wrap(workload: Callable[[int], Coroutine[Any, Any, Any]]) -> Callable[[int], Any]:
        def run(n: int) -> Any:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                return runner.run(workload(n))

        return run

    return wrap


@dataclass
class Contender:
    key: str
    label: str
    workloads: dict[str, Callable[[int], Any]]
    slow: bool = False  # measured with fewer iterations (the rate is what is compared)
    samples: dict[str, list[Any]] = field(default_factory=dict)


def contenders() -> list[Contender]:
    on_asyncio = asyncio_runner(None)
    fnd_workloads = dict(fnd.WORKLOADS)
    fnd_workloads["call_no_timeout"] = lambda n: fnd.call_rate(n, None)
    out = [
        Contender(
            "foundation-asyncio",
            "Foundation (asyncio)",
            {k: on_asyncio(w) for k, w in fnd_workloads.items()},
        )
    ]
    if uvloop is not None:
        on_uvloop = asyncio_runner(uvloop.new_event_loop)
        out.append(
            Contender(
                "foundation-uvloop",
                "Foundation (uvloop)",
                {k: on_uvloop(w) for k, w in fnd_workloads.items()},
            )
        )
    out += [
        Contender(
            "raw-asyncio",
            "raw asyncio",
            {k: on_asyncio(w) for k, w in baselines.workloads(timeout=False).items()},
        ),
        Contender(
            "raw-asyncio-timeout",
            "raw asyncio + timeout",
            {
                k: on_asyncio(w)
                for k, w in baselines.workloads(timeout=True).items()
                if k in ("call", "cast", "spawn")
            },
        ),
    ]
    if uvloop is not None:
        on_uvloop = asyncio_runner(uvloop.new_event_loop)
        out.append(
            Contender(
                "raw-uvloop",
                "raw uvloop",
                {k: on_uvloop(w) for k, w in baselines.workloads(timeout=False).items()},
            )
        )
    import contender_pykka
    import contender_triotp

    out.append(Contender("triotp", "triotp 0.2.1", contender_triotp.WORKLOADS, slow=True))
    out.append(Contender("pykka", "pykka", contender_pykka.WORKLOADS, slow=True))
    return out


WORKLOADS = ("call", "call_no_timeout", "cast", "spawn", "restart_kill", "restart_crash")


@dataclass(frozen=True)
class Sizes:
    call: int = 30_000
    cast: int = 100_000
    spawn: int = 10_000
    crashes: int = 300
    idle: int = 100_000
    slow_call: int = 10_000
    slow_cast: int = 20_000
    slow_spawn: int = 2_000
    slow_idle: int = 2_000

    def of(self, workload: str, slow: bool) -> int:
        if workload.startswith("restart"):
            return self.crashes
        key = "call" if workload.startswith("call") else workload
        return int(getattr(self, f"slow_{key}" if slow else key))

    def scaled(self, factor: float) -> Sizes:
        return Sizes(**{k: max(int(v * factor), 1) for k, v in self.__dict__.items()})


def measure(cs: list[Contender], sizes: Sizes, rounds: int) -> None:
    for r in range(rounds):
        t_round = time.perf_counter()
        for w in WORKLOADS:
            order = cs[r % len(cs) :] + cs[: r % len(cs)]
            for c in order:
                run = c.workloads.get(w)
                if run is None:
                    continue
                gc.collect()
                c.samples.setdefault(w, []).append(run(sizes.of(w, c.slow)))
        print(f"  round {r + 1}/{rounds}: {time.perf_counter() - t_round:.1f} s", flush=True)


MEMORY = {
    "foundation-asyncio": "foundation",
    "foundation-uvloop": "foundation",
    "raw-asyncio": "raw",
    "raw-uvloop": "raw",
    "triotp": "triotp",
    "pykka": "pykka",
}


def memory_child(key: str, method: str, n: int) -> None:
    """In a fresh interpreter: create ``n`` idle processes of ``key``, print bytes per process."""
    probe = Probe(method)
    kind = MEMORY[key]
    if kind == "triotp":
        import contender_triotp

        contender_triotp.memory(n, probe)
    elif kind == "pykka":
        import contender_pykka

        contender_pykka.memory(n, probe)
    else:
        factory = uvloop.new_event_loop if key.endswith("uvloop") else None
        module: Any = fnd if kind == "foundation" else baselines
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(module.memory(n, probe))
    raise SystemExit("memory probe did not report")


def measure_memory(cs: list[Contender], sizes: Sizes) -> None:
    for c in cs:
        if c.key not in MEMORY:
            continue
        n = sizes.slow_idle if c.slow else sizes.idle
        for method in ("tracemalloc", "rss"):
            cmd = [sys.executable, __file__, "--memory", c.key, method, str(n)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"  memory {c.key} {method} failed:\n{out.stderr[-2000:]}", flush=True)
                continue
            c.samples[f"mem_{method}"] = [json.loads(out.stdout.strip().splitlines()[-1])]
        print(f"  memory {c.key}: done", flush=True)


PROFILES = (
    ("call", "`call(pid, 'get')` (default 5 s timeout)", fnd.call_rate, 1.0),
    ("spawn", "spawn + call + stop", fnd.spawn_cycle, 1.0),
    ("restart_kill", "restart after `kill`", lambda n: fnd.restart_latency(n, "kill"), 1.1),
)


def profile(
    workload: Callable[[int], Coroutine[Any, Any, Any]], n: int, ops: int, what: str
) -> str:
    """cProfile of Foundation's measured section of one workload: the top costs per operation."""
    prof = fnd.PROFILER = cProfile.Profile()
    try:
        asyncio.run(workload(n))
    finally:
        fnd.PROFILER = None
    st = pstats.Stats(prof)
    total = st.total_tt  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    lines = [
        f"#### {what}: cProfile of {ops:,} operations on the default asyncio loop",
        "",
        f"Profiled total {total / ops * 1e6:.2f} µs per operation (cProfile's own overhead "
        "inflates every Python function call; a coroutine counts once per resumption).",
        "",
        "| function | calls per op | own µs per op | share |",
        "| --- | ---: | ---: | ---: |",
    ]
    for (filename, line, func), (_cc, nc, tt, _ct, _callers) in rows[:16]:
        where = os.path.basename(filename) if filename != "~" else ""
        name = f"{where}:{line} {func}" if where else func
        lines.append(f"| `{name}` | {nc / ops:.2f} | {tt / ops * 1e6:.3f} | {tt / total:.1%} |")
    return "\n".join(lines)


def profiles(sizes: Sizes) -> str:
    out = ["### Profiles (bench output only)", ""]
    for key, what, workload, extra in PROFILES:
        n = sizes.of(key, slow=False)
        ops = n + (max(n // 10, 10) if extra > 1.0 else 0)
        out += [profile(workload, n, ops, what), ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="a smoke run: sizes / 20, 2 rounds")
    ap.add_argument("--no-readme", action="store_true", help="print only, leave README.md")
    ap.add_argument("--json", metavar="PATH", help="also dump every sample as JSON to PATH")
    ap.add_argument("--memory", nargs=3, metavar=("CONTENDER", "METHOD", "N"), help="internal")
    args = ap.parse_args()
    if args.memory:
        key, method, n = args.memory
        memory_child(key, method, int(n))
        return
    logging.disable(logging.CRITICAL)  # restarts log a warning each: not what is measured
    sizes = Sizes()
    rounds = args.rounds
    if args.quick:
        sizes = sizes.scaled(0.05)
        rounds = min(rounds, 2)
    import report

    cs = contenders()
    print(f"kernel bench: {rounds} rounds, {len(cs)} contenders", flush=True)
    measure(cs, sizes, rounds)
    measure_memory(cs, sizes)
    print("profiling the call path", flush=True)
    profile = profiles(sizes)
    text = report.render(cs, sizes, rounds)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({c.key: c.samples for c in cs}, f)
    print()
    print(text)
    print()
    print(profile)  # bench output only: not written into README.md
    if not args.no_readme and not args.quick:
        report.write_readme(README, text)
        print(f"\nwrote the results into {os.path.relpath(README)}")


if __name__ == "__main__":
    main()
