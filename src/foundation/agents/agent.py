"""Agent: a persistent server whose behaviour is a set of validated actions.

An agent declares ``State`` (a pydantic model), ``capabilities`` and ``@action`` methods. ``await
run(agent, "action", params)`` validates the params in the agent (a bad request is a clear
``ValidationError`` and the agent keeps serving), runs the action in the agent's process,
makes the new state durable, then answers. An action that raises a ``FoundationError`` answers
with it and keeps its state; any other exception is a bug: ``on_error`` runs, the agent crashes
and its supervisor restarts it from its last durable state. Each action is a telemetry span
(``("foundation", "agent", "action", "start"|"stop"|"exception")``).

Agents register themselves in the agent registry (``find_agents(capability=..., health=...)``)
and may subscribe to signal types on the signal bus (``signals = ("task.**",)``, delivered to
``on_signal``). Override ``initial_state(args)`` for the state of a new id and ``on_start`` for
work on every start (after a restart too). An agent monitors the registry and the bus it joined:
if either exits (a restarted registry or bus starts empty), the agent crashes on purpose and its
supervisor restarts it from its durable state, so it registers and subscribes again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from foundation.agents.action import ActionSpec, collect_actions, validation_error
from foundation.errors import FoundationError, InvalidArgument, NoProcess, UnknownAction
from foundation.kernel.api import monitor
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import call, cast
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.registry import Registry
from foundation.persistence.server import PersistentServer
from foundation.services.signal_bus import Signal, SignalBus

__all__ = [
    "AGENT_REGISTRY",
    "Agent",
    "AgentInfo",
    "Health",
    "find_agents",
    "run",
    "set_health",
]

AGENT_REGISTRY = "foundation.agent_registry"
"""The registered name of the agent registry (see ``AgentSupervisor.child_specs``)."""

Health = Literal["healthy", "degraded", "unhealthy"]
_HEALTH = ("healthy", "degraded", "unhealthy")


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A registered agent: its id, pid, type, capabilities and health."""

    id: str
    pid: Pid
    type: str
    capabilities: tuple[str, ...]
    health: str


@dataclass(frozen=True, slots=True)
class _Run:
    action: str
    params: Any


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    value: Any


class Agent(PersistentServer):
    """Subclass with ``State``, ``capabilities`` and ``@action`` methods; see the module doc."""

    capabilities: ClassVar[tuple[str, ...]] = ()
    signals: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[str] = AGENT_REGISTRY
    signal_bus: ClassVar[str] = "signal_bus"
    actions: ClassVar[dict[str, ActionSpec]] = {}

    agent_id: str
    _joined: dict[Any, str] | None = None  # monitor ref -> what it watches (registry, bus)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.actions = collect_actions(cls)
        if not isinstance(cls.capabilities, tuple):
            raise InvalidArgument(f"{cls.__name__}.capabilities must be a tuple of str")

    # -- hooks ---------------------------------------------------------------------------------

    async def initial_state(self, args: Any) -> Any:
        """The state of an agent id seen for the first time (default: the model's defaults)."""
        return self.State()

    async def on_start(self, state: Any) -> Any:
        """Runs on every start, new or restored, after registration; returns the state."""
        return state

    async def on_before_action(self, action: str, params: BaseModel, state: Any) -> None:
        """Runs before each action; raise a ``FoundationError`` to refuse it."""

    async def on_after_action(self, action: str, params: BaseModel, result: Any, state: Any) -> Any:
        """Runs after each successful action; returns the state to keep."""
        return state

    async def on_error(self, action: str, error: BaseException, state: Any) -> None:
        """Runs when an action raised an unexpected error, just before the agent crashes."""

    async def on_signal(self, signal: Signal, state: Any) -> Any:
        """Handles a signal from the bus; returns the new state."""
        return state

    # -- lifecycle -----------------------------------------------------------------------------

    async def init(self, args: Any) -> Any:
        return await self._started(await self.initial_state(args))

    async def on_after_load(self, state: Any) -> Any:
        return await self._started(state)

    async def _started(self, state: Any) -> Any:
        parts = self.key.split("/", 2)
        self.agent_id = parts[2] if len(parts) == 3 and parts[0] == "agent" else self.key
        meta = {
            "capabilities": list(self.capabilities),
            "health": "healthy",
            "type": type(self).__name__,
        }
        try:
            await Registry.register(self.registry, self.agent_id, meta)
        except NoProcess as exc:
            raise NoProcess(
                f"agent {self.agent_id!r} cannot register: no agent registry named "
                f"{self.registry!r} is running (start AgentSupervisor.child_specs() first)",
                context={"registry": self.registry},
            ) from exc
        self._joined = {}
        self._watch("registry", self.registry)
        for pattern in self.signals:
            await SignalBus.subscribe(self.signal_bus, pattern)
        if self.signals:
            self._watch("signal bus", self.signal_bus)
        return await self.on_start(state)

    def _watch(self, what: str, name: Any) -> None:
        """Monitor the registry or bus this agent just joined (see ``handle_info``)."""
        proc = current_runtime().resolve(name)
        if proc is not None and self._joined is not None:
            self._joined[monitor(proc.pid)] = f"{what} {name!r}"

    # -- messages ------------------------------------------------------------------------------

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        if type(request) is _Run:
            return await self._run(request, state)
        if isinstance(request, tuple) and request[:1] == ("__health__",):
            await self._set_health(request[1])
            return Reply(None, state)
        return await super().handle_call(request, caller, state)

    async def handle_cast(self, request: Any, state: Any) -> Any:
        if isinstance(request, tuple) and request[:1] == ("__health__",):
            await self._set_health(request[1])
            return state
        return await super().handle_cast(request, state)

    async def _set_health(self, health: str) -> None:
        meta = {"capabilities": list(self.capabilities), "health": health,
                "type": type(self).__name__}  # fmt: skip
        await Registry.update_metadata(self.registry, self.agent_id, meta)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is Signal:
            return await self.on_signal(msg, state)
        if type(msg) is Down and self._joined and msg.ref in self._joined:
            # Its successor knows nothing of this agent: crash, so that the restart joins it.
            raise NoProcess(
                f"agent {self.agent_id!r}: its {self._joined[msg.ref]} exited "
                f"({msg.reason!r}); restarting to join its successor",
                context={"agent": self.agent_id},
            )
        return await super().handle_info(msg, state)

    async def _run(self, request: _Run, state: Any) -> Reply:
        spec = self.actions.get(request.action)
        if spec is None:
            err = UnknownAction(
                f"agent {self.agent_id!r} ({type(self).__name__}) has no action "
                f"{request.action!r}; it has {sorted(self.actions)}",
                context={"agent": self.agent_id, "action": request.action},
            )
            return Reply(_Outcome(False, err), state)
        raw = request.params
        try:
            params = raw if type(raw) is spec.params else spec.params.model_validate(raw or {})
        except PydanticValidationError as exc:
            bad = validation_error(f"params for {self.agent_id!r}.{spec.name}", exc)
            return Reply(_Outcome(False, bad), state)
        rt = current_runtime()
        meta = {"agent": self.agent_id, "type": type(self).__name__, "action": spec.name}
        emitting = bool(rt.event_handlers)
        start = time.perf_counter()
        if emitting:
            rt.emit(("foundation", "agent", "action", "start"), {"system_time": time.time()}, meta)
        try:
            await self.on_before_action(spec.name, params, state)
            if spec.takes_params:
                result = await spec.fn(self, params, state)
            else:
                result = await spec.fn(self, state)
            value, new_state = _split(spec, self, result)
            new_state = await self.on_after_action(spec.name, params, value, new_state)
        except FoundationError as err:
            if emitting:
                rt.emit(
                    ("foundation", "agent", "action", "exception"),
                    {"duration": time.perf_counter() - start},
                    {**meta, "kind": "error", "reason": err},
                )
            return Reply(_Outcome(False, err), state)
        except Exception as exc:
            if emitting:
                rt.emit(
                    ("foundation", "agent", "action", "exception"),
                    {"duration": time.perf_counter() - start},
                    {**meta, "kind": "crash", "reason": exc},
                )
            await self.on_error(spec.name, exc, state)
            raise
        if emitting:
            rt.emit(
                ("foundation", "agent", "action", "stop"),
                {"duration": time.perf_counter() - start},
                meta,
            )
        return Reply(_Outcome(True, value), new_state)


def _split(spec: ActionSpec, agent: Agent, result: Any) -> tuple[Any, Any]:
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1]
    raise InvalidArgument(
        f"action {type(agent).__name__}.{spec.name} returned {type(result).__name__}; "
        "an action returns (result, new_state)"
    )


async def run(agent: Any, action: str, params: Any = None, *, timeout: float | None = 5.0) -> Any:
    """Run ``action`` on ``agent`` (id, name or pid) with ``params``; its result, once durable.

    Raises ``UnknownAction``, ``ValidationError``, the action's own ``FoundationError``, or a
    call error (``NoProcess``, ``CallTimeout``, ``ProcessExited`` if the agent crashed on it).
    """
    if not isinstance(action, str):
        raise InvalidArgument(f"run: the action must be a str, not {action!r}")
    if isinstance(params, BaseModel):
        pass
    elif params is not None and not isinstance(params, dict):
        raise InvalidArgument(
            f"run {action!r}: params must be a dict or a pydantic model, "
            f"not {type(params).__name__}"
        )
    outcome = await call(agent, _Run(action, params), timeout)
    if type(outcome) is not _Outcome:
        raise InvalidArgument(
            f"run {action!r}: {agent!r} is not an agent (it answered {outcome!r})"
        )
    if outcome.ok:
        return outcome.value
    raise outcome.value


async def set_health(
    agent: Any, health: Health, *, timeout: float | None = 5.0, wait: bool = True
) -> None:
    """Record an agent's health in the registry (what ``find_agents(health=...)`` filters on).

    The agent records it itself (a registry entry is its owner's); ``wait=False`` queues the
    change without waiting, for an agent too busy to answer now.
    """
    if health not in _HEALTH:
        raise InvalidArgument(f"invalid health {health!r}: one of {list(_HEALTH)}")
    if wait:
        await call(agent, ("__health__", health), timeout)
    else:
        cast(agent, ("__health__", health))


def find_agents(
    capability: str | None = None,
    *,
    health: str | None = None,
    registry: str = AGENT_REGISTRY,
) -> list[AgentInfo]:
    """Live agents offering ``capability`` (and with ``health``), in registration order."""
    filters: dict[str, Any] = {}
    if capability is not None:
        filters["capabilities"] = capability
    if health is not None:
        if health not in _HEALTH:
            raise InvalidArgument(f"invalid health {health!r}: one of {list(_HEALTH)}")
        filters["health"] = health
    return [
        AgentInfo(
            id=str(key),
            pid=pid,
            type=meta["type"],
            capabilities=tuple(meta["capabilities"]),
            health=meta["health"],
        )
        for key, pid, meta in Registry.select(registry, **filters)
    ]
