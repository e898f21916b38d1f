"""FND001: a task created and then dropped, so nothing owns it."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import ModuleContext, Rule, Violation, call_name, dotted, violation

__all__ = ["OrphanTask"]

_SPAWN_METHODS = frozenset({"create_task", "ensure_future"})
_SPAWN_FUNCTIONS = frozenset({"asyncio.create_task", "asyncio.ensure_future"})


class OrphanTask(Rule):
    """FND001 orphan task: a task is created and its result is dropped.

    Reported: a call to ``asyncio.create_task(...)`` or ``asyncio.ensure_future(...)`` (also
    through ``from asyncio import create_task``), or to a ``.create_task(...)`` or
    ``.ensure_future(...)`` method of any receiver (``loop.create_task``), when the call is a whole
    expression statement or is assigned only to ``_``. Nobody can await or cancel such a task, its
    exception is never seen, and the event loop keeps only a weak reference to it.

    Not reported: a kept or awaited result (``t = loop.create_task(...)``, ``await ...``,
    ``tasks.append(...)``), and ``tg.create_task(...)`` where ``tg`` is bound to a ``TaskGroup``
    in the same module (``async with asyncio.TaskGroup() as tg`` or ``self.tg = TaskGroup()``):
    the group owns and awaits its tasks.
    """

    code = "FND001"
    name = "orphan-task"
    hint = (
        "start it under a TaskSupervisor (or spawn a process) so a supervisor owns it, "
        "or keep the task and await or cancel it"
    )

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        groups = _task_group_names(ctx)
        for node in ctx.nodes:
            value = _dropped_value(node)
            if isinstance(value, ast.Call) and self._spawns(ctx, value, groups):
                yield violation(
                    value,
                    f"orphan task: the result of `{call_name(value)}(...)` is dropped, so "
                    "nothing awaits, cancels or sees the crash of the task",
                )

    @staticmethod
    def _spawns(ctx: ModuleContext, call: ast.Call, groups: set[str]) -> bool:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in _SPAWN_METHODS:
            return dotted(func.value) not in groups
        return ctx.qualname(func) in _SPAWN_FUNCTIONS


def _is_underscore(target: ast.expr) -> bool:
    return isinstance(target, ast.Name) and target.id == "_"


def _dropped_value(node: ast.AST) -> ast.expr | None:
    """The value of an expression statement or of an assignment to ``_`` only."""
    if isinstance(node, ast.Expr):
        return node.value
    if isinstance(node, ast.Assign) and all(_is_underscore(t) for t in node.targets):
        return node.value
    if isinstance(node, ast.AnnAssign) and _is_underscore(node.target):
        return node.value
    return None


def _is_task_group(expr: ast.expr) -> bool:
    if not isinstance(expr, ast.Call):
        return False
    text = dotted(expr.func)
    return text is not None and text.rpartition(".")[2] == "TaskGroup"


def _task_group_names(ctx: ModuleContext) -> set[str]:
    """Names and attribute chains bound to a ``TaskGroup()`` anywhere in the module."""
    names: set[str] = set()
    for node in ctx.nodes:
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None and _is_task_group(item.context_expr):
                    name = dotted(item.optional_vars)
                    if name is not None:
                        names.add(name)
        elif isinstance(node, ast.Assign) and _is_task_group(node.value):
            names.update(n for n in map(dotted, node.targets) if n is not None)
    return names
