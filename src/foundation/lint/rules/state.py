"""FND006: mutable runtime state kept in a module instead of a process."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import ModuleContext, Rule, Violation, dotted, violation, walk_local

__all__ = ["ModuleMutableState"]

_MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_BUILTIN_CONTAINERS = frozenset({"list", "dict", "set", "bytearray"})
_LIBRARY_CONTAINERS = frozenset(
    {
        "defaultdict",
        "OrderedDict",
        "deque",
        "Counter",
        "WeakValueDictionary",
        "WeakKeyDictionary",
        "WeakSet",
    }
)
#: Module-level names that are declarations read by tools, not state.
_EXEMPT_NAMES = frozenset({"__all__", "pytest_plugins", "pytestmark"})


def _is_mutable(value: ast.expr) -> bool:
    if isinstance(value, _MUTABLE_LITERALS):
        return True
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    if isinstance(func, ast.Name):
        return func.id in _BUILTIN_CONTAINERS or func.id in _LIBRARY_CONTAINERS
    return isinstance(func, ast.Attribute) and func.attr in _LIBRARY_CONTAINERS


def _is_final(annotation: ast.expr) -> bool:
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value.split("[", 1)[0].rpartition(".")[2] == "Final"
    text = dotted(annotation)
    return text is not None and text.rpartition(".")[2] == "Final"


def _bindings(target: ast.expr, value: ast.expr) -> Iterator[tuple[ast.Name, ast.expr]]:
    """Each name ``target`` binds with the value it gets (``a, b = [], {}`` pairs them up)."""
    if isinstance(target, ast.Name):
        yield target, value
    elif isinstance(target, ast.Tuple | ast.List):
        sequences = ast.Tuple | ast.List
        starred = any(isinstance(e, ast.Starred) for e in (*target.elts, *_elements(value)))
        if isinstance(value, sequences) and len(value.elts) == len(target.elts) and not starred:
            for element, item in zip(target.elts, value.elts, strict=True):
                yield from _bindings(element, item)
        else:
            for element in target.elts:
                yield from _bindings(element, value)
    elif isinstance(target, ast.Starred):
        yield from _bindings(target.value, value)


def _elements(value: ast.expr) -> list[ast.expr]:
    return value.elts if isinstance(value, ast.Tuple | ast.List) else []


class ModuleMutableState(Rule):
    """FND006 module-level mutable runtime state.

    Reported:

    - a module-level binding (``x = ...`` or ``x: T = ...`` outside any function or class,
      including under a module-level ``if``/``try``/``with``) of a mutable container: a list,
      dict or set literal or comprehension, or a call to ``list``, ``dict``, ``set``,
      ``bytearray``, ``defaultdict``, ``OrderedDict``, ``deque``, ``Counter``,
      ``WeakValueDictionary``, ``WeakKeyDictionary`` or ``WeakSet`` (bare or as an attribute,
      ``collections.deque``); one finding per bound name;
    - every ``global`` statement inside a function or class.

    State in a module is shared by every runtime in the interpreter, survives process restarts
    (so a crash does not reset it) and leaks between tests. Not reported: ``__all__``,
    ``pytest_plugins`` and ``pytestmark`` (declarations read by tools), names annotated
    ``Final`` (``X: Final = [...]``, a declared constant), tuples, frozensets and
    ``MappingProxyType`` (immutable), and any binding inside a function or class.
    """

    code = "FND006"
    name = "module-mutable-state"
    hint = (
        "keep it in a process's state (a GenServer) or a contextvar; "
        "for a constant use a tuple, frozenset or MappingProxyType, or annotate it Final"
    )

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        module_level: set[int] = set()
        for node in walk_local(ctx.tree.body):
            module_level.add(id(node))
            if isinstance(node, ast.Assign):
                pairs = [pair for target in node.targets for pair in _bindings(target, node.value)]
            elif (
                isinstance(node, ast.AnnAssign)
                and node.value is not None
                and not _is_final(node.annotation)
            ):
                pairs = list(_bindings(node.target, node.value))
            else:
                continue
            for name, value in pairs:
                if name.id not in _EXEMPT_NAMES and _is_mutable(value):
                    yield violation(
                        name,
                        f"module-level mutable state: `{name.id}` is bound to a mutable "
                        "container shared by every runtime and never reset by a restart",
                    )
        for node in ctx.nodes:
            if isinstance(node, ast.Global) and id(node) not in module_level:
                yield violation(
                    node,
                    f"`global {', '.join(node.names)}` rebinds module-level state from a function",
                )
