"""``make bench``: run the kernel benchmark in its own virtualenv, ``bench/.venv-bench``.

The comparison libraries (pykka; triotp 0.2.1, its last release that runs on Python 3.11, with
trio) are installed there, next to this repository installed in editable mode with its ``fast``
extra (uvloop), so nothing bench-only ever enters the runtime dependencies. The environment is
created on first use and reinstalled when this file's requirements or ``pyproject.toml`` change;
then ``bench/kernel_bench.py`` runs inside it with this script's arguments, or, given a name
first (``run.py breaker --rounds 3``), ``bench/<name>_bench.py`` with the arguments after it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv-bench"
STAMP = VENV / ".bench-installed"
REQUIREMENTS = ["pykka==4.5.0", "triotp==0.2.1"]
EXTRAS = "fast,postgres"  # uvloop; asyncpg for persistence_bench's PostgreSQL table


def venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def wanted() -> str:
    digest = hashlib.sha256()
    digest.update("\n".join([*REQUIREMENTS, EXTRAS]).encode())
    digest.update((REPO / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_venv() -> Path:
    python = venv_python()
    stamp = wanted()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == stamp:
        return python
    if not python.exists():
        print(f"creating {VENV.relative_to(REPO)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"installing foundation[{EXTRAS}], " + ", ".join(REQUIREMENTS), flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[{EXTRAS}]", *REQUIREMENTS],
        check=True,
    )
    STAMP.write_text(stamp + "\n")
    return python


def script(argv: list[str]) -> tuple[Path, list[str]]:
    """``run.py NAME [ARGS]`` runs ``bench/NAME_bench.py`` (say ``breaker``); default: kernel."""
    if argv and not argv[0].startswith("-"):
        path = BENCH / f"{argv[0]}_bench.py"
        if not path.exists():
            names = sorted(p.name.removesuffix("_bench.py") for p in BENCH.glob("*_bench.py"))
            raise SystemExit(f"no bench/{path.name}; one of: {', '.join(names)}")
        return path, argv[1:]
    return BENCH / "kernel_bench.py", argv


def main() -> int:
    path, args = script(sys.argv[1:])
    python = ensure_venv()
    cmd = [str(python), str(path), *args]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
