"""The command: output format, exit codes 0/1/2, usage errors, ``python -m foundation.lint``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from foundation.cli.main import cli
from foundation.lint import main

from ._helpers import ASYNCIO_SLEEP, ROOT

LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>[A-Z]+\d+) (?P<msg>.+)$")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (its own pyproject.toml) as the working directory."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_clean_file_exits_0_and_prints_nothing_on_stdout(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"import asyncio\n\nasync def f():\n    await {ASYNCIO_SLEEP}(1)\n"
    (project / "ok.py").write_text(source)
    assert main(["ok.py"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "Found 0 finding(s) in 1 file(s)" in err


def test_findings_exit_1_one_line_each_as_path_line_col_code_message(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pkg").mkdir()
    (project / "pkg" / "bad.py").write_text(
        "CACHE = {}\n\n\ndef f(loop):\n    loop.create_task(w())\n"
    )
    assert main(["pkg"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "pkg/bad.py:1:1: FND006 module-level mutable state: `CACHE` is bound to a mutable "
        "container shared by every runtime and never reset by a restart",
        "pkg/bad.py:5:5: FND001 orphan task: the result of `loop.create_task(...)` is dropped, "
        "so nothing awaits, cancels or sees the crash of the task",
    ]
    assert all(LINE.match(line) for line in lines)


def test_show_hints_adds_the_fix_under_each_finding(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "bad.py").write_text("loop.create_task(w())\n")
    assert main(["--show-hints", "bad.py"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert LINE.match(out[0])
    assert out[1].startswith("    hint: start it under a TaskSupervisor")


def test_a_syntax_error_is_reported_as_e999_and_exits_2_without_a_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "broken.py").write_text("x = 1\ndef (:\n")
    (project / "bad.py").write_text("loop.create_task(w())\n")
    assert main(["broken.py", "bad.py"]) == 2
    out, err = capsys.readouterr()
    assert "broken.py:2:5: E999 SyntaxError: invalid syntax" in out.splitlines()
    assert "bad.py:1:1: FND001" in out
    assert "Traceback" not in out + err
    assert "could not be checked" in err


def test_an_undecodable_file_is_reported_as_e902_and_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "latin.py").write_bytes(b"x = '\xff\xfe'\n")
    assert main(["latin.py"]) == 2
    assert capsys.readouterr().out.startswith("latin.py:1:1: E902 cannot decode file")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give at least one PATH"),
        (["missing.py"], "no such file or directory: missing.py"),
        (["--select", "FND999", "."], "'FND999' is not a rule code"),
        (["--bogus", "."], "unrecognized arguments"),
        (["--config", "nope.toml", "."], "cannot read config"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_invalid_pyproject_table_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text("[tool.foundation.lint]\nselect = 'FND001'\n")
    assert main(["."]) == 2
    assert "invalid select" in capsys.readouterr().err


def test_select_and_ignore_options_narrow_the_rules(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "bad.py").write_text("CACHE = {}\nloop.create_task(w())\n")
    assert main(["--select", "FND001", "bad.py"]) == 1
    assert "FND006" not in capsys.readouterr().out
    assert main(["--ignore", "FND001,FND006", "bad.py"]) == 0


def test_config_option_reads_the_table_from_the_given_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "bad.py").write_text("CACHE = {}\n")
    (project / "lint.toml").write_text('[tool.foundation.lint]\nignore = ["FND006"]\n')
    assert main(["--config", "lint.toml", "bad.py"]) == 0


def test_list_rules_prints_every_code_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-rules"]) == 0
    out = capsys.readouterr().out
    assert [f"FND00{n}" for n in range(1, 9)] == re.findall(r"^(FND\d+) ", out, re.MULTILINE)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "foundation lint" in capsys.readouterr().out


def test_python_dash_m_foundation_lint_runs_the_same_command(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "bad.py").write_text("loop.create_task(w())\n")
    result = subprocess.run(
        [sys.executable, "-m", "foundation.lint", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout.startswith("bad.py:1:1: FND001 ")


def test_the_foundation_command_line_exposes_lint(project: Path) -> None:
    (project / "bad.py").write_text("loop.create_task(w())\n")
    (project / "ok.py").write_text("x = 1\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["lint", "ok.py"]).exit_code == 0
    result = runner.invoke(cli, ["lint", "bad.py"])
    assert result.exit_code == 1
    assert "bad.py:1:1: FND001" in result.output


def test_the_repository_is_linted_with_its_own_pyproject_from_anywhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT / "src")
    code = main(["foundation/lint"])
    out, err = capsys.readouterr()
    assert (code, out) == (0, ""), out
    assert "Found 0 finding(s)" in err
