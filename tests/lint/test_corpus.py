"""The corpora: every unsafe snippet is found, exactly where marked; the safe ones are clean.

Each ``corpus/unsafe/fndNNN_*.py`` marks every line that must be reported with a trailing
``# expect: CODE[, CODE]`` comment; ``corpus/safe/*.py`` must produce nothing. The corpora live
under ``tests/`` (so FND005 applies to them) and are excluded from project-wide linting.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from foundation.lint import RULES, check_file, check_paths, load_config

from ._helpers import ROOT

CORPUS = Path(__file__).parent / "corpus"
UNSAFE = tuple(sorted((CORPUS / "unsafe").glob("*.py")))
SAFE = tuple(sorted((CORPUS / "safe").glob("*.py")))
EXPECT = re.compile(r"# expect: (?P<codes>FND\d+(?:, FND\d+)*)")


def expected(path: Path) -> Counter[tuple[int, str]]:
    marks: Counter[tuple[int, str]] = Counter()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = EXPECT.search(line)
        if match:
            marks.update((number, code) for code in match.group("codes").split(", "))
    return marks


@pytest.mark.parametrize("path", UNSAFE, ids=[p.stem for p in UNSAFE])
def test_every_unsafe_snippet_is_reported_exactly_where_marked(path: Path) -> None:
    findings = check_file(path, load_config(ROOT / "pyproject.toml"))
    found = Counter((f.line, f.code) for f in findings)
    assert found == expected(path)
    own_code = path.stem[:6].upper()
    assert own_code in {code for _, code in found}


@pytest.mark.parametrize("path", SAFE, ids=[p.stem for p in SAFE])
def test_every_safe_snippet_is_clean(path: Path) -> None:
    assert check_file(path, load_config(ROOT / "pyproject.toml")) == []


def test_every_rule_has_an_unsafe_and_a_safe_corpus_file() -> None:
    codes = [rule.code for rule in RULES]
    assert sorted({p.stem[:6].upper() for p in UNSAFE}) == codes
    assert sorted({p.stem[:6].upper() for p in SAFE}) == codes


def test_linting_the_whole_project_completes_with_every_file_parsed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    started = time.perf_counter()
    findings = check_paths(["src", "tests"], load_config(ROOT / "pyproject.toml"))
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nfoundation lint src tests: {len(findings)} finding(s) in {elapsed:.2f}s")
    assert [f for f in findings if f.code in {"E902", "E999"}] == []
    assert not any(f.path.startswith("tests/lint/corpus/") for f in findings)


def test_the_lint_package_and_its_tests_pass_their_own_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    config = load_config(ROOT / "pyproject.toml")
    assert check_paths(["src/foundation/lint", "tests/lint"], config) == []
