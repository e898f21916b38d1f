"""What every rule is and what it may read about a module.

A rule is a stateless object with a ``code`` (``FND001``), a short ``name``, a fix ``hint`` and a
``check(ctx)`` method yielding a ``Violation(line, col, message)`` for each place it finds. Its
class docstring is the rule's precise definition. The checker owns everything else: which rules
run on which file, ``# noqa`` suppression and output.

``ModuleContext`` is built once per file and shared by every rule: the parsed tree, the path
relative to the project root, whether the file is a test, and the import aliases, so that
``qualname()`` turns ``sleep`` (after ``from time import sleep``) or ``t.sleep`` (after
``import time as t``) into ``time.sleep``. A name that is neither imported nor a builtin resolves
to nothing: ``requests.append(x)`` on a local list called ``requests`` is not ``requests.*``.
"""

from __future__ import annotations

import ast
import builtins
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import ClassVar, NamedTuple

__all__ = [
    "ModuleContext",
    "Rule",
    "SCOPE_NODES",
    "Violation",
    "call_name",
    "dotted",
    "local_names",
    "spell",
    "violation",
    "walk_local",
]

#: Nodes that open a new scope: ``walk_local`` yields them but does not look inside.
SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

_BUILTINS = frozenset(dir(builtins))


class Violation(NamedTuple):
    """A place where a rule is broken: 1-based line and column, and what is wrong."""

    line: int
    col: int
    message: str


def violation(node: ast.expr | ast.stmt | ast.excepthandler, message: str) -> Violation:
    """A violation located at ``node``'s first character."""
    return Violation(node.lineno, node.col_offset + 1, message)


def walk_local(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under ``nodes`` that runs in the same scope.

    A nested ``def``, ``async def``, ``lambda`` or ``class`` is yielded itself but not entered.
    """
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, SCOPE_NODES):
            stack.extend(ast.iter_child_nodes(node))


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, ``None`` for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def spell(node: ast.expr) -> str | None:
    """Source-like text for names, attributes and calls (``f(...).x``), ``None`` otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = spell(node.value)
        return f"{inner or '…'}.{node.attr}"
    if isinstance(node, ast.Call):
        inner = spell(node.func)
        if inner is not None:
            return f"{inner}({'...' if node.args or node.keywords else ''})"
    return None


def call_name(call: ast.Call) -> str:
    """A short spelling of the callee for messages: ``loop.create_task``, ``f(...).deliver``."""
    return spell(call.func) or "…"


def local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> frozenset[str]:
    """The names ``fn`` binds in its own scope: parameters, assignment targets, nested defs."""
    arguments = fn.args
    names = {
        a.arg
        for a in (
            *arguments.posonlyargs,
            *arguments.args,
            *arguments.kwonlyargs,
            *(a for a in (arguments.vararg, arguments.kwarg) if a is not None),
        )
    }
    body: list[ast.AST] = [fn.body] if isinstance(fn, ast.Lambda) else list(fn.body)
    for node in walk_local(body):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return frozenset(names)


class ModuleContext:
    """One parsed module as the rules see it: tree, relative path, test or not, import aliases."""

    def __init__(self, tree: ast.Module, path: str, *, is_test: bool = False) -> None:
        self.tree = tree
        self.path = path
        self.is_test = is_test
        self.nodes: list[ast.AST] = list(ast.walk(tree))
        self.imports: dict[str, str] = {}
        self.defined: set[str] = set()
        for node in self.nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        root = alias.name.partition(".")[0]
                        self.imports[root] = root
            elif isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{module}.{alias.name}"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defined.add(node.name)

    def calls(self) -> Iterator[ast.Call]:
        """Every call in the module."""
        for node in self.nodes:
            if isinstance(node, ast.Call):
                yield node

    def qualname(self, node: ast.expr, shadowed: frozenset[str] = frozenset()) -> str | None:
        """The fully qualified name ``node`` refers to, through import aliases and builtins.

        ``None`` if the chain does not start at an imported name or an unshadowed builtin, or
        starts at one of the ``shadowed`` (locally bound) names.
        """
        text = dotted(node)
        if text is None:
            return None
        root, dot, rest = text.partition(".")
        if root in shadowed:
            return None
        if root in self.imports:
            return self.imports[root] + dot + rest
        if root in _BUILTINS and root not in self.defined:
            return f"builtins.{text}"
        return None


class Rule(ABC):
    """A doctrine rule; the subclass docstring is its precise definition."""

    code: ClassVar[str]
    name: ClassVar[str]
    hint: ClassVar[str]
    #: Whether the rule applies only to files matched by ``test-paths``.
    tests_only: ClassVar[bool] = False

    @abstractmethod
    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        """Yield a violation for every place in ``ctx`` that breaks the rule."""

    @classmethod
    def describe(cls) -> str:
        """The rule's definition: its docstring, dedented."""
        return inspect.getdoc(cls) or ""

    def __repr__(self) -> str:
        return f"<{self.code} {self.name}>"
