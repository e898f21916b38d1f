"""DynamicSupervisor: a one_for_one supervisor whose children are all started at run time.

``start_child(sup, spec)`` starts a child and returns its pid; ``terminate_child(sup, pid)``
stops one. Restart types and intensity work as for ``Supervisor`` (a restarted child gets a new
pid); ``max_children`` bounds how many run at once (``MaxChildren`` past it). Children stop in
reverse start order when the supervisor stops.
"""

from __future__ import annotations

import logging
from typing import Any

from foundation.errors import ChildNotFound, InvalidArgument, MaxChildren
from foundation.kernel.child_spec import ChildInfo, ChildSpec, Restart, Shutdown
from foundation.kernel.context import PROCESS
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Exit, Reply, Stop, is_normal_reason
from foundation.kernel.pid import Pid
from foundation.kernel.process import From, Process
from foundation.kernel.supervision import (
    Failed,
    add_restart,
    check_intensity,
    shutdown_child,
    start_error,
    start_spec,
    unwrap,
)

__all__ = ["DynamicSupervisor"]

log = logging.getLogger("foundation.kernel")

_OPS = frozenset({"which_children", "count_children", "start_child", "terminate_child"})


class _Retry:
    __slots__ = ("spec",)

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec


class _State:
    __slots__ = ("children", "max_children", "max_restarts", "max_seconds", "restarts")

    def __init__(self, max_children: int | None, max_restarts: int, max_seconds: float) -> None:
        self.children: dict[Pid, ChildSpec] = {}
        self.max_children = max_children
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.restarts: list[float] = []


def _check_max_children(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidArgument(
            f"invalid max_children: {value!r} (an int >= 0, or None for no limit)",
            context={"field": "max_children", "value": value},
        )


class DynamicSupervisor(GenServer):
    """Supervises children added at run time with ``start_child``."""

    trap_exit = True
    is_supervisor = True

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: Any = None,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        strategy: str = "one_for_one",
    ) -> Pid:
        """Start a dynamic supervisor linked to the caller."""
        args = cls._check(max_children, max_restarts, max_seconds, strategy)
        return await cls._start(args, name=name, timeout=None, max_mailbox=None, link=True)

    @classmethod
    async def start(  # type: ignore[override]
        cls,
        *,
        name: Any = None,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        strategy: str = "one_for_one",
    ) -> Pid:
        """Start an unlinked dynamic supervisor."""
        args = cls._check(max_children, max_restarts, max_seconds, strategy)
        return await cls._start(args, name=name, timeout=None, max_mailbox=None, link=False)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        *,
        id: Any = None,
        name: Any = None,
        restart: Restart = "permanent",
        shutdown: Shutdown = "infinity",
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> ChildSpec:
        """A child spec that runs this dynamic supervisor under another supervisor."""
        cls._check(max_children, max_restarts, max_seconds, "one_for_one")

        async def start() -> Pid:
            return await cls.start_link(
                name=name,
                max_children=max_children,
                max_restarts=max_restarts,
                max_seconds=max_seconds,
            )

        if id is None:
            id = name if isinstance(name, str) else cls.__name__
        return ChildSpec(id=id, start=start, restart=restart, shutdown=shutdown, type="supervisor")

    @staticmethod
    def _check(
        max_children: Any, max_restarts: Any, max_seconds: Any, strategy: Any
    ) -> tuple[int | None, int, float]:
        if strategy != "one_for_one":
            raise InvalidArgument(
                f"invalid strategy for DynamicSupervisor: {strategy!r} (only one_for_one)",
                context={"field": "strategy", "value": strategy},
            )
        _check_max_children(max_children)
        check_intensity(max_restarts, max_seconds)
        return max_children, max_restarts, float(max_seconds)

    # -- management API --------------------------------------------------------------------

    @staticmethod
    async def start_child(sup: Any, spec: ChildSpec) -> Pid | None:
        """Start a child under ``sup``; returns its pid (None if its start ignored it)."""
        return unwrap(await call(sup, ("start_child", spec), timeout=None))  # type: ignore[no-any-return]

    @staticmethod
    async def terminate_child(sup: Any, pid: Pid) -> None:
        """Stop the child ``pid`` as its spec says; ``ChildNotFound`` if it is not a child."""
        unwrap(await call(sup, ("terminate_child", pid), timeout=None))

    @staticmethod
    async def which_children(sup: Any) -> list[ChildInfo]:
        """Every running child, in start order, with ``id=None``."""
        return unwrap(await call(sup, ("which_children",), timeout=None))  # type: ignore[no-any-return]

    @staticmethod
    async def count_children(sup: Any) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` counts."""
        return unwrap(await call(sup, ("count_children",), timeout=None))  # type: ignore[no-any-return]

    # -- callbacks ---------------------------------------------------------------------------

    async def init(self, args: tuple[int | None, int, float]) -> _State:
        proc = PROCESS.get()
        assert proc is not None
        self._me: Process = proc
        return _State(*args)

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        op = request[0] if isinstance(request, tuple) and request else None
        if op not in _OPS:
            return Reply(
                Failed(InvalidArgument(f"dynamic supervisor: unknown request {request!r}")), state
            )
        if op == "which_children":
            infos = [ChildInfo(None, pid, s.type, s.restart) for pid, s in state.children.items()]
            return Reply(infos, state)
        if op == "count_children":
            specs = list(state.children.values())
            counts = {
                "specs": len(specs),
                "active": len(specs),
                "supervisors": sum(1 for s in specs if s.type == "supervisor"),
                "workers": sum(1 for s in specs if s.type == "worker"),
            }
            return Reply(counts, state)
        if op == "start_child":
            return Reply(await self._start_child(state, request[1]), state)
        pid = request[1]
        spec = state.children.pop(pid, None) if type(pid) is Pid else None
        if spec is None:
            err = ChildNotFound(f"{pid!r} is not a child of {self.pid!r}", context={"pid": pid})
            return Reply(Failed(err), state)
        await shutdown_child(self._me, pid, spec.shutdown)
        return Reply(None, state)

    async def _start_child(self, state: _State, spec: Any) -> Any:
        if not isinstance(spec, ChildSpec):
            return Failed(InvalidArgument(f"invalid child spec: {spec!r}"))
        if state.max_children is not None and len(state.children) >= state.max_children:
            return Failed(
                MaxChildren(
                    f"{self.pid!r} already runs max_children={state.max_children} children",
                    context={"max_children": state.max_children},
                )
            )
        try:
            pid = await start_spec(self._me, spec)
        except Exception as exc:
            return Failed(start_error(spec.id, exc))
        if pid is not None:
            state.children[pid] = spec
        return pid

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is Exit:
            spec = state.children.pop(msg.pid, None) if msg.pid is not None else None
            if spec is None:
                return state
            if spec.restart == "temporary" or (
                spec.restart == "transient" and is_normal_reason(msg.reason)
            ):
                return state
            log.warning(
                "dynamic supervisor %r: child %r exited with reason %r; restarting",
                self.pid,
                spec.id,
                msg.reason,
            )
            rt = self._me.runtime
            if rt.event_handlers:
                meta = {"supervisor": self.pid, "id": spec.id, "reason": msg.reason}
                rt.emit(("foundation", "supervisor", "restart"), {}, meta)
            return await self._restart(state, spec)
        if type(msg) is _Retry:
            return await self._restart(state, msg.spec)
        return await super().handle_info(msg, state)

    async def _restart(self, state: _State, spec: ChildSpec) -> Any:
        rt = self._me.runtime
        state.restarts, allowed = add_restart(
            state.restarts, rt.clock.now(), state.max_restarts, state.max_seconds
        )
        if not allowed:
            log.error(
                "dynamic supervisor %r reached its restart intensity; shutting down", self.pid
            )
            if rt.event_handlers:
                rt.emit(("foundation", "supervisor", "escalate"), {}, {"pid": self.pid})
            return Stop("shutdown", state)
        try:
            pid = await start_spec(self._me, spec)
        except Exception as exc:
            log.error("dynamic supervisor %r: restart of %r failed: %s", self.pid, spec.id, exc)
            self._me.deliver_system(_Retry(spec))
            return state
        if pid is not None:
            state.children[pid] = spec
        return state

    async def terminate(self, reason: Any, state: _State) -> None:
        for pid, spec in reversed(list(state.children.items())):
            del state.children[pid]
            await shutdown_child(self._me, pid, spec.shutdown)
