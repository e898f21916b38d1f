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


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` (where the default store goes) with no $FOUNDATION_STORE; ``run``
    puts the working directory on ``sys.path``, which is restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FOUNDATION_STORE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def _stored_count(url: str | None) -> int:
    args = ["state", "show", "cli/tally"] + (["--store", url] if url else [])
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    count: int = json.loads(shown.output)["data"]["count"]
    return count


PERSISTENT = "tests.cli.run_targets:persistent_tree"
PLAIN = "tests.cli.run_targets:plain_tree"


def test_run_gives_the_tree_the_store_named_by_store_and_the_state_lands_there(
    in_tmp_cwd: Path,
) -> None:
    url = f"sqlite:///{in_tmp_cwd / 'x.db'}"
    for _ in range(2):
        result = CliRunner().invoke(cli, ["run", PERSISTENT, "--store", url])
        assert result.exit_code == 0, result.output
    assert _stored_count(url) == 10  # the second run came back with the first one's state
    assert sorted(p.name for p in in_tmp_cwd.glob("*.db")) == ["x.db"]


def test_run_defaults_to_foundation_store_then_foundation_db_in_the_working_directory(
    in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner().invoke(cli, ["run", PERSISTENT]).exit_code == 0
    assert (in_tmp_cwd / "foundation.db").exists()
    assert _stored_count(None) == 5
    monkeypatch.setenv("FOUNDATION_STORE", f"sqlite:///{in_tmp_cwd / 'env.db'}")
    assert CliRunner().invoke(cli, ["run", PERSISTENT]).exit_code == 0
    assert _stored_count(None) == 5
    assert _stored_count("sqlite:///foundation.db") == 5


def test_run_of_a_tree_without_persistent_processes_writes_no_store_file(
    in_tmp_cwd: Path,
) -> None:
    assert CliRunner().invoke(cli, ["run", PLAIN]).exit_code == 0
    assert CliRunner().invoke(cli, ["run", PLAIN, "--store", "NONE"]).exit_code == 0
    assert list(in_tmp_cwd.iterdir()) == []


def test_run_with_store_none_has_no_store_for_persistent_servers(in_tmp_cwd: Path) -> None:
    result = CliRunner().invoke(cli, ["run", PERSISTENT, "--store", "none"])
    assert result.exit_code == 1
    assert "has no state store" in str(result.exception)
    assert list(in_tmp_cwd.iterdir()) == []


def test_run_with_a_bad_store_url_is_a_usage_error(in_tmp_cwd: Path) -> None:
    result = CliRunner().invoke(cli, ["run", PLAIN, "--store", "nope"])
    assert result.exit_code == 2
    assert "invalid store URL 'nope'" in result.output


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
    assert "`foundation state list --store sqlite:///foundation-demo.db`" in proc.stdout


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
