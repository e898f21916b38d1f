"""Child specifications: how a supervisor starts, restarts and stops one child.

``ChildSpec(id, start, restart="permanent", shutdown=5.0, type="worker")``, as in OTP:
``start`` is an async callable returning the new child's ``Pid`` (or None to be ignored);
``restart`` is ``permanent`` (always restarted), ``transient`` (restarted only after an abnormal
exit) or ``temporary`` (never restarted, and forgotten when it exits); ``shutdown`` is seconds to
wait after asking the child to stop before killing it, ``"brutal_kill"`` or ``"infinity"``.
Specs are validated when built; errors name the field and the value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

from foundation.errors import InvalidArgument
from foundation.kernel.pid import Pid

__all__ = ["ChildInfo", "ChildSpec", "Restart", "Shutdown"]

Restart = Literal["permanent", "transient", "temporary"]
Shutdown = float | int | Literal["brutal_kill", "infinity"]
ChildType = Literal["worker", "supervisor"]

_RESTARTS = ("permanent", "transient", "temporary")
_TYPES = ("worker", "supervisor")


def check_shutdown(value: Any, where: str) -> None:
    if value in ("brutal_kill", "infinity"):
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgument(
            f"invalid shutdown in {where}: {value!r} (seconds >= 0, 'brutal_kill' or 'infinity')",
            context={"field": "shutdown", "value": value},
        )


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start, restart and stop one child of a supervisor."""

    id: Hashable
    start: Callable[[], Awaitable[Pid | None]]
    restart: Restart = "permanent"
    shutdown: Shutdown = 5.0
    type: ChildType = "worker"

    def __post_init__(self) -> None:
        where = f"child spec {self.id!r}"
        try:
            hash(self.id)
        except TypeError:
            raise InvalidArgument(
                f"invalid id in child spec: {self.id!r} (must be hashable)",
                context={"field": "id", "value": repr(self.id)},
            ) from None
        if not callable(self.start):
            raise InvalidArgument(
                f"invalid start in {where}: {self.start!r} (must be an async callable)",
                context={"field": "start", "value": repr(self.start)},
            )
        if self.restart not in _RESTARTS:
            raise InvalidArgument(
                f"invalid restart in {where}: {self.restart!r} (one of {', '.join(_RESTARTS)})",
                context={"field": "restart", "value": self.restart},
            )
        check_shutdown(self.shutdown, where)
        if self.type not in _TYPES:
            raise InvalidArgument(
                f"invalid type in {where}: {self.type!r} (one of {', '.join(_TYPES)})",
                context={"field": "type", "value": self.type},
            )


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of ``which_children``: the child's id, pid (None if not running), type, restart."""

    id: Hashable
    pid: Pid | None
    type: ChildType
    restart: Restart
