"""FND007: a broad ``except`` that swallows the error instead of letting the process crash."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import ModuleContext, Rule, Violation, dotted, violation

__all__ = ["SwallowedException"]

_BROAD = frozenset({"Exception", "BaseException", "builtins.Exception", "builtins.BaseException"})
_REPORTING_METHODS = frozenset(
    {
        "exception",
        "error",
        "warning",
        "critical",
        "log",
        "warn",
        "info",
        "debug",
        "print_exc",
        "print_exception",
    }
)


def _is_broad(kind: ast.expr | None) -> bool:
    if kind is None:
        return True
    if isinstance(kind, ast.Tuple):
        return any(_is_broad(element) for element in kind.elts)
    return dotted(kind) in _BROAD


def _handles(handler: ast.ExceptHandler) -> bool:
    """Whether the handler re-raises, reports, or uses the exception it caught."""
    for node in (inner for stmt in handler.body for inner in ast.walk(stmt)):
        if isinstance(node, ast.Raise):
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _REPORTING_METHODS
        ):
            return True
        if isinstance(node, ast.Name) and handler.name is not None and node.id == handler.name:
            return True
    return False


class SwallowedException(Rule):
    """FND007 broad except that swallows.

    Reported: an ``except:``, ``except Exception`` or ``except BaseException`` handler (also
    when one of them is in a tuple, ``except (ValueError, Exception)``) whose body does none of:

    - re-raise: a ``raise`` statement anywhere in the handler;
    - report: a call to a method named ``exception``, ``error``, ``warning``, ``critical``,
      ``log``, ``warn``, ``info``, ``debug`` (a logger) or ``print_exc``/``print_exception``
      (``traceback``);
    - use the caught exception: any reference to the name bound by ``as``.

    Such a handler hides bugs the supervisor should see: the process limps on in a state nobody
    planned for. Not reported: handlers for specific exceptions (``except KeyError: pass``).
    """

    code = "FND007"
    name = "swallowed-exception"
    hint = (
        "catch the specific errors you expect and let the rest crash the process "
        "(its supervisor restarts it); if you must catch broadly, log or re-raise"
    )

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        for node in ctx.nodes:
            if isinstance(node, ast.ExceptHandler) and _is_broad(node.type) and not _handles(node):
                caught = "except:" if node.type is None else f"except {ast.unparse(node.type)}:"
                yield violation(
                    node,
                    f"`{caught}` swallows every error: the handler neither re-raises, "
                    "logs, nor uses the exception",
                )
