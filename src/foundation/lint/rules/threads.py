"""FND002: a thread, process or executor started outside the kernel."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import ModuleContext, Rule, Violation, call_name, violation

__all__ = ["ThreadOutsideKernel"]

_SPAWNERS = frozenset(
    {
        "threading.Thread",
        "threading.Timer",
        "_thread.start_new_thread",
        "_thread.start_new",
        "asyncio.to_thread",
        "concurrent.futures.ThreadPoolExecutor",
        "concurrent.futures.ProcessPoolExecutor",
        "concurrent.futures.thread.ThreadPoolExecutor",
        "concurrent.futures.process.ProcessPoolExecutor",
        "multiprocessing.Process",
        "multiprocessing.Pool",
        "multiprocessing.pool.Pool",
        "multiprocessing.pool.ThreadPool",
    }
)


class ThreadOutsideKernel(Rule):
    """FND002 thread or executor spawned outside the kernel.

    Reported: a call that resolves (through imports and aliases) to ``threading.Thread``,
    ``threading.Timer``, ``_thread.start_new_thread``, ``asyncio.to_thread``,
    ``concurrent.futures.ThreadPoolExecutor``/``ProcessPoolExecutor``,
    ``multiprocessing.Process``/``Pool`` or ``multiprocessing.pool.ThreadPool``; and a call to a
    ``.run_in_executor(...)`` method of any receiver. A thread nobody supervises outlives crashes
    and shutdowns, and its exceptions are lost.

    Not reported: a local class or function that merely shares a name (``Thread`` not imported
    from ``threading``). The kernel, which owns threads, is allowed through ``per-path-ignores``.
    """

    code = "FND002"
    name = "thread-outside-kernel"
    hint = "run blocking work with TaskSupervisor.run_sync (or a TaskPool), which owns the thread"

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        for call in ctx.calls():
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "run_in_executor":
                what = f"`{call_name(call)}(...)` runs work on an executor thread"
            elif ctx.qualname(func) in _SPAWNERS:
                what = f"`{call_name(call)}(...)` starts a thread or process"
            else:
                continue
            yield violation(call, f"{what} outside the kernel, where no supervisor owns it")
