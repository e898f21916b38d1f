"""Who is running: the current runtime and the current process, held in ``contextvars``.

A process's task sets the current process when it starts; ``async with Runtime()`` sets the
current runtime for its body. Nothing here is module-level mutable state: each task has its own
context.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from foundation.errors import NoRuntime

if TYPE_CHECKING:
    from foundation.kernel.process import Process
    from foundation.kernel.runtime import Runtime

__all__ = ["current_process", "current_runtime", "maybe_runtime"]

RUNTIME: ContextVar[Runtime | None] = ContextVar("foundation_runtime", default=None)
PROCESS: ContextVar[Process | None] = ContextVar("foundation_process", default=None)


def current_runtime() -> Runtime:
    """The runtime of the calling code, or ``NoRuntime`` outside one."""
    rt = RUNTIME.get()
    if rt is None:
        raise NoRuntime(
            "no Foundation runtime here: call this inside `async with Runtime():`, "
            "`foundation.run(...)` or a process"
        )
    return rt


def maybe_runtime() -> Runtime | None:
    """The runtime of the calling code, or None."""
    return RUNTIME.get()


def current_process() -> Process | None:
    """The process whose task is running this code, or None (the runtime's body, a thread)."""
    return PROCESS.get()
