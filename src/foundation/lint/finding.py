"""One finding of ``foundation lint``: where it is, which rule, what is wrong, how to fix it.

Findings are frozen and ordered by ``(path, line, col, code)``, so a sorted list reads like the
output. ``line`` and ``col`` are 1-based, as in ruff and in editors.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Finding"]


@dataclass(frozen=True, order=True, slots=True)
class Finding:
    """A rule broken at ``path:line:col``; ``hint`` says how to fix it."""

    path: str
    line: int
    col: int
    code: str
    message: str
    hint: str = ""

    def format(self) -> str:
        """The one-line form ``path:line:col: CODE message``."""
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"
