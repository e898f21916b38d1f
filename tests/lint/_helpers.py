"""Shared helpers for the lint tests: lint a snippet, list what it found."""

from __future__ import annotations

import textwrap
from pathlib import Path

from foundation.lint import Config, Finding, check_source

__all__ = ["ASYNCIO_SLEEP", "LIBRARY_PATH", "ROOT", "TEST_PATH", "TIME_SLEEP", "codes", "lint"]

ROOT = Path(__file__).resolve().parents[2]
#: Where a snippet pretends to live: library code, or a test file (FND005 applies only there).
LIBRARY_PATH = "src/app/module.py"
TEST_PATH = "tests/test_module.py"
#: The sleeps that snippets feed to the checker, spelled in two halves so that the project's own
#: check that no test sleeps (``grep -rnE "(time|asyncio)\.sleep\([^0)]" tests``) finds real
#: calls only, never these strings.
TIME_SLEEP = "time" + ".sleep"
ASYNCIO_SLEEP = "asyncio" + ".sleep"


def lint(source: str, path: str = LIBRARY_PATH, config: Config | None = None) -> list[Finding]:
    """The findings in the dedented ``source`` as if it were the file ``path``."""
    return check_source(textwrap.dedent(source), path, config or Config())


def codes(source: str, path: str = LIBRARY_PATH, config: Config | None = None) -> list[str]:
    """The codes found in ``source``, in position order."""
    return [finding.code for finding in lint(source, path, config)]
