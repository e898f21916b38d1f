"""FND008: a telemetry handler that signals someone waiting, using telemetry as control flow."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence

from foundation.lint.rules.base import (
    ModuleContext,
    Rule,
    Violation,
    call_name,
    dotted,
    violation,
    walk_local,
)

__all__ = ["TelemetryUsedToWait"]

_ATTACH = frozenset({"attach", "attach_many"})
_SIGNALS = frozenset({"set", "set_result", "put_nowait", "put", "release"})
_NO_ARGUMENT_SIGNALS = frozenset({"set", "release"})

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_Scope = dict[str, _Function]


def _is_signal(call: ast.Call) -> bool:
    """``event.set()``, ``future.set_result(x)``, ``queue.put_nowait(x)``, ``lock.release()``."""
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in _SIGNALS:
        return False
    return func.attr not in _NO_ARGUMENT_SIGNALS or not (call.args or call.keywords)


def _signals(body: Sequence[ast.AST]) -> bool:
    return any(
        isinstance(node, ast.Call) and _is_signal(node) for stmt in body for node in ast.walk(stmt)
    )


def _is_attach(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr in _ATTACH
    return isinstance(func, ast.Name) and func.id in _ATTACH


class TelemetryUsedToWait(Rule):
    """FND008 telemetry handler used to wait for completion.

    Reported: a call to ``attach(...)`` or ``attach_many(...)`` (a bare name or a method of any
    receiver, ``telemetry.attach``) where one of its arguments is a handler that signals a
    waiter:

    - a ``lambda`` whose body calls ``.set()``, ``.set_result(...)``, ``.put_nowait(...)``,
      ``.put(...)`` or ``.release()``;
    - the name of a function defined in the same scope as the call, or an enclosing one, whose
      body makes such a call;
    - a bound signalling method itself (``done.set``, ``queue.put_nowait``).

    Telemetry is observe-only: a failing handler is detached, and an emitter owes no ordering to
    its handlers, so code waiting on a handler's signal can hang or race. Not reported: handlers
    that only record (append to a list, count), and ``assert_emitted`` used to verify.
    """

    code = "FND008"
    name = "telemetry-used-to-wait"
    hint = (
        "await the operation's own result (call, a Future it returns, wait_until on its state); "
        "use telemetry and assert_emitted only to observe and verify"
    )

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        yield from self._scope(ctx.tree.body, ())

    def _scope(self, body: Sequence[ast.AST], outer: tuple[_Scope, ...]) -> Iterator[Violation]:
        defined: _Scope = {}
        nested: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
        attaches: list[ast.Call] = []
        for node in walk_local(body):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined[node.name] = node
                nested.append(node)
            elif isinstance(node, ast.ClassDef):
                nested.append(node)
            elif isinstance(node, ast.Call) and _is_attach(node):
                attaches.append(node)
        scopes = (defined, *outer)
        for call in attaches:
            for handler in [*call.args, *(k.value for k in call.keywords)]:
                described = self._waiting_handler(handler, scopes)
                if described is not None:
                    yield violation(
                        call,
                        f"`{call_name(call)}(...)` attaches {described}, "
                        "so telemetry is used to wait for completion",
                    )
                    break
        for node in nested:
            yield from self._scope(node.body, scopes)

    @staticmethod
    def _waiting_handler(handler: ast.expr, scopes: tuple[_Scope, ...]) -> str | None:
        if isinstance(handler, ast.Lambda):
            return "a lambda that signals a waiter" if _signals([handler.body]) else None
        if isinstance(handler, ast.Attribute) and handler.attr in _SIGNALS:
            return f"`{dotted(handler) or handler.attr}` as a handler"
        if isinstance(handler, ast.Name):
            for scope in scopes:
                if handler.id in scope:
                    fn = scope[handler.id]
                    if _signals(fn.body):
                        return f"handler `{fn.name}`, which signals a waiter"
                    return None
        return None
