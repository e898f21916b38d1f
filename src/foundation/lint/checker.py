"""Running the rules: over a source string, a file, or the Python files under some paths.

``check_source`` parses once, builds one ``ModuleContext`` and runs every rule the
configuration enables for that path (FND005 only on test paths), then drops findings suppressed
by a ``# noqa`` comment on the reported line: bare ``# noqa`` silences every code there,
``# noqa: FND001`` or ``# noqa: FND001, FND004`` only those codes.

A file that cannot be read or parsed is itself a finding, never a traceback: ``E999`` for a
syntax error (at the error's position), ``E902`` for an unreadable or undecodable file. The
command line exits with 2 when it reports either (``PROBLEM_CODES``).
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from foundation.lint.config import Config
from foundation.lint.finding import Finding
from foundation.lint.rules import RULES, ModuleContext

__all__ = [
    "PROBLEM_CODES",
    "SKIPPED_DIRECTORIES",
    "check_file",
    "check_paths",
    "check_source",
    "iter_python_files",
    "suppressed_codes",
]

#: Codes of findings about a file that could not be checked at all.
PROBLEM_CODES: Final = frozenset({"E902", "E999"})
#: Directory names a walk never enters (besides any name starting with a dot).
SKIPPED_DIRECTORIES: Final = frozenset(
    {"__pycache__", "build", "dist", "node_modules", "site-packages", "venv"}
)

_NOQA: Final = re.compile(
    r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.IGNORECASE
)
_DEFAULT: Final = Config()
_ALL: Final = frozenset({"*"})


def suppressed_codes(line: str) -> frozenset[str]:
    """The codes a ``# noqa`` comment on ``line`` silences; ``{"*"}`` for a bare ``# noqa``."""
    match = _NOQA.search(line)
    if match is None:
        return frozenset()
    codes = match.group("codes")
    if codes is None:
        return _ALL
    return frozenset(code.strip().upper() for code in codes.split(","))


def check_source(source: str, path: str, config: Config = _DEFAULT) -> list[Finding]:
    """The findings in ``source``, reported under ``path``, sorted by position.

    ``path`` also decides, through ``config``, which rules apply (per-path ignores, test paths).
    """
    try:
        with warnings.catch_warnings():
            # Invalid escape sequences warn at compile time; that is not this tool's business.
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=path)
    except SyntaxError as err:
        return [
            Finding(
                path,
                err.lineno or 1,
                err.offset or 1,
                "E999",
                f"SyntaxError: {err.msg}",
                "fix the syntax error; nothing else in the file was checked",
            )
        ]
    except ValueError as err:  # source code string cannot contain null bytes (3.11)
        return [_unreadable(path, str(err))]
    relative = config.relative(path)
    codes = config.codes_for(relative)
    ctx = ModuleContext(tree, relative, is_test=config.is_test(relative))
    lines = source.splitlines()
    findings: list[Finding] = []
    for rule in RULES:
        if rule.code not in codes or (rule.tests_only and not ctx.is_test):
            continue
        for line, col, message in rule.check(ctx):
            text = lines[line - 1] if 0 < line <= len(lines) else ""
            silenced = suppressed_codes(text)
            if rule.code in silenced or "*" in silenced:
                continue
            findings.append(Finding(path, line, col, rule.code, message, rule.hint))
    return sorted(set(findings))


def _unreadable(path: str, reason: str) -> Finding:
    return Finding(path, 1, 1, "E902", reason, "make the file readable UTF-8 Python source")


def check_file(path: str | os.PathLike[str], config: Config = _DEFAULT) -> list[Finding]:
    """The findings in the file ``path`` (decoded per its coding cookie, UTF-8 by default)."""
    shown = os.fspath(path)
    try:
        data = Path(path).read_bytes()
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        source = data.decode(encoding)
    except OSError as err:
        return [_unreadable(shown, f"cannot read file: {err.strerror or err}")]
    except (SyntaxError, UnicodeDecodeError, LookupError) as err:
        return [_unreadable(shown, f"cannot decode file: {err}")]
    return check_source(source, shown, config)


def iter_python_files(paths: Iterable[str], config: Config = _DEFAULT) -> Iterator[str]:
    """The files to check: each named file, and the ``*.py`` files under each named directory.

    A walk skips hidden directories, ``SKIPPED_DIRECTORIES`` and whatever ``config.exclude``
    matches; a file named directly is always yielded. Raises ``FileNotFoundError`` for a path
    that does not exist.
    """
    for top in paths:
        if not os.path.isdir(top):
            if not os.path.exists(top):
                raise FileNotFoundError(top)
            yield top
            continue
        for directory, subdirectories, files in os.walk(top):
            subdirectories[:] = sorted(
                name
                for name in subdirectories
                if not name.startswith(".")
                and name not in SKIPPED_DIRECTORIES
                and not config.is_excluded(config.relative(os.path.join(directory, name)))
            )
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.normpath(os.path.join(directory, name))
                if not config.is_excluded(config.relative(path)):
                    yield path


def check_paths(paths: Iterable[str], config: Config = _DEFAULT) -> list[Finding]:
    """The findings in every file ``iter_python_files`` yields for ``paths``."""
    findings: list[Finding] = []
    for path in iter_python_files(paths, config):
        findings.extend(check_file(path, config))
    return findings
