"""``[tool.foundation.lint]``: select, ignore, exclude, test paths and per-path ignores."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.errors import InvalidArgument
from foundation.lint import Config, check_paths, find_config, load_config
from foundation.lint.config import DEFAULT_TEST_PATHS, glob_match

from ._helpers import ROOT, TIME_SLEEP, codes

ORPHAN = "loop.create_task(work())\n"
SLEEP = f"import time\n{TIME_SLEEP}(1)\n"


def write_project(tmp_path: Path, table: str) -> Path:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[project]\nname = 'x'\n\n[tool.foundation.lint]\n{table}\n")
    return pyproject


@pytest.mark.parametrize(
    ("path", "glob", "matches"),
    [
        ("src/foundation/kernel/runtime.py", "src/foundation/kernel/**", True),
        ("src/foundation/kernel/sub/x.py", "src/foundation/kernel/**", True),
        ("src/foundation/kernelish.py", "src/foundation/kernel/**", False),
        ("src/foundation/kernel/runtime.py", "src/foundation/kernel", True),
        ("tests/test_x.py", "**/test_*.py", True),
        ("test_x.py", "**/test_*.py", True),
        ("tests/a/b/conftest.py", "conftest.py", True),
        ("src/a/test_x.py", "src/*/test_?.py", True),
        ("src/a/b/test_x.py", "src/*/test_x.py", False),
        ("src/a.py", "src/[ab].py", True),
        ("src/c.py", "src/[!ab].py", True),
        ("src/a.py", "src/[!ab].py", False),
        ("tests/lint/corpus/unsafe/fnd001.py", "tests/lint/corpus/**", True),
    ],
)
def test_globs_match_relative_paths_with_double_star_segments(
    path: str, glob: str, matches: bool
) -> None:
    assert glob_match(path, glob) is matches


def test_per_path_ignores_lets_the_kernel_create_tasks(tmp_path: Path) -> None:
    config = load_config(
        write_project(
            tmp_path, '[tool.foundation.lint.per-path-ignores]\n"src/kernel/**" = ["FND001"]'
        )
    )
    assert codes(ORPHAN, str(tmp_path / "src/kernel/runtime.py"), config) == []
    assert codes(ORPHAN, str(tmp_path / "src/services/pool.py"), config) == ["FND001"]


def test_select_and_ignore_accept_codes_and_prefixes() -> None:
    both = ORPHAN + "CACHE = {}\n"
    assert codes(both, config=Config.from_table({"select": ["FND001"]})) == ["FND001"]
    assert codes(both, config=Config.from_table({"ignore": ["FND00"]})) == []
    assert codes(both, config=Config.from_table({"select": ["fnd"], "ignore": ["FND006"]})) == [
        "FND001"
    ]


def test_test_paths_decide_where_fnd005_applies() -> None:
    config = Config.from_table({"test-paths": ["checks/**"]})
    assert codes(SLEEP, "checks/sleepy.py", config) == ["FND005"]
    assert codes(SLEEP, "tests/test_sleepy.py", config) == []
    assert Config().test_paths == DEFAULT_TEST_PATHS


def test_exclude_prunes_the_directory_walk_but_not_named_files(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path, 'exclude = ["generated/**"]'))
    (tmp_path / "generated").mkdir()
    excluded = tmp_path / "generated" / "bad.py"
    excluded.write_text(ORPHAN)
    (tmp_path / "good.py").write_text("x = 1\n")
    assert check_paths([str(tmp_path)], config) == []
    assert [f.code for f in check_paths([str(excluded)], config)] == ["FND001"]


def test_the_walk_skips_hidden_and_virtualenv_directories(tmp_path: Path) -> None:
    for name in (".venv", "__pycache__", "node_modules"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bad.py").write_text(ORPHAN)
    assert check_paths([str(tmp_path)], Config(root=tmp_path)) == []


def test_find_config_returns_the_nearest_pyproject_above_a_path(tmp_path: Path) -> None:
    outer = write_project(tmp_path, "")
    inner_dir = tmp_path / "pkg" / "sub"
    inner_dir.mkdir(parents=True)
    (inner_dir / "m.py").write_text("")
    assert find_config(inner_dir / "m.py") == outer
    inner = write_project(tmp_path / "pkg", "")
    assert find_config(inner_dir) == inner


def test_a_pyproject_without_the_table_gives_defaults_rooted_there(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'x'\n")
    assert load_config(pyproject) == Config(root=tmp_path)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('selct = ["FND001"]', "'selct'"),
        ('select = ["FND999"]', "'FND999'"),
        ('ignore = "FND001"', "ignore"),
        ("exclude = [1]", "exclude"),
        ('per-path-ignores = ["FND001"]', "per-path-ignores"),
        ('per-path-ignores = { "a/**" = ["XYZ1"] }', "'XYZ1'"),
        ("select = [", "invalid TOML"),
    ],
)
def test_invalid_configuration_names_the_key_and_value(
    tmp_path: Path, table: str, named: str
) -> None:
    with pytest.raises(InvalidArgument, match=named):
        load_config(write_project(tmp_path, table))


def test_the_project_config_allows_the_kernel_its_tasks_threads_and_mailboxes() -> None:
    config = load_config(ROOT / "pyproject.toml")
    assert config.codes_for("src/foundation/kernel/runtime.py").isdisjoint(
        {"FND001", "FND002", "FND003"}
    )
    assert {"FND001", "FND002", "FND003"} <= config.codes_for("src/foundation/services/x.py")
    assert config.is_excluded("tests/lint/corpus/unsafe/fnd001_orphan_task.py")
    assert config.is_test("tests/lint/test_config.py")
