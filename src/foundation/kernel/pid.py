"""Process identifiers and references: opaque, hashable, printable, unique per process.

A ``Pid`` is created once, by the runtime, when a process is spawned; every reference to the
process shares that one object, so equality and hashing are identity (the fastest there is).
It carries its node's identity from the start, so that scale-out later changes no API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from foundation.kernel.process import Process

__all__ = ["Pid", "Ref"]


class Pid:
    """The identity of one process, printed like ``<0.42>``; hashable, never reused."""

    __slots__ = ("_proc", "id", "node")

    def __init__(self, node: str, id: int, proc: Process | None) -> None:
        self.node = node
        self.id = id
        self._proc = proc

    def __repr__(self) -> str:
        return f"<0.{self.id}>"

    __str__ = __repr__

    def __copy__(self) -> Pid:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Pid:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pid is a live handle and cannot be pickled")


class Ref:
    """A unique reference (monitors, timers); printed like ``#Ref<0.7>``."""

    __slots__ = ("id", "node")

    def __init__(self, node: str, id: int) -> None:
        self.node = node
        self.id = id

    def __repr__(self) -> str:
        return f"#Ref<0.{self.id}>"

    def __copy__(self) -> Ref:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Ref:
        return self
