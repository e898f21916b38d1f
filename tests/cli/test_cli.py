"""The ``foundation`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from foundation.cli.main import cli, load_target

ROOT = Path(__file__).resolve().parents[2]


def test_load_target_reports_bad_specs_clearly() -> None:
    with pytest.raises(click.BadParameter, match="module:attribute"):
        load_target("no_colon")
    with pytest.raises(click.BadParameter, match="cannot import module"):
        load_target("no_such_module_xyz:thing")
    with pytest.raises(click.BadParameter, match="has no attribute"):
        load_target("examples.counter_tree:nothing")


def test_run_with_a_bad_target_exits_with_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["run", "nope"])
    assert result.exit_code == 2
    assert "expected module:attribute" in result.output


def test_run_starts_the_tree_and_sigint_stops_it_cleanly() -> None:
    script = (
        "import sys; from foundation.cli import main; "
        "import foundation.kernel.runtime as r; "
        "orig = r.Runtime.start\n"
        "def start(self):\n"
        "    orig(self); print('running', flush=True)\n"
        "r.Runtime.start = start\n"
        "try:\n"
        "    main(['run', 'examples.counter_tree:children'])\n"
        "except SystemExit as e:\n"
        "    print('stopped', e.code, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "stopped 0"


def test_demo_runs_to_completion_and_shows_the_restarts() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from foundation.cli import main; main(['demo'])"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "counter restarted" in proc.stdout
    assert proc.stdout.strip().endswith("done.")
