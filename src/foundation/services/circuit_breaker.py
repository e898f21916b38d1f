"""CircuitBreaker: per-name circuits; the protected function always runs in the caller.

A circuit is **closed** (calls pass), **open** (calls fail at once with ``CircuitOpen``, which
is retryable and says when to come back, ``retry_after``) or **half_open** (``reset_timeout``
after it opened, on the runtime clock: one trial call at a time, every other caller gets
``CircuitOpen``; ``success_threshold`` successful trials close it, a failed one opens it
again). ``failure_threshold`` failures within ``window`` seconds open a closed circuit. What a
failure is, is configured: exception types (``failures``), exception types that never count
(``ignore``), and ``is_failure(result)`` for returned error values (by default a returned
exception or ``Failed`` counts: the seed counted returned errors as successes).

The seed's breaker ran the protected function inside its own server, so one slow service
stalled every caller. Here ``CircuitBreaker.call`` runs it in the caller: the server publishes
each circuit's state in the runtime (a snapshot per breaker name), so a closed circuit costs the
caller a dict read and a cast only on failure, and an open one refuses without a round trip.
Only a half-open circuit asks the server, which hands out the one trial. Each transition starts
a new generation, and an outcome reported for an older one is ignored (a call let through while
closed cannot close or reopen a later half-open circuit). Every transition is a telemetry event
``("foundation", "circuit_breaker", "state_change")`` and a ``("circuit", name, state)`` message
to each process registered with ``listen`` (the buffered delivery drains on it). Configurations
and listeners outlive a restart of the server (kept in the runtime under its name); the
circuits restart closed.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import CoroutineType
from typing import Any, TypeVar, overload

from foundation.errors import CircuitOpen, FoundationError, InvalidArgument, NoProcess, NotFound
from foundation.kernel.api import current_pid, demonitor, monitor, send
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.gen_server import GenServer, call, cast
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.kernel.timers import TimerRef, cancel_timer, send_after
from foundation.services.breaker_config import BreakerConfig, CircuitState

__all__ = [
    "BREAKER",
    "BreakerConfig",
    "CircuitBreaker",
    "CircuitState",
]

BREAKER = "circuit_breaker"
"""The default registered name of the circuit breaker service."""

T = TypeVar("T")
_BREAKERS = "circuit_breakers"  # runtime extension: breaker name or pid -> _Shared
_ERRORS = (BaseException, Failed)  # returned values that are failures by default
_Entry = tuple[CircuitState, BreakerConfig, int, float]  # state, config, generation, open until


class _Shared:
    """What one breaker name keeps in the runtime: the callers' snapshot, and what outlives a
    restart of its server (configurations, listeners, the generation counter)."""

    __slots__ = ("configs", "gen", "last", "listeners", "table")

    def __init__(self) -> None:
        self.table: dict[str, _Entry] = {}
        self.configs: dict[str, BreakerConfig] = {}
        self.listeners: dict[str, set[Pid]] = {}
        self.gen = 0
        self.last: dict[str, CircuitState] = {}  # the states when the last server stopped


@dataclass
class _Circuit:
    config: BreakerConfig
    gen: int
    state: CircuitState = "closed"
    failures: deque[float] = field(default_factory=deque)
    until: float = 0.0  # when an open circuit goes half-open
    successes: int = 0
    trial: bool = False  # a half-open trial call is running
    trial_ref: Ref | None = None  # the monitor on its caller (None: not a process)
    timer: TimerRef | None = None


class CircuitBreaker(GenServer):
    """The circuit table; callers use the static functions, with the server name last."""

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
        if not isinstance(circuit, str) or not circuit:
            raise InvalidArgument(f"invalid circuit name: {circuit!r} (a non-empty str)")
        cfg = config if config is not None else BreakerConfig(**kw)
        unwrap(await call(breaker, ("configure", circuit, cfg)))

    @overload
    @staticmethod
    async def call(
        circuit: str, fn: Callable[..., Awaitable[T]], *args: Any, breaker: Any = ...
    ) -> T: ...

    @overload
    @staticmethod
    async def call(circuit: str, fn: Callable[..., T], *args: Any, breaker: Any = ...) -> T: ...

    @staticmethod
    async def call(
        circuit: str,
        fn: Callable[..., Any],
        *args: Any,
        breaker: Any = BREAKER,
    ) -> Any:
        """Run ``fn(*args)`` in the caller if the circuit lets it; its result, or its error.

        Raises ``CircuitOpen`` (retryable, with ``retry_after``) when the circuit refuses.
        """
        breakers = current_runtime().extensions.get(_BREAKERS)
        shared: _Shared | None = breakers.get(breaker) if breakers is not None else None
        entry = shared.table.get(circuit) if shared is not None else None
        if entry is None:
            raise _missing(breaker, circuit, shared)
        state, cfg, gen, until = entry
        trial = False
        if state != "closed":
            if state == "open" and (wait := until - current_runtime().clock.now()) > 0:
                raise _open_error(circuit, "open", wait)  # refused here: no round trip
            gen, trial = await _permit(breaker, circuit)
        try:
            result = fn(*args)
            if type(result) is CoroutineType or inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            if isinstance(exc, Exception) and cfg.counts(exc):
                _report(breaker, circuit, False, gen, trial)
            elif trial:
                _report(breaker, circuit, None, gen, trial)  # not an outcome: free the trial
            raise
        check = cfg.is_failure
        if isinstance(result, _ERRORS) if check is None else check(result):
            _report(breaker, circuit, False, gen, trial)
        elif trial:
            _report(breaker, circuit, True, gen, trial)
        return result

    @staticmethod
    async def state(circuit: str, *, breaker: Any = BREAKER) -> CircuitState:
        """The circuit's state now: ``closed``, ``open`` or ``half_open``."""
        return unwrap(await call(breaker, ("state", circuit)))  # type: ignore[no-any-return]

    @staticmethod
    def peek(circuit: str, *, breaker: Any = BREAKER) -> CircuitState | None:
        """The circuit's last published state without a round trip (None: not configured or
        no server); it lags the server by the outcomes still in its mailbox."""
        entry = _entry(breaker, circuit)
        return entry[0] if entry is not None else None

    @staticmethod
    def open_for(circuit: str, *, breaker: Any = BREAKER) -> float:
        """Seconds until an open circuit lets a trial through (0.0 when it is not open), from
        the published state, without a round trip."""
        entry = _entry(breaker, circuit)
        if entry is None or entry[0] != "open":
            return 0.0
        return max(entry[3] - current_runtime().clock.now(), 0.0)

    @staticmethod
    async def reset(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Close the circuit by hand (listeners drain their buffers as on any close)."""
        unwrap(await call(breaker, ("force", circuit, "closed")))

    @staticmethod
    async def trip(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Open the circuit by hand (the synchronous test twin of enough failures)."""
        unwrap(await call(breaker, ("force", circuit, "open")))

    @staticmethod
    async def remove(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Forget ``circuit`` (its configuration and listeners); unknown names are ignored."""
        unwrap(await call(breaker, ("remove", circuit)))

    @staticmethod
    async def record_failure_sync(circuit: str, *, breaker: Any = BREAKER) -> CircuitState:
        """Record one failure and return the state after it (a test twin of a failed call)."""
        return unwrap(await call(breaker, ("failure", circuit)))  # type: ignore[no-any-return]

    @staticmethod
    async def listen(circuit: str, *, breaker: Any = BREAKER) -> None:
        """Send the calling process ``("circuit", circuit, state)`` on each transition."""
        unwrap(await call(breaker, ("listen", circuit, current_pid())))

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: Any) -> dict[str, _Circuit]:
        rt = current_runtime()
        names = [name for name, proc in rt.names.items() if proc.pid == self.pid]
        breakers: dict[Any, _Shared] = rt.extensions.setdefault(_BREAKERS, {})
        named = [breakers[n] for n in names if n in breakers]
        shared = self._shared = named[0] if named else _Shared()
        self._label: Any = names[0] if names else self.pid
        for key in (self.pid, *names):
            breakers[key] = shared
        self._watching: dict[Pid, Ref] = {}
        circuits: dict[str, _Circuit] = {}
        before = shared.last or {name: entry[0] for name, entry in shared.table.items()}
        shared.table.clear()
        shared.last = {}
        for listeners in shared.listeners.values():
            for pid in list(listeners):
                if rt.is_alive(pid):
                    self._watch(pid)
                else:
                    listeners.discard(pid)
        for name, cfg in shared.configs.items():  # a predecessor's circuits restart closed
            circuits[name] = _Circuit(cfg, self._next_gen())
            self._publish(name, circuits[name])
            if before.get(name, "closed") != "closed":
                self._announce(name, before[name], "closed")
        return circuits

    async def terminate(self, reason: Any, circuits: dict[str, _Circuit]) -> None:
        self._shared.last = {name: circuit.state for name, circuit in circuits.items()}
        self._shared.table.clear()  # callers now get a clear "not running", not stale states
        current_runtime().extensions.get(_BREAKERS, {}).pop(self.pid, None)  # never reused

    async def handle_call(self, request: Any, caller: From, circuits: dict[str, _Circuit]) -> Any:
        kind, name = request[0], request[1]
        if kind == "configure":
            old = circuits.get(name)
            if old is None:
                circuits[name] = _Circuit(request[2], self._next_gen())
            else:
                old.config = request[2]
            self._shared.configs[name] = request[2]
            self._publish(name, circuits[name])
            return Reply(None, circuits)
        if kind == "remove":
            self._remove(name, circuits)
            return Reply(None, circuits)
        circuit = circuits.get(name)
        if circuit is None:
            return Reply(Failed(_missing(self._label, name, None)), circuits)
        now = current_runtime().clock.now()
        self._maybe_half_open(name, circuit, now)
        if kind == "state":
            return Reply(circuit.state, circuits)
        if kind == "permit":
            return Reply(self._permit(name, circuit, request[2], now), circuits)
        if kind == "failure":
            self._outcome(name, circuit, False, circuit.gen, False, now)
            return Reply(circuit.state, circuits)
        if kind == "force":
            self._transition(name, circuit, request[2], now)
            return Reply(None, circuits)
        if kind == "listen":
            self._shared.listeners.setdefault(name, set()).add(request[2])
            self._watch(request[2])
            return Reply(None, circuits)
        return await super().handle_call(request, caller, circuits)

    async def handle_cast(self, request: Any, circuits: dict[str, _Circuit]) -> Any:
        if request[0] == "outcome":
            circuit = circuits.get(request[1])
            if circuit is not None:
                _, name, ok, gen, trial = request
                self._outcome(name, circuit, ok, gen, trial, current_runtime().clock.now())
            return circuits
        return await super().handle_cast(request, circuits)

    async def handle_info(self, msg: Any, circuits: dict[str, _Circuit]) -> Any:
        if type(msg) is Down:
            if self._watching.get(msg.pid) is msg.ref:
                del self._watching[msg.pid]
                for listeners in self._shared.listeners.values():
                    listeners.discard(msg.pid)
            for circuit in circuits.values():
                if circuit.trial_ref is msg.ref:
                    circuit.trial, circuit.trial_ref = False, None  # the trial's caller died
            return circuits
        if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "half_open":
            timed = circuits.get(msg[1])
            if timed is not None and timed.gen == msg[2]:
                timed.timer = None
                self._maybe_half_open(msg[1], timed, current_runtime().clock.now())
            return circuits
        return await super().handle_info(msg, circuits)

    def _permit(self, name: str, circuit: _Circuit, who: Pid | None, now: float) -> Any:
        if circuit.state == "closed":
            return (circuit.gen, False)
        if circuit.state == "half_open" and not circuit.trial:
            circuit.trial = True
            circuit.trial_ref = monitor(who) if who is not None else None
            return (circuit.gen, True)
        if circuit.state == "open":
            return Failed(_open_error(name, "open", max(circuit.until - now, 0.0)))
        return Failed(_open_error(name, "half_open", circuit.config.trial_retry_after))

    def _outcome(
        self, name: str, circuit: _Circuit, ok: bool | None, gen: int, trial: bool, now: float
    ) -> None:
        if gen != circuit.gen:
            return  # let through before a transition: says nothing about this generation
        if trial:
            self._free_trial(circuit)
        if ok is None:
            return
        if circuit.state == "half_open":
            if not trial:
                return
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
        if circuit.state == "open" and now >= circuit.until:
            self._transition(name, circuit, "half_open", now)

    def _transition(self, name: str, circuit: _Circuit, to: CircuitState, now: float) -> None:
        before = circuit.state
        circuit.state = to
        circuit.failures.clear()
        circuit.successes = 0
        circuit.gen = self._next_gen()
        self._free_trial(circuit)
        if circuit.timer is not None:
            cancel_timer(circuit.timer)
            circuit.timer = None
        if to == "open":
            circuit.until = now + circuit.config.reset_timeout
            message = ("half_open", name, circuit.gen)
            circuit.timer = send_after(self.pid, message, circuit.config.reset_timeout)
        self._publish(name, circuit)
        if before != to:
            self._announce(name, before, to)

    def _announce(self, name: str, before: CircuitState, to: CircuitState) -> None:
        rt = current_runtime()
        if rt.event_handlers and before != to:
            meta = {"name": name, "from": before, "to": to}
            rt.emit(("foundation", "circuit_breaker", "state_change"), {}, meta)
        listeners = self._shared.listeners.get(name, set())
        for pid in list(listeners):
            try:
                send(pid, ("circuit", name, to))
            except FoundationError:
                listeners.discard(pid)

    def _remove(self, name: str, circuits: dict[str, _Circuit]) -> None:
        circuit = circuits.pop(name, None)
        if circuit is not None:
            self._free_trial(circuit)
            if circuit.timer is not None:
                cancel_timer(circuit.timer)
        self._shared.configs.pop(name, None)
        self._shared.table.pop(name, None)
        for pid in self._shared.listeners.pop(name, set()):
            if not any(pid in ls for ls in self._shared.listeners.values()):
                ref = self._watching.pop(pid, None)
                if ref is not None:
                    demonitor(ref, flush=True)

    def _watch(self, pid: Pid) -> None:
        if pid not in self._watching:  # one monitor per listener, however many circuits
            self._watching[pid] = monitor(pid)

    def _free_trial(self, circuit: _Circuit) -> None:
        if circuit.trial_ref is not None:
            demonitor(circuit.trial_ref, flush=True)
        circuit.trial, circuit.trial_ref = False, None

    def _next_gen(self) -> int:
        self._shared.gen += 1
        return self._shared.gen

    def _publish(self, name: str, circuit: _Circuit) -> None:
        self._shared.table[name] = (circuit.state, circuit.config, circuit.gen, circuit.until)


def _entry(breaker: Any, circuit: str) -> _Entry | None:
    breakers = current_runtime().extensions.get(_BREAKERS)
    shared: _Shared | None = breakers.get(breaker) if breakers is not None else None
    return shared.table.get(circuit) if shared is not None else None


def _missing(breaker: Any, circuit: str, shared: _Shared | None) -> FoundationError:
    if shared is not None and circuit in shared.configs:
        return NoProcess(f"circuit breaker {breaker!r} is not running (circuit {circuit!r})")
    return NotFound(
        f"no circuit {circuit!r} in circuit breaker {breaker!r}: configure it first "
        "(CircuitBreaker.configure), with the circuit breaker service running"
    )


def _open_error(name: str, state: str, wait: float) -> CircuitOpen:
    what = "open" if state == "open" else "half-open, its one trial call is running"
    return CircuitOpen(
        f"circuit {name!r} is {what}; retry in {wait:.3f}s",
        retry_after=wait,
        context={"circuit": name, "state": state},
    )


async def _permit(breaker: Any, circuit: str) -> tuple[int, bool]:
    """Ask the server to let a call through a circuit that is not closed (maybe the trial)."""
    me = current_process()
    result: tuple[int, bool] = unwrap(
        await call(breaker, ("permit", circuit, me.pid if me is not None else None))
    )
    return result


def _report(breaker: Any, circuit: str, ok: bool | None, gen: int, trial: bool) -> None:
    """Tell the server an outcome (a closed circuit's successes are not reported)."""
    with contextlib.suppress(FoundationError):  # no breaker any more: nothing left to protect
        cast(breaker, ("outcome", circuit, ok, gen, trial))
