"""What Supervisor and DynamicSupervisor share: restart intensity, starting and stopping children.

Restart intensity is a pure function of the clock (OTP's ``add_restart``): a restart at ``now``
is added to the restarts still inside the window ``[now - max_seconds, now]``; more than
``max_restarts`` of them means the supervisor gives up, stops its children and exits with reason
``shutdown``, escalating to its own supervisor.
"""

from __future__ import annotations

import logging
from typing import Any

from foundation.errors import BadReturn, InvalidArgument
from foundation.kernel.child_spec import ChildSpec, Shutdown
from foundation.kernel.clock import wait_future
from foundation.kernel.messages import Exit
from foundation.kernel.pid import Pid
from foundation.kernel.process import Process

__all__ = ["add_restart", "check_intensity", "shutdown_child", "start_spec"]

log = logging.getLogger("foundation.kernel")


def add_restart(
    restarts: list[float], now: float, max_restarts: int, max_seconds: float
) -> tuple[list[float], bool]:
    """Record a restart at ``now``: the restarts in the window, and whether one is allowed."""
    threshold = now - max_seconds
    kept = [t for t in restarts if t >= threshold]
    kept.append(now)
    return kept, len(kept) <= max_restarts


def check_intensity(max_restarts: Any, max_seconds: Any) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise InvalidArgument(
            f"invalid max_restarts: {max_restarts!r} (must be an int >= 0)",
            context={"field": "max_restarts", "value": max_restarts},
        )
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or max_seconds <= 0
    ):
        raise InvalidArgument(
            f"invalid max_seconds: {max_seconds!r} (must be a number > 0)",
            context={"field": "max_seconds", "value": max_seconds},
        )


async def start_spec(me: Process, spec: ChildSpec) -> Pid | None:
    """Run a spec's ``start`` from inside the supervisor; ensure the child is linked to it."""
    pid = await spec.start()
    if pid is None:
        return None
    if type(pid) is not Pid:
        raise BadReturn(
            f"start of child {spec.id!r} returned {pid!r} (expected a Pid, or None to be ignored)"
        )
    proc = pid._proc
    if proc is None:
        # Dead already. A linked child queued its own Exit first; this one is then ignored.
        me.deliver_system(Exit(pid, "noproc"))
    else:
        proc.link(me)
    return pid


async def shutdown_child(me: Process, pid: Pid, shutdown: Shutdown) -> Any:
    """Stop one child as its spec says and wait for it; returns its exit reason.

    The child is unlinked first, so its exit never arrives as an ``Exit`` message.
    """
    proc = pid._proc
    if proc is None:
        return "noproc"
    me.unlink(proc)
    fut = proc.exit_future()
    if shutdown == "brutal_kill":
        proc.signal_exit(me.pid, "kill", linked=False)
    else:
        proc.signal_exit(me.pid, "shutdown", linked=False)
        if shutdown != "infinity" and not await wait_future(me.runtime.clock, fut, float(shutdown)):
            log.warning(
                "%s did not stop within %ss of shutdown; killing it", proc.describe(), shutdown
            )
            proc.signal_exit(me.pid, "kill", linked=False)
    return await fut


class Failed:
    """A supervisor's answer that carries an error for the caller to raise."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def unwrap(result: Any) -> Any:
    """Raise the error a supervisor answered with, or return its answer."""
    if type(result) is Failed:
        raise result.error
    return result


def start_error(spec_id: Any, exc: Exception) -> Exception:
    """The error ``start_child`` raises: the child's own FoundationError, else an InitError."""
    from foundation.errors import FoundationError, InitError, format_reason

    if isinstance(exc, FoundationError):
        return exc
    err = InitError(
        f"child {spec_id!r} failed to start: {format_reason(exc)}",
        reason=exc,
        context={"id": spec_id},
    )
    err.__cause__ = exc
    return err
