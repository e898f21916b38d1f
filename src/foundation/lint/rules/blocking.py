"""FND004: a blocking call made directly in a coroutine, stalling the whole event loop."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import (
    ModuleContext,
    Rule,
    Violation,
    call_name,
    local_names,
    violation,
    walk_local,
)

__all__ = ["BlockingCallInAsync"]

_BLOCKING_CALLS = frozenset(
    {
        "time.sleep",
        "urllib.request.urlopen",
        "subprocess.run",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "os.system",
        "os.popen",
        "os.wait",
        "socket.create_connection",
        "httpx.get",
        "httpx.post",
        "httpx.put",
        "httpx.patch",
        "httpx.delete",
        "httpx.head",
        "httpx.options",
        "httpx.request",
        "builtins.input",
    }
)


def _is_blocking(qualname: str | None) -> bool:
    """Whether a call to ``qualname`` blocks the thread it runs on."""
    if qualname is None:
        return False
    if qualname in _BLOCKING_CALLS:
        return True
    # requests.get/post/request/...: every lowercase function of requests does network I/O;
    # constructing requests.Session or an exception class does not.
    module, _, last = qualname.rpartition(".")
    return module.partition(".")[0] == "requests" and last[:1].islower()


class BlockingCallInAsync(Rule):
    """FND004 blocking call inside ``async def``.

    Reported: a call made directly in the body of an ``async def`` (not inside a nested ``def``,
    ``lambda`` or ``class``, which run elsewhere) to ``time.sleep``, a lowercase function of
    ``requests`` (``requests.get``, ``requests.request``...), ``urllib.request.urlopen``,
    ``subprocess.run/call/check_call/check_output/getoutput/getstatusoutput``, ``os.system``,
    ``os.popen``, ``os.wait``, ``socket.create_connection``, the synchronous
    ``httpx.get/post/put/patch/delete/head/options/request``, or the builtin ``input``. Names are
    resolved through imports: ``from time import sleep`` and ``import time as t`` are caught,
    while a parameter or local variable of the coroutine shadows them (an ``input`` argument is
    not the builtin).

    While such a call runs no other process on the loop makes progress: timers, calls and
    supervisors all stall. Not reported: the same calls in a plain ``def`` (which may be what
    ``TaskSupervisor.run_sync`` runs), ``requests.Session()`` and ``httpx.AsyncClient`` calls.
    """

    code = "FND004"
    name = "blocking-call-in-async"
    hint = (
        "await the async equivalent (asyncio.sleep, an httpx.AsyncClient, "
        "asyncio.create_subprocess_exec) or run it with TaskSupervisor.run_sync"
    )

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        for fn in ctx.nodes:
            if not isinstance(fn, ast.AsyncFunctionDef):
                continue
            shadowed = local_names(fn)
            for node in walk_local(fn.body):
                if isinstance(node, ast.Call) and _is_blocking(ctx.qualname(node.func, shadowed)):
                    yield violation(
                        node,
                        f"blocking call `{call_name(node)}(...)` inside `async def {fn.name}` "
                        "stalls the event loop",
                    )
