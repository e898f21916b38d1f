"""The messages and callback return values of the kernel: ``Exit``, ``Down``, ``Reply``, ...

``Exit`` and ``Down`` are delivered to mailboxes; ``Reply``, ``NoReply``, ``Stop`` and
``Continue`` are what GenServer callbacks return to say what happens next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from foundation.kernel.pid import Pid, Ref

__all__ = [
    "Continue",
    "Control",
    "Down",
    "Exit",
    "Handed",
    "NORMAL_REASONS",
    "NoReply",
    "Reply",
    "Stop",
    "UNSET",
    "is_normal_reason",
]


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Final = _Unset()

NORMAL_REASONS: Final = frozenset({"normal", "shutdown"})


def is_normal_reason(reason: object) -> bool:
    """True for ``normal``, ``shutdown`` and ``("shutdown", term)``: exits that are not failures."""
    if isinstance(reason, str):
        return reason in NORMAL_REASONS
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"


@dataclass(frozen=True, slots=True)
class Exit:
    """An exit signal turned into a message, for a process that traps exits."""

    pid: Pid | None
    reason: Any


@dataclass(frozen=True, slots=True)
class Down:
    """Sent once to the watcher when a monitored process exits (``noproc`` if it was dead)."""

    ref: Ref
    pid: Pid
    reason: Any


class Control:
    """Base of the callback return values that are not a bare new state."""

    __slots__ = ()


class Reply(Control):
    """``handle_call`` answers ``value`` and continues with ``state``."""

    __slots__ = ("continue_with", "state", "value")
    __match_args__ = ("value", "state")

    def __init__(self, value: Any, state: Any, *, continue_with: Any = UNSET) -> None:
        self.value = value
        self.state = state
        self.continue_with = continue_with

    def __repr__(self) -> str:
        return f"Reply({self.value!r}, {self.state!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Reply
            and self.value == other.value
            and self.state == other.state
            and self.continue_with == other.continue_with
        )

    __hash__ = None  # type: ignore[assignment]


class Handed(Control):
    """From ``handle_call``: continue with ``state``; the answer to the caller was handed to
    someone who will give it (a persistent server's store, once the state is durable), so
    the server neither answers nor tracks this caller. The holder must answer even if the
    server exits first (else the caller waits for its timeout)."""

    __slots__ = ("state",)

    def __init__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Handed({self.state!r})"


class NoReply(Control):
    """Continue with ``state``; from ``handle_call``, answer later with ``reply``."""

    __slots__ = ("continue_with", "state")
    __match_args__ = ("state",)

    def __init__(self, state: Any, *, continue_with: Any = UNSET) -> None:
        self.state = state
        self.continue_with = continue_with

    def __repr__(self) -> str:
        return f"NoReply({self.state!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is NoReply
            and self.state == other.state
            and self.continue_with == other.continue_with
        )

    __hash__ = None  # type: ignore[assignment]


class Stop(Control):
    """Stop with ``reason`` after ``terminate``; ``reply`` answers a pending call."""

    __slots__ = ("reason", "reply", "state")
    __match_args__ = ("reason", "state")

    def __init__(self, reason: Any, state: Any, *, reply: Any = UNSET) -> None:
        self.reason = reason
        self.state = state
        self.reply = reply

    def __repr__(self) -> str:
        return f"Stop({self.reason!r}, {self.state!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Stop
            and self.reason == other.reason
            and self.state == other.state
            and self.reply == other.reply
        )

    __hash__ = None  # type: ignore[assignment]


class Continue(Control):
    """A callback continues with ``state`` and runs ``handle_continue(arg, state)`` next."""

    __slots__ = ("arg", "state")
    __match_args__ = ("state", "arg")

    def __init__(self, state: Any, arg: Any) -> None:
        self.state = state
        self.arg = arg

    def __repr__(self) -> str:
        return f"Continue({self.state!r}, {self.arg!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Continue and self.state == other.state and self.arg == other.arg

    __hash__ = None  # type: ignore[assignment]
