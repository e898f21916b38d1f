"""Configuration of ``foundation lint``: the ``[tool.foundation.lint]`` table of ``pyproject.toml``.

Every key is optional::

    [tool.foundation.lint]
    select = ["FND"]                 # codes or code prefixes to check (default: every rule)
    ignore = ["FND006"]              # codes or prefixes never reported
    exclude = ["tests/lint/corpus/**"]                # skipped while walking directories
    test-paths = ["tests/**", "**/test_*.py", "**/conftest.py"]   # where FND005 applies
    per-path-ignores = { "src/foundation/kernel/**" = ["FND001", "FND002"] }

The file used is ``--config FILE`` or else the nearest ``pyproject.toml`` at or above the first
path given; without one the defaults apply and paths are taken as given. The project root is the
directory of that file.

Globs are matched against a file's path relative to the project root, with ``/`` separators:
``*`` and ``?`` match within one path segment, ``**`` matches any number of segments (none
included), ``[abc]``/``[!abc]`` a character class. A glob also matches everything under a
directory it matches (``src/foundation/kernel`` covers its files), and a glob without ``/``
matches at any depth (``conftest.py`` is ``**/conftest.py``).

``exclude`` only prunes what a directory walk finds: a file named on the command line is always
checked. Invalid configuration raises ``InvalidArgument`` naming the key and the value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Final

from foundation.errors import InvalidArgument
from foundation.lint.rules import BY_CODE

__all__ = [
    "Config",
    "DEFAULT_TEST_PATHS",
    "find_config",
    "glob_match",
    "load_config",
    "resolve_codes",
]

DEFAULT_TEST_PATHS: Final = ("tests/**", "**/test_*.py", "**/conftest.py")
_KEYS: Final = frozenset({"select", "ignore", "exclude", "test-paths", "per-path-ignores"})
_TABLE: Final = "[tool.foundation.lint]"


@lru_cache(maxsize=512)
def _compile(glob: str) -> re.Pattern[str]:
    glob = glob.strip().removeprefix("./").rstrip("/")
    if "/" not in glob:
        glob = "**/" + glob
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            body = glob[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?")


def glob_match(path: str, glob: str) -> bool:
    """Whether the relative ``path`` (``/``-separated) matches ``glob``, or lies under a match."""
    return _compile(glob).fullmatch(path) is not None


def resolve_codes(selectors: Iterable[str], *, key: str) -> frozenset[str]:
    """The rule codes that ``selectors`` (codes or prefixes such as ``FND`` or ``FND00``) name.

    Raises ``InvalidArgument`` for a selector that matches no rule.
    """
    codes: set[str] = set()
    for selector in selectors:
        matched = {code for code in BY_CODE if code.startswith(selector.strip().upper())}
        if not selector.strip() or not matched:
            raise InvalidArgument(
                f"invalid {key}: {selector!r} is not a rule code or prefix "
                f"(known: {', '.join(BY_CODE)})",
                context={"key": key, "value": selector},
            )
        codes |= matched
    return frozenset(codes)


@dataclass(frozen=True)
class Config:
    """Which rules run where. ``root`` is the project root; ``None`` takes paths as given."""

    root: Path | None = None
    select: frozenset[str] = field(default_factory=lambda: frozenset(BY_CODE))
    ignore: frozenset[str] = frozenset()
    exclude: tuple[str, ...] = ()
    test_paths: tuple[str, ...] = DEFAULT_TEST_PATHS
    per_path_ignores: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def from_table(cls, table: Mapping[str, Any], root: Path | None = None) -> Config:
        """Validate a ``[tool.foundation.lint]`` table; defaults fill the missing keys."""
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise InvalidArgument(
                f"unknown key in {_TABLE}: {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})",
                context={"key": unknown[0]},
            )
        per_path = table.get("per-path-ignores", {})
        if not isinstance(per_path, Mapping):
            raise InvalidArgument(
                f"invalid per-path-ignores: expected a table of glob = [codes], got {per_path!r}",
                context={"key": "per-path-ignores", "value": per_path},
            )
        select = _strings(table, "select")
        return cls(
            root=root,
            select=frozenset(BY_CODE) if select is None else resolve_codes(select, key="select"),
            ignore=resolve_codes(_strings(table, "ignore") or (), key="ignore"),
            exclude=_strings(table, "exclude") or (),
            test_paths=_strings(table, "test-paths") or DEFAULT_TEST_PATHS,
            per_path_ignores=tuple(
                (
                    str(glob),
                    resolve_codes(_strings(per_path, glob) or (), key=f"per-path-ignores.{glob!s}"),
                )
                for glob in per_path
            ),
        )

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the project root, ``/``-separated, as globs see it."""
        if self.root is None:
            return PurePosixPath(Path(path).as_posix()).as_posix().removeprefix("./")
        absolute = Path(os.path.abspath(path))
        root = Path(os.path.abspath(self.root))
        if absolute.is_relative_to(root):
            return absolute.relative_to(root).as_posix()
        return absolute.as_posix()

    def is_excluded(self, relative: str) -> bool:
        """Whether a directory walk skips ``relative``."""
        return any(glob_match(relative, glob) for glob in self.exclude)

    def is_test(self, relative: str) -> bool:
        """Whether ``relative`` is a test file (where FND005 applies)."""
        return any(glob_match(relative, glob) for glob in self.test_paths)

    def codes_for(self, relative: str) -> frozenset[str]:
        """The rule codes checked in ``relative``: selected, not ignored, not ignored there."""
        codes = self.select - self.ignore
        for glob, ignored in self.per_path_ignores:
            if glob_match(relative, glob):
                codes -= ignored
        return codes


def _strings(table: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(
            f"invalid {key}: expected a list of strings, got {value!r}",
            context={"key": key, "value": value},
        )
    return tuple(value)


def find_config(start: str | os.PathLike[str]) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start``'s directory or above it, if any."""
    here = Path(os.path.abspath(start))
    if not here.is_dir():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike[str]) -> Config:
    """The configuration in the ``[tool.foundation.lint]`` table of the TOML file ``path``.

    A file without the table gives the defaults, rooted at the file's directory.
    """
    file = Path(path)
    try:
        with file.open("rb") as stream:
            document = tomllib.load(stream)
    except OSError as err:
        raise InvalidArgument(
            f"cannot read config {str(file)!r}: {err.strerror or err}",
            context={"config": str(file)},
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise InvalidArgument(
            f"invalid TOML in {str(file)!r}: {err}", context={"config": str(file)}
        ) from err
    table = document.get("tool", {}).get("foundation", {}).get("lint", {})
    if not isinstance(table, Mapping):
        raise InvalidArgument(
            f"invalid {_TABLE} in {str(file)!r}: expected a table, got {table!r}",
            context={"config": str(file)},
        )
    return Config.from_table(table, root=file.parent)
