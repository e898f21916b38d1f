"""Supervisor: starts children in order, restarts them by strategy, stops them in reverse.

Strategies: ``one_for_one`` restarts only the child that failed; ``one_for_all`` stops every
other child (reverse start order) and restarts them all (start order); ``rest_for_one`` does that
for the failed child and the children started after it. In a group restart, temporary children
are stopped and forgotten, and every other child of the group is started again.

A child exit leads to a restart when its spec is ``permanent``, or ``transient`` and the reason is
abnormal (not ``normal``, ``shutdown`` or ``("shutdown", x)``); a ``temporary`` child is
forgotten. Each failure counts once against the intensity (``max_restarts`` within
``max_seconds``, default 3 in 5 s), however many children it restarts; past it the supervisor
stops its children and exits with reason ``shutdown``. A child that fails to start during a
restart is retried under the same strategy (through a message to itself, so other requests are
served between attempts), and each retry counts against the intensity.

Flags and specs are validated when ``start``/``start_link`` is called; the management functions
(``which_children``, ``count_children``, ``start_child``, ``terminate_child``, ``restart_child``,
``delete_child``) are calls to the supervisor and raise its answer's error in the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from foundation.errors import AlreadyPresent, ChildNotFound, ChildRunning, InvalidArgument
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

__all__ = ["Strategy", "Supervisor"]

log = logging.getLogger("foundation.kernel")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
_OPS = frozenset(
    {
        "which_children",
        "count_children",
        "start_child",
        "terminate_child",
        "restart_child",
        "delete_child",
    }
)


class _Child:
    __slots__ = ("pid", "restarts", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: Pid | None = None
        self.restarts = 0


@dataclass(frozen=True, slots=True)
class _TryAgain:
    id: Hashable


class _State:
    __slots__ = ("by_pid", "children", "max_restarts", "max_seconds", "restarts", "strategy")

    def __init__(self, strategy: str, max_restarts: int, max_seconds: float) -> None:
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.children: list[_Child] = []
        self.by_pid: dict[Pid, _Child] = {}
        self.restarts: list[float] = []

    def find(self, id: Hashable) -> _Child | None:
        for c in self.children:
            if c.spec.id == id:
                return c
        return None


def _check_children(children: Iterable[ChildSpec]) -> list[ChildSpec]:
    specs = list(children)
    seen: set[Hashable] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise InvalidArgument(
                f"invalid child spec: {spec!r} (build one with ChildSpec(...) or X.child_spec(...))"
            )
        if spec.id in seen:
            raise InvalidArgument(
                f"duplicate child id: {spec.id!r} (each child of a supervisor needs its own id)",
                context={"field": "id", "value": spec.id},
            )
        seen.add(spec.id)
    return specs


def _check_strategy(strategy: Any) -> None:
    if strategy not in _STRATEGIES:
        raise InvalidArgument(
            f"invalid strategy: {strategy!r} (one of {', '.join(_STRATEGIES)})",
            context={"field": "strategy", "value": strategy},
        )


class Supervisor(GenServer):
    """A process that starts, watches and restarts an ordered list of children."""

    trap_exit = True
    is_supervisor = True

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        children: Iterable[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: Any = None,
        timeout: float | None = None,
    ) -> Pid:
        """Start a supervisor linked to the caller; returns once every child has started."""
        args = cls._check(children, strategy, max_restarts, max_seconds)
        return await cls._start(args, name=name, timeout=timeout, max_mailbox=None, link=True)

    @classmethod
    async def start(  # type: ignore[override]
        cls,
        children: Iterable[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: Any = None,
        timeout: float | None = None,
    ) -> Pid:
        """Start an unlinked supervisor."""
        args = cls._check(children, strategy, max_restarts, max_seconds)
        return await cls._start(args, name=name, timeout=timeout, max_mailbox=None, link=False)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        children: Iterable[ChildSpec],
        *,
        id: Hashable = None,
        restart: Restart = "permanent",
        shutdown: Shutdown = "infinity",
        name: Any = None,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> ChildSpec:
        """A child spec that runs this supervisor under another one (type ``supervisor``)."""
        specs = _check_children(children)
        cls._check(specs, strategy, max_restarts, max_seconds)

        async def start() -> Pid:
            return await cls.start_link(
                specs,
                strategy=strategy,
                max_restarts=max_restarts,
                max_seconds=max_seconds,
                name=name,
            )

        if id is None:
            id = name if isinstance(name, str) else cls.__name__
        return ChildSpec(id=id, start=start, restart=restart, shutdown=shutdown, type="supervisor")

    @staticmethod
    def _check(
        children: Iterable[ChildSpec], strategy: Any, max_restarts: Any, max_seconds: Any
    ) -> tuple[list[ChildSpec], str, int, float]:
        _check_strategy(strategy)
        check_intensity(max_restarts, max_seconds)
        return _check_children(children), strategy, max_restarts, float(max_seconds)

    # -- management API (calls to the supervisor) --------------------------------------------

    @staticmethod
    async def which_children(sup: Any) -> list[ChildInfo]:
        """Every child, in start order: ``ChildInfo(id, pid or None, type, restart)``."""
        return unwrap(await call(sup, ("which_children",), timeout=None))  # type: ignore[no-any-return]

    @staticmethod
    async def count_children(sup: Any) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` counts."""
        return unwrap(await call(sup, ("count_children",), timeout=None))  # type: ignore[no-any-return]

    @staticmethod
    async def start_child(sup: Any, spec: ChildSpec) -> Pid | None:
        """Add and start a child; a failed start keeps no spec."""
        return unwrap(await call(sup, ("start_child", spec), timeout=None))  # type: ignore[no-any-return]

    @staticmethod
    async def terminate_child(sup: Any, id: Hashable) -> None:
        """Stop a child by id, keeping its spec (a temporary child's spec is dropped)."""
        unwrap(await call(sup, ("terminate_child", id), timeout=None))

    @staticmethod
    async def restart_child(sup: Any, id: Hashable) -> Pid | None:
        """Start again a child that is not running; returns its new pid."""
        return unwrap(await call(sup, ("restart_child", id), timeout=None))  # type: ignore[no-any-return]

    @staticmethod
    async def delete_child(sup: Any, id: Hashable) -> None:
        """Forget the spec of a child that is not running."""
        unwrap(await call(sup, ("delete_child", id), timeout=None))

    # -- callbacks -----------------------------------------------------------------------------

    async def init(self, args: tuple[list[ChildSpec], str, int, float]) -> _State:
        specs, strategy, max_restarts, max_seconds = args
        proc = PROCESS.get()
        assert proc is not None
        self._me: Process = proc
        state = _State(strategy, max_restarts, max_seconds)
        for spec in specs:
            child = _Child(spec)
            try:
                child.pid = await start_spec(proc, spec)
            except Exception as exc:
                log.error("supervisor %r: child %r failed to start: %s", self.pid, spec.id, exc)
                await self._terminate_all(state)
                raise start_error(spec.id, exc) from exc
            state.children.append(child)
            if child.pid is not None:
                state.by_pid[child.pid] = child
        return state

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        op = request[0] if isinstance(request, tuple) and request else None
        if op not in _OPS:
            return Reply(Failed(InvalidArgument(f"supervisor: unknown request {request!r}")), state)
        try:
            result = await getattr(self, f"_op_{op}")(state, *request[1:])
        except (AlreadyPresent, ChildNotFound, ChildRunning, InvalidArgument) as err:
            return Reply(Failed(err), state)
        return Reply(result, state)

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is Exit:
            child = state.by_pid.pop(msg.pid, None) if msg.pid is not None else None
            if child is None:
                return state  # a child we already stopped, or a stray link
            child.pid = None
            return await self._child_exited(state, child, msg.reason)
        if type(msg) is _TryAgain:
            child = state.find(msg.id)
            if child is None or child.pid is not None:
                return state
            return await self._restart(state, child)
        return await super().handle_info(msg, state)

    async def terminate(self, reason: Any, state: _State) -> None:
        await self._terminate_all(state)

    def format_status(self, state: _State) -> Any:
        return {
            "strategy": state.strategy,
            "children": [(c.spec.id, c.pid) for c in state.children],
            "restarts": len(state.restarts),
        }

    # -- restarts ---------------------------------------------------------------------------

    async def _child_exited(self, state: _State, child: _Child, reason: Any) -> Any:
        restart = child.spec.restart
        if restart == "temporary":
            state.children.remove(child)
            return state
        if restart == "transient" and is_normal_reason(reason):
            return state
        log.warning(
            "supervisor %r: child %r exited with reason %r; restarting (%s)",
            self.pid,
            child.spec.id,
            reason,
            state.strategy,
        )
        return await self._restart(state, child)

    async def _restart(self, state: _State, child: _Child) -> Any:
        rt = self._me.runtime
        state.restarts, allowed = add_restart(
            state.restarts, rt.clock.now(), state.max_restarts, state.max_seconds
        )
        if not allowed:
            log.error(
                "supervisor %r reached its restart intensity (%d in %ss); shutting down",
                self.pid,
                state.max_restarts,
                state.max_seconds,
            )
            if rt.event_handlers:
                rt.emit(("foundation", "supervisor", "escalate"), {}, {"pid": self.pid})
            return Stop("shutdown", state)
        if state.strategy == "one_for_one":
            group = [child]
        elif state.strategy == "one_for_all":
            group = list(state.children)
        else:
            group = state.children[state.children.index(child) :]
        for c in reversed(group):
            if c is not child and c.pid is not None:
                await self._terminate_one(state, c)
        for c in group:
            if c.spec.restart == "temporary" and c is not child:
                state.children.remove(c)
        for c in group:
            if c.spec.restart == "temporary" and c is not child:
                continue
            try:
                c.pid = await start_spec(self._me, c.spec)
            except Exception as exc:
                log.error("supervisor %r: restart of %r failed: %s", self.pid, c.spec.id, exc)
                self._me.deliver_system(_TryAgain(c.spec.id))
                return state
            c.restarts += 1
            if c.pid is not None:
                state.by_pid[c.pid] = c
                proc = c.pid._proc
                if proc is not None:
                    proc.restarts = c.restarts
            if rt.event_handlers:
                rt.emit(
                    ("foundation", "supervisor", "restart"),
                    {},
                    {"supervisor": self.pid, "id": c.spec.id, "pid": c.pid},
                )
        return state

    async def _terminate_one(self, state: _State, child: _Child) -> None:
        pid = child.pid
        if pid is None:
            return
        state.by_pid.pop(pid, None)
        child.pid = None
        await shutdown_child(self._me, pid, child.spec.shutdown)

    async def _terminate_all(self, state: _State) -> None:
        for child in reversed(state.children):
            await self._terminate_one(state, child)

    # -- operations ---------------------------------------------------------------------------

    async def _op_which_children(self, state: _State) -> list[ChildInfo]:
        return [ChildInfo(c.spec.id, c.pid, c.spec.type, c.spec.restart) for c in state.children]

    async def _op_count_children(self, state: _State) -> dict[str, int]:
        return {
            "specs": len(state.children),
            "active": sum(1 for c in state.children if c.pid is not None),
            "supervisors": sum(1 for c in state.children if c.spec.type == "supervisor"),
            "workers": sum(1 for c in state.children if c.spec.type == "worker"),
        }

    async def _op_start_child(self, state: _State, spec: ChildSpec) -> Any:
        _check_children([spec])
        existing = state.find(spec.id)
        if existing is not None:
            running = "running as " + repr(existing.pid) if existing.pid else "not running"
            raise AlreadyPresent(
                f"supervisor {self.pid!r} already has a child {spec.id!r} ({running}); "
                "use restart_child, or delete_child first",
                context={"id": spec.id, "pid": existing.pid},
            )
        child = _Child(spec)
        try:
            child.pid = await start_spec(self._me, spec)
        except Exception as exc:
            return Failed(start_error(spec.id, exc))
        state.children.append(child)
        if child.pid is not None:
            state.by_pid[child.pid] = child
        return child.pid

    def _get(self, state: _State, id: Hashable) -> _Child:
        child = state.find(id)
        if child is None:
            raise ChildNotFound(f"supervisor {self.pid!r} has no child {id!r}", context={"id": id})
        return child

    async def _op_terminate_child(self, state: _State, id: Hashable) -> None:
        child = self._get(state, id)
        await self._terminate_one(state, child)
        if child.spec.restart == "temporary":
            state.children.remove(child)

    async def _op_restart_child(self, state: _State, id: Hashable) -> Any:
        child = self._get(state, id)
        if child.pid is not None:
            raise ChildRunning(
                f"child {id!r} of supervisor {self.pid!r} is running as {child.pid!r}",
                context={"id": id, "pid": child.pid},
            )
        try:
            child.pid = await start_spec(self._me, child.spec)
        except Exception as exc:
            return Failed(start_error(id, exc))
        if child.pid is not None:
            state.by_pid[child.pid] = child
        return child.pid

    async def _op_delete_child(self, state: _State, id: Hashable) -> None:
        child = self._get(state, id)
        if child.pid is not None:
            raise ChildRunning(
                f"child {id!r} of supervisor {self.pid!r} is running as {child.pid!r}; "
                "terminate_child first",
                context={"id": id, "pid": child.pid},
            )
        state.children.remove(child)
