"""The ``foundation lint PATH...`` command (also ``python -m foundation.lint``).

Prints one line per finding on stdout, in ruff's concise format ``path:line:col: CODE message``
(with ``--show-hints``, the fix hint follows on an indented line), then a one-line summary on
stderr. Exit status:

- 0: nothing found;
- 1: at least one finding;
- 2: a usage error (bad option, missing path, invalid configuration), or a file that could not
  be read or parsed (reported as ``E902``/``E999`` like any finding, never as a traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from foundation.errors import InvalidArgument
from foundation.lint.checker import PROBLEM_CODES, check_file, iter_python_files
from foundation.lint.config import Config, find_config, load_config, resolve_codes
from foundation.lint.finding import Finding
from foundation.lint.rules import RULES

__all__ = ["main", "render"]

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foundation lint",
        description="Check Python files for the doctrine's rules FND001-FND008.",
        epilog="Exit status: 0 clean, 1 findings, 2 usage error or unparsable file.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files or directories to check")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with a [tool.foundation.lint] table "
        "(default: the nearest pyproject.toml above the first PATH)",
    )
    parser.add_argument(
        "--select", metavar="CODES", help="comma-separated codes or prefixes to check instead"
    )
    parser.add_argument(
        "--ignore", metavar="CODES", help="comma-separated codes or prefixes to skip as well"
    )
    parser.add_argument(
        "--show-hints", action="store_true", help="print the fix hint under each finding"
    )
    parser.add_argument(
        "--list-rules", action="store_true", help="list the rules and their hints, then exit"
    )
    return parser


def render(finding: Finding, *, show_hint: bool = False) -> str:
    """The output line(s) for ``finding``."""
    line = finding.format()
    if show_hint and finding.hint:
        line += f"\n    hint: {finding.hint}"
    return line


def _split(codes: str) -> list[str]:
    return [code for code in codes.split(",") if code.strip()] or [codes]


def _configure(args: argparse.Namespace) -> Config:
    if args.config is not None:
        config = load_config(args.config)
    else:
        found = find_config(args.paths[0])
        config = load_config(found) if found is not None else Config()
    changes: dict[str, frozenset[str]] = {}
    if args.select is not None:
        changes["select"] = resolve_codes(_split(args.select), key="--select")
    if args.ignore is not None:
        changes["ignore"] = config.ignore | resolve_codes(_split(args.ignore), key="--ignore")
    if not changes:
        return config
    return Config(
        root=config.root,
        select=changes.get("select", config.select),
        ignore=changes.get("ignore", config.ignore),
        exclude=config.exclude,
        test_paths=config.test_paths,
        per_path_ignores=config.per_path_ignores,
    )


def _list_rules(out: TextIO) -> None:
    for rule in RULES:
        scope = " (test files only)" if rule.tests_only else ""
        print(f"{rule.code} {rule.name}{scope}\n    hint: {rule.hint}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run ``foundation lint`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.list_rules:
        _list_rules(sys.stdout)
        return EXIT_CLEAN
    if not args.paths:
        parser.print_usage(sys.stderr)
        print("foundation lint: error: give at least one PATH", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        config = _configure(args)
        files = list(iter_python_files(args.paths, config))
    except InvalidArgument as err:
        print(f"foundation lint: error: {err.message}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as err:
        print(f"foundation lint: error: no such file or directory: {err}", file=sys.stderr)
        return EXIT_USAGE
    findings: list[Finding] = []
    for path in files:
        findings.extend(check_file(path, config))
    for finding in findings:
        print(render(finding, show_hint=args.show_hints))
    elapsed = time.perf_counter() - started
    problems = sum(finding.code in PROBLEM_CODES for finding in findings)
    print(
        f"Found {len(findings)} finding(s) in {len(files)} file(s) in {elapsed:.2f}s"
        + (f"; {problems} file(s) could not be checked." if problems else "."),
        file=sys.stderr,
    )
    if problems:
        return EXIT_USAGE
    return EXIT_FINDINGS if findings else EXIT_CLEAN
