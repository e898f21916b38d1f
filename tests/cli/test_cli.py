"""The ``foundation`` command line."""

from __future__ import annotations

import json
import os
import re
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


def _foundation(
    args: list[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foundation.cli", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_demo_loses_nothing_under_the_chaos_monkey_and_says_so(tmp_path: Path) -> None:
    proc = _foundation(["demo", "--workflows", "40", "--kills", "20", "--seed", "3"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing lost" in proc.stdout
    assert re.search(r"workflows completed\s+│\s+40\b", proc.stdout)
    assert re.search(r"workflows lost\s+│\s+0\b", proc.stdout)
    assert re.search(r"steps recorded\s+│\s+200\b", proc.stdout)
    assert (tmp_path / "foundation-demo.db").exists()


def test_demo_kill_process_sigkills_the_system_and_every_workflow_completes(
    tmp_path: Path,
) -> None:
    proc = _foundation(["demo", "--workflows", "30", "--kill-process", "3"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SIGKILLed (exit -9)") == 3
    assert "each step's result recorded exactly once" in proc.stdout


def test_state_and_workflows_commands_read_what_the_demo_stored(tmp_path: Path) -> None:
    assert _foundation(["demo", "--workflows", "5", "--kills", "0"], tmp_path).returncode == 0
    url = f"sqlite:///{tmp_path / 'foundation-demo.db'}"
    listed = _foundation(["state", "list", "workflow/", "--store", url], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "workflow/item-4" in listed.stdout
    assert "5 key(s)" in listed.stdout
    shown = _foundation(["state", "show", "workflow/item-0", "--store", url], tmp_path)
    record = json.loads(shown.stdout)
    assert record["data"]["status"] == "completed"
    assert record["data"]["steps"]["fetch"]["result"] == "doc-0"
    missing = _foundation(["state", "show", "nope", "--store", url], tmp_path)
    assert missing.returncode == 1
    assert "no record under 'nope'" in missing.stderr
    flows = _foundation(["workflows", "--status", "completed", "--store", url], tmp_path)
    assert "item-3" in flows.stdout
    assert "5/5" in flows.stdout
    assert "5 workflow(s)" in flows.stdout
