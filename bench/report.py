"""The benchmark's tables (absolute numbers, ratios, targets) and the README results section."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from importlib import metadata
from typing import Any

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"

RATE = ("call", "call_no_timeout", "cast")
ROWS = (
    ("call", "call round-trip, calls/s (↑)"),
    ("call_no_timeout", "call round-trip with `timeout=None`, calls/s (↑)"),
    ("cast", "cast throughput, messages/s (↑)"),
    ("spawn", "spawn + call + stop, µs per process (↓)"),
    ("restart_kill", "restart after `kill`, median / p99 ms (↓)"),
    ("restart_crash", "restart after a crash, median / p99 ms (↓)"),
    ("mem_tracemalloc", "idle process, bytes (tracemalloc) (↓)"),
    ("mem_rss", "idle process, bytes (RSS growth) (↓)"),
)


def value(c: Any, key: str) -> float | None:
    """The figure compared for ``key``: median over rounds, or median of pooled latencies."""
    samples = c.samples.get(key)
    if not samples:
        return None
    if key.startswith("restart"):
        return statistics.median(x for s in samples for x in s)
    if key.startswith("mem_"):
        return float(samples[0]["bytes"])
    return statistics.median(samples)


def p99(c: Any, key: str) -> float | None:
    samples = c.samples.get(key)
    if not samples:
        return None
    pooled = sorted(x for s in samples for x in s)
    return pooled[min(len(pooled) - 1, round(0.99 * (len(pooled) - 1)))]


def cell(c: Any, key: str) -> str:
    v = value(c, key)
    if v is None:
        return "—"
    if key in RATE:
        return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"
    if key == "spawn":
        return f"{v:.1f}"
    if key.startswith("restart"):
        return f"{v * 1e3:.3f} / {(p99(c, key) or 0.0) * 1e3:.3f}"
    n = c.samples[key][0]["n"]
    return f"{v:,.0f}" + (f" (n={n:,})" if n != 100_000 else "")


def ratio(a: Any, b: Any, key: str) -> float | None:
    va, vb = value(a, key), value(b, key)
    if va is None or vb is None or vb == 0:
        return None
    return va / vb


def _by_key(cs: list[Any]) -> dict[str, Any]:
    return {c.key: c for c in cs}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}x"


def _ratios(cs: list[Any]) -> list[str]:
    k = _by_key(cs)
    pairs = [
        ("foundation-asyncio", "raw-asyncio", "÷ raw asyncio"),
        ("foundation-asyncio", "raw-asyncio-timeout", "÷ raw asyncio + timeout"),
        ("foundation-uvloop", "raw-uvloop", "uvloop ÷ raw uvloop"),
        ("foundation-asyncio", "triotp", "÷ triotp"),
        ("foundation-asyncio", "pykka", "÷ pykka"),
        ("foundation-uvloop", "foundation-asyncio", "uvloop ÷ asyncio"),
    ]
    pairs = [p for p in pairs if p[0] in k and p[1] in k]
    header = ["Foundation ...", *[p[2] for p in pairs]]
    rows = []
    for key, label in ROWS:
        if key == "call_no_timeout":
            continue
        cells = [_fmt_ratio(ratio(k[a], k[b], key)) for a, b, _ in pairs]
        if any(x != "—" for x in cells):
            rows.append([label, *cells])
    return _table(header, rows)


def targets(cs: list[Any]) -> list[tuple[str, str, bool]]:
    k = _by_key(cs)
    out: list[tuple[str, str, bool]] = []

    def rel(a: str, b: str, key: str, op: str, bound: float, text: str) -> None:
        if a in k and b in k:
            r = ratio(k[a], k[b], key)
            if r is not None:
                shown = f"{r:.2f}x"
                raw = ratio(k["raw-asyncio"], k[b], key) if "raw-asyncio" in k else None
                if b in ("triotp", "pykka") and raw is not None:
                    shown += f" (raw asyncio itself: {raw:.2f}x)"
                out.append((text, shown, r >= bound if op == ">=" else r < bound))

    for loop in ("asyncio", "uvloop"):
        rel(f"foundation-{loop}", f"raw-{loop}", "call", ">=", 0.75, f"call ≥ 0.75x raw ({loop})")
        rel(f"foundation-{loop}", f"raw-{loop}", "cast", ">=", 0.6, f"cast ≥ 0.6x raw ({loop})")
    rel("foundation-asyncio", "triotp", "call", ">=", 3.0, "call ≥ 3x triotp (asyncio)")
    rel("foundation-asyncio", "pykka", "call", ">=", 7.0, "call ≥ 7x pykka (asyncio)")
    for loop in ("asyncio", "uvloop"):
        c = k.get(f"foundation-{loop}")
        for key, what in (("restart_kill", "kill"), ("restart_crash", "crash")):
            v = value(c, key) if c is not None else None
            if v is not None:
                out.append(
                    (
                        f"restart after {what} < 0.1 ms median ({loop})",
                        f"{v * 1e3:.3f} ms",
                        v < 1e-4,
                    )
                )
    for loop in ("asyncio", "uvloop"):
        rel(
            f"foundation-{loop}",
            f"raw-{loop}",
            "spawn",
            "<",
            2.0,
            f"spawn+call+stop < 2x raw ({loop})",
        )
    for loop in ("asyncio", "uvloop"):
        c = k.get(f"foundation-{loop}")
        v = value(c, "mem_tracemalloc") if c is not None else None
        if v is not None:
            out.append((f"idle GenServer < 3,000 B, tracemalloc ({loop})", f"{v:,.0f} B", v < 3000))
    return out


def _versions() -> str:
    names = ("foundation-otp", "uvloop", "trio", "triotp", "pykka")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what `nproc` prints
    except AttributeError:
        return os.cpu_count() or 1


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render(cs: list[Any], sizes: Any, rounds: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Results",
        "",
        f"Measured {now} on {_nproc()} cores ({_cpu()}), "
        f"Python {platform.python_version()} ({platform.system()} {platform.machine()}); "
        f"{_versions()}.",
        f"{rounds} rounds; per round: {sizes.call:,} calls, {sizes.cast:,} casts, "
        f"{sizes.spawn:,} spawn cycles, {sizes.crashes:,} crashes of each kind, "
        f"{sizes.idle:,} idle processes (triotp and pykka: {sizes.slow_call:,} calls, "
        f"{sizes.slow_cast:,} casts, {sizes.slow_spawn:,} spawn cycles; pykka "
        f"{sizes.slow_idle:,} idle actors, one thread each). Rates are medians over the rounds; "
        "restart latencies pool every crash of every round.",
        "",
        "### Absolute",
        "",
    ]
    header = ["workload", *[c.label for c in cs]]
    rows = [[label, *[cell(c, key) for c in cs]] for key, label in ROWS]
    lines += _table(header, rows)
    lines += [
        "",
        "### Ratios (Foundation's figure divided by the other's; ↑ rows: higher is better for "
        "Foundation, ↓ rows: lower is better)",
        "",
    ]
    lines += _ratios(cs)
    lines += ["", "### Targets", ""]
    lines += _table(
        ["target", "measured", "met"],
        [[t, m, "yes" if ok else "**no**"] for t, m, ok in targets(cs)],
    )
    return "\n".join(lines)


def write_readme(path: str, text: str) -> None:
    """Replace the results section of ``path`` (between the markers), keeping the prose."""
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Kernel benchmark\n"
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)
