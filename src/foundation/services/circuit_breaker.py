"""CircuitBreaker: per-name circuits; the protected function always runs in the caller.

A circuit is **closed** (calls pass), **open** (calls fail at once with ``CircuitOpen``, which
is retryable and says when to come back, ``retry_after``) or **half_open** (after
``reset_timeout`` on the runtime clock: one trial call at a time; ``success_threshold``
successful trials close it, a failed one opens it again). ``failure_threshold`` failures within
``window`` seconds open a closed circuit. What a failure is, is configured: exception types
(``failures``), exception types that never count (``ignore``), and ``is_failure(result)`` for
returned error values (by default a returned exception instance is a failure: the seed counted
returned errors as successes). The seed's breaker ran the protected function inside its own
server, so one slow service stalled every caller; here the server only answers questions and
records outcomes. A closed circuit costs the caller a dict read (the server publishes each
circuit's state in the runtime) and a cast only on failure. Every transition is a telemetry
event ``("foundation", "circuit_breaker", "state_change")`` and a ``("circuit", name, state)``
message to each process registered with ``listen`` (the buffered delivery drains on it).
"""

from __future__ import annotations

import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from foundation.errors import CircuitOpen, FoundationError, InvalidArgument, NotFound
from foundation.kernel.api import current_pid, monitor, send
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.gen_server import GenServer, call, cast
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap

__all__ = [
    "BREAKER",
    "BreakerConfig",
    "CircuitBreaker",
    "CircuitState",
]

BREAKER = "circuit_breaker"
"""The default registered name of the circuit breaker service."""

CircuitState = Literal["closed", "open", "half_open"]
T = TypeVar("T")


@dataclass(frozen=True)
class BreakerConfig:
    """How one circuit trips and recovers; see the module docstring."""

    failure_threshold: int = 5
    window: float = 60.0
    reset_timeout: float = 30.0
    success_threshold: int = 1
    failures: tuple[type[BaseException], ...] = (Exception,)
    ignore: tuple[type[BaseException], ...] = ()
    is_failure: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "success_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"invalid {name}: {value!r} (an int >= 1)")
        for name in ("window", "reset_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument(f"invalid {name}: {value!r} (seconds > 0)")

    def counts(self, exc: BaseException) -> bool:
        """Whether this exception is a failure of the service."""
        return isinstance(exc, self.failures) and not isinstance(exc, self.ignore)

    def failed(self, result: Any) -> bool:
        """Whether this returned value is a failure of the service."""
        if self.is_failure is not None:
            return bool(self.is_failure(result))
        return isinstance(result, BaseException)


@dataclass
class _Circuit:
    config: BreakerConfig
    state: CircuitState = "closed"
    failures: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0
    successes: int = 0
    trial: Pid | None = None  # the caller running the half-open trial
    trial_ref: Any = None


class CircuitBreaker(GenServer):
    """The circuit table; callers use the static functions, with the server name first."""

    @classmethod
    async def start_link(cls, args: Any = None, *, name: Any = BREAKER, **kw: Any) -> Pid:
        """Start the service linked to the caller, registered as ``name``."""
        return await super().start_link(args, name=name, **kw)

    @classmethod
    def child_spec(cls, *, name: str = BREAKER, **kw: Any) -> Any:  # type: ignore[override]
        """A child spec for the breaker service under ``name``."""
        return super().child_spec(None, name=name, **kw)

    # -- client API ----------------------------------------------------------------------------

    @staticmethod
    async def configure(
        circuit: str, config: BreakerConfig | None = None, *, breaker: Any = BREAKER, **kw: Any
    ) -> None:
        """Create or reconfigure ``circuit`` (``BreakerConfig`` fields as keywords)."""
        cfg = config if config is not None else BreakerConfig(**kw)
        unwrap(await call(breaker, ("configure", circuit, cfg)))

    @staticmethod
    async def call(
        circuit: str,
        fn: Callable[..., Awaitable[T] | T],
        *args: Any,
        breaker: Any = BREAKER,
    ) -> T:
        """Run ``fn(*args)`` in the caller if the circuit lets it; its result, or its error.

        Raises ``CircuitOpen`` (retryable, with ``retry_after``) when the circuit refuses.
        """
        rt = current_runtime()
        table: dict[str, tuple[CircuitState, BreakerConfig]] = rt.extensions.get(_key(breaker), {})
        published = table.get(circuit)
        if published is None:
            raise NotFound(f"no circuit {circuit!r}: configure it first (CircuitBreaker.configure)")
        state, cfg = published
        trial = False
        if state != "closed":
            me = current_process()
            unwrap(await call(breaker, ("permit", circuit, me.pid if me is not None else None)))
            trial = True
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            if isinstance(exc, Exception) and cfg.counts(exc):
                _report(breaker, circuit, False, trial)
            elif trial:
                _report(breaker, circuit, None, trial)  # not an outcome: free the trial
            raise
        _report(breaker, circuit, not cfg.failed(result), trial)
        return result

    @staticmethod
    async def state(circuit: str, *, breaker: Any = BREAKER) -> CircuitState:
        """The circuit's state now: ``closed``, ``open`` or ``half_open``."""
        return unwrap(await call(breaker, ("state", circuit)))  # type: ignore[no-any-return]

    @staticmethod
    async def reset(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Close the circuit by hand (listeners drain their buffers as on any close)."""
        unwrap(await call(breaker, ("force", circuit, "closed")))

    @staticmethod
    async def trip(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Open the circuit by hand (the synchronous test twin of enough failures)."""
        unwrap(await call(breaker, ("force", circuit, "open")))

    @staticmethod
    async def record_failure_sync(circuit: str, *, breaker: Any = BREAKER) -> CircuitState:
        """Record one failure and return the state after it (a test twin of a failed call)."""
        unwrap(await call(breaker, ("outcome", circuit, False, False)))
        return await CircuitBreaker.state(circuit, breaker=breaker)

    @staticmethod
    async def listen(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Send the calling process ``("circuit", circuit, state)`` on each transition."""
        unwrap(await call(breaker, ("listen", circuit, current_pid())))

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: Any) -> dict[str, _Circuit]:
        self._table: dict[str, tuple[CircuitState, BreakerConfig]] = {}
        self._listeners: dict[str, set[Pid]] = {}
        rt = current_runtime()
        # Published in the runtime under the pid and every name, for the callers' fast path.
        names = [name for name, proc in rt.names.items() if proc.pid == self.pid]
        for key in (_key(self.pid), *map(_key, names)):
            rt.extensions[key] = self._table
        return {}

    async def terminate(self, reason: Any, state: Any) -> None:
        rt = current_runtime()
        for key in [k for k, v in rt.extensions.items() if v is self._table]:
            del rt.extensions[key]

    async def handle_call(self, request: Any, caller: From, circuits: dict[str, _Circuit]) -> Any:
        kind, name = request[0], request[1]
        if kind == "configure":
            old = circuits.get(name)
            circuits[name] = _Circuit(request[2]) if old is None else _reconfigured(old, request[2])
            self._publish(name, circuits[name])
            return Reply(None, circuits)
        circuit = circuits.get(name)
        if circuit is None:
            return Reply(Failed(NotFound(f"no circuit {name!r}: configure it first")), circuits)
        now = current_runtime().clock.now()
        self._maybe_half_open(name, circuit, now)
        if kind == "state":
            return Reply(circuit.state, circuits)
        if kind == "permit":
            return Reply(self._permit(name, circuit, request[2], now), circuits)
        if kind == "outcome":
            self._outcome(name, circuit, request[2], request[3], now)
            return Reply(None, circuits)
        if kind == "force":
            self._transition(name, circuit, request[2], now)
            return Reply(None, circuits)
        if kind == "listen":
            self._listeners.setdefault(name, set()).add(request[2])
            monitor(request[2])
            return Reply(None, circuits)
        return await super().handle_call(request, caller, circuits)

    async def handle_cast(self, request: Any, circuits: dict[str, _Circuit]) -> Any:
        if request[0] == "outcome" and request[1] in circuits:
            now = current_runtime().clock.now()
            circuit = circuits[request[1]]
            self._maybe_half_open(request[1], circuit, now)
            self._outcome(request[1], circuit, request[2], request[3], now)
            return circuits
        return await super().handle_cast(request, circuits)

    async def handle_info(self, msg: Any, circuits: dict[str, _Circuit]) -> Any:
        if type(msg) is Down:
            for listeners in self._listeners.values():
                listeners.discard(msg.pid)
            for name, circuit in circuits.items():
                if circuit.trial is not None and circuit.trial == msg.pid:
                    circuit.trial = None  # the trial caller died: the next one may try
                    self._publish(name, circuit)
            return circuits
        return await super().handle_info(msg, circuits)

    def _permit(self, name: str, circuit: _Circuit, who: Pid | None, now: float) -> Any:
        if circuit.state == "closed":
            return None
        if circuit.state == "half_open" and circuit.trial is None:
            circuit.trial = who
            if who is not None:
                monitor(who)
            return None
        wait = (
            max(circuit.opened_at + circuit.config.reset_timeout - now, 0.0)
            if circuit.state == "open"
            else min(circuit.config.reset_timeout, 0.05)  # a trial is running
        )
        return Failed(
            CircuitOpen(
                f"circuit {name!r} is {circuit.state.replace('_', '-')}; retry in {wait:.3f}s",
                retry_after=wait,
                context={"circuit": name, "state": circuit.state},
            )
        )

    def _outcome(
        self, name: str, circuit: _Circuit, ok: bool | None, trial: bool, now: float
    ) -> None:
        if trial:
            circuit.trial = None
        if ok is None:
            return
        if circuit.state == "half_open":
            if not ok:
                self._transition(name, circuit, "open", now)
                return
            circuit.successes += 1
            if circuit.successes >= circuit.config.success_threshold:
                self._transition(name, circuit, "closed", now)
            return
        if circuit.state == "closed" and not ok:
            circuit.failures.append(now)
            while circuit.failures and circuit.failures[0] <= now - circuit.config.window:
                circuit.failures.popleft()
            if len(circuit.failures) >= circuit.config.failure_threshold:
                self._transition(name, circuit, "open", now)

    def _maybe_half_open(self, name: str, circuit: _Circuit, now: float) -> None:
        if circuit.state == "open" and now >= circuit.opened_at + circuit.config.reset_timeout:
            self._transition(name, circuit, "half_open", now)

    def _transition(self, name: str, circuit: _Circuit, to: CircuitState, now: float) -> None:
        before = circuit.state
        circuit.state = to
        circuit.failures.clear()
        circuit.successes = 0
        circuit.trial = None
        if to == "open":
            circuit.opened_at = now
        self._publish(name, circuit)
        if before == to:
            return
        rt = current_runtime()
        if rt.event_handlers:
            meta = {"name": name, "from": before, "to": to}
            rt.emit(("foundation", "circuit_breaker", "state_change"), {}, meta)
        for pid in list(self._listeners.get(name, ())):
            try:
                send(pid, ("circuit", name, to))
            except FoundationError:
                self._listeners[name].discard(pid)

    def _publish(self, name: str, circuit: _Circuit) -> None:
        # An open circuit publishes "open" until a caller asks: the server then decides
        # whether the reset timeout has passed (half-open) and who gets the one trial.
        self._table[name] = (circuit.state, circuit.config)


def _reconfigured(old: _Circuit, config: BreakerConfig) -> _Circuit:
    old.config = config
    return old


def _key(breaker: Any) -> str:
    return f"circuit_breaker:{breaker!r}" if not isinstance(breaker, str) else f"cb:{breaker}"


def _report(breaker: Any, circuit: str, ok: bool | None, trial: bool) -> None:
    """Tell the server an outcome: always for a trial, only failures for a closed circuit."""
    if ok is True and not trial:
        return
    with contextlib.suppress(FoundationError):  # no breaker any more: nothing left to protect
        cast(breaker, ("outcome", circuit, ok, trial))
