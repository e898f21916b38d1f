"""HealthChecks: registered checks on an interval, each behind its own breaker; one status.

``await HealthChecks.register("db", check, interval=10, timeout=2, critical=True)``: ``check``
is an async function that returns truthy when healthy (falsy, an exception or running over
``timeout``: unhealthy). Each check runs every ``interval`` seconds (runtime clock) in its own
runner process, spawned and linked by the service, never in the service's loop: a slow check
delays nobody. When a circuit breaker service runs, each check goes through its own circuit
``health:<name>``: three failed runs in a row open it (the seed's rule), and the check then
counts as failing without being run, until a trial run after three intervals passes. The
aggregate is ``healthy`` (no check fails), ``degraded`` (only non-critical checks fail) or
``unhealthy`` (a critical one fails); a check not run yet counts as passing. Each change of the
aggregate emits ``("foundation", "health", "changed")`` and, when a signal bus runs, the signal
``health.changed``. ``check_now(name)`` runs a check at once in the caller (the synchronous
twin of a tick); ``unregister(name)`` stops one. Checks are functions, so they are not stored:
checks declared at start (``start_link(checks={"db": HealthCheck(ping, critical=True)})`` or the
same in ``child_spec``) are in the child spec and come back with every restart of the service;
checks registered at run time are gone after a restart, until their owners register them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from foundation.errors import FoundationError, InvalidArgument, NotFound
from foundation.kernel.api import current_pid, spawn_link, unlink
from foundation.kernel.api import exit as exit_process
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call, cast
from foundation.kernel.messages import Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.services.circuit_breaker import BREAKER, BreakerConfig, CircuitBreaker

__all__ = [
    "CheckResult",
    "HEALTH",
    "HealthCheck",
    "HealthChecks",
    "Status",
]

HEALTH = "health"
"""The default registered name of the health-check service."""

Status = Literal["healthy", "degraded", "unhealthy"]
Check = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class CheckResult:
    """The last outcome of one check."""

    name: str
    ok: bool | None  # None: not run yet
    critical: bool
    error: str | None = None
    at: float | None = None


@dataclass(frozen=True)
class HealthCheck:
    """A check declared at start: its function, how often, how long it may take, and whether a
    failure makes the system unhealthy (critical) or only degraded."""

    fn: Check
    interval: float = 10.0
    timeout: float = 2.0
    critical: bool = True

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InvalidArgument(f"a health check must be an async callable, not {self.fn!r}")
        if self.interval <= 0 or self.timeout <= 0:
            raise InvalidArgument(
                f"health check {self.fn!r}: interval and timeout must be > 0 "
                f"(got {self.interval!r}, {self.timeout!r})"
            )


@dataclass
class _Check:
    fn: Check
    interval: float
    timeout: float
    critical: bool
    runner: Pid | None = None
    result: CheckResult | None = None


def _breaker_config(interval: float) -> BreakerConfig:
    """Three failed runs in a row open a check's circuit (the seed's rule); a trial after three
    intervals."""
    return BreakerConfig(failure_threshold=3, window=interval * 4, reset_timeout=interval * 3)


async def _run_check(
    name: str, fn: Check, timeout: float, breaker: str | None, interval: float
) -> CheckResult:
    """Run one check in the caller; an exception, a timeout or a falsy result is a failure."""
    ran = False

    async def guarded() -> Any:
        nonlocal ran
        ran = True
        async with asyncio.timeout(timeout):
            return await fn()

    try:
        if breaker is None:
            ok = await guarded()
        else:
            circuit = f"health:{name}"
            try:
                ok = await CircuitBreaker.call(circuit, guarded, breaker=breaker)
            except NotFound:
                if ran:
                    raise
                # the breaker restarted and forgot the circuit: configure it again
                await CircuitBreaker.configure(circuit, _breaker_config(interval), breaker=breaker)
                ok = await CircuitBreaker.call(circuit, guarded, breaker=breaker)
    except TimeoutError:
        return CheckResult(name, False, True, f"timed out after {timeout}s")
    except Exception as exc:  # a failing check is an outcome of the check, recorded
        return CheckResult(name, False, True, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, bool(ok), True, None if ok else "returned a falsy value")


class HealthChecks(GenServer):
    """The check table and the aggregate status; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: str = HEALTH,
        signal_bus: str = "signal_bus",
        breaker: str = BREAKER,
        checks: Mapping[str, HealthCheck] | None = None,
    ) -> Pid:
        """Start the service, with the ``checks`` declared here running from the start."""
        declared = dict(checks or {})
        for key, spec in declared.items():
            if not isinstance(key, str) or not isinstance(spec, HealthCheck):
                raise InvalidArgument(
                    f"health checks are declared as {{name: HealthCheck(...)}}, got {key!r}: "
                    f"{spec!r}"
                )
        return await cls._start(
            (signal_bus, breaker, declared), name=name, timeout=5.0, max_mailbox=None, link=True
        )

    @classmethod
    def child_spec(cls, *, name: str = HEALTH, **kw: Any) -> Any:  # type: ignore[override]
        """A child spec for the service under ``name``."""
        from foundation.kernel.child_spec import ChildSpec

        async def start() -> Pid:
            return await cls.start_link(name=name, **kw)

        return ChildSpec(id=name, start=start)

    @staticmethod
    async def register(
        name: str,
        check: Check,
        *,
        interval: float = 10.0,
        timeout: float = 2.0,
        critical: bool = True,
        health: Any = HEALTH,
    ) -> None:
        """Register (or replace) a check; it first runs at once, then every ``interval``."""
        if not callable(check):
            raise InvalidArgument(f"health check {name!r} must be an async callable")
        if interval <= 0 or timeout <= 0:
            raise InvalidArgument(f"health check {name!r}: interval and timeout must be > 0")
        await call(health, ("register", name, _Check(check, interval, timeout, critical)))

    @staticmethod
    async def status(*, health: Any = HEALTH) -> tuple[Status, dict[str, CheckResult]]:
        """The aggregate status and each check's last result."""
        return await call(health, ("status",))  # type: ignore[no-any-return]

    @staticmethod
    async def check_now(name: str, *, health: Any = HEALTH) -> CheckResult:
        """Run one check now, in the caller, record it, and return its result."""
        fn, timeout, breaker, interval = unwrap(await call(health, ("fn", name)))
        result = await _run_check(name, fn, timeout, breaker, interval)
        await call(health, ("result", name, result))
        return unwrap(await call(health, ("get", name)))  # type: ignore[no-any-return]

    @staticmethod
    async def unregister(name: str, *, health: Any = HEALTH) -> bool:
        """Stop and forget a check; False if there was none."""
        return await call(health, ("unregister", name))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: tuple[str, str, dict[str, HealthCheck]]) -> dict[str, _Check]:
        self.signal_bus, self.breaker, declared = args
        self.aggregate: Status = "healthy"
        checks: dict[str, _Check] = {}
        for name, spec in declared.items():  # on every start: a restart runs them again
            await self._add(checks, name, _Check(spec.fn, spec.interval, spec.timeout,
                                                 spec.critical))  # fmt: skip
        return checks

    async def _add(self, checks: dict[str, _Check], name: str, check: _Check) -> None:
        """Run ``check`` under ``name`` (replacing any check of that name) in its own runner."""
        self._stop_runner(checks.pop(name, None))
        breaker = self._breaker()
        if breaker is not None:
            config = _breaker_config(check.interval)
            await CircuitBreaker.configure(f"health:{name}", config, breaker=breaker)
        check.runner = spawn_link(_runner, self.pid, name, check.fn, check.interval,
                                  check.timeout, breaker)  # fmt: skip
        checks[name] = check
        await self._aggregate(checks)

    def _breaker(self) -> str | None:
        return self.breaker if current_runtime().whereis(self.breaker) is not None else None

    async def handle_call(self, request: Any, caller: From, checks: dict[str, _Check]) -> Any:
        kind = request[0]
        if kind == "register":
            try:
                await self._add(checks, request[1], request[2])
            except FoundationError as err:
                return Reply(Failed(err), checks)
            return Reply(None, checks)
        if kind == "unregister":
            gone = checks.pop(request[1], None)
            self._stop_runner(gone)
            await self._aggregate(checks)
            return Reply(gone is not None, checks)
        if kind == "status":
            return Reply((self.aggregate, {n: self._result(n, c) for n, c in checks.items()}),
                         checks)  # fmt: skip
        if kind in ("fn", "get") and request[1] not in checks:
            return Reply(Failed(NotFound(f"no health check {request[1]!r}")), checks)
        if kind == "fn":
            check = checks[request[1]]
            return Reply((check.fn, check.timeout, self._breaker(), check.interval), checks)
        if kind == "get":
            return Reply(self._result(request[1], checks[request[1]]), checks)
        if kind == "result":
            await self._record(checks, request[1], request[2])
            return Reply(None, checks)
        return await super().handle_call(request, caller, checks)

    async def handle_cast(self, request: Any, checks: dict[str, _Check]) -> Any:
        if request[0] == "result":
            check = checks.get(request[1])
            if check is not None and check.runner == request[3]:  # not a replaced runner's
                await self._record(checks, request[1], request[2])
            return checks
        return await super().handle_cast(request, checks)

    @staticmethod
    def _result(name: str, check: _Check) -> CheckResult:
        r = check.result
        if r is None:
            return CheckResult(name, None, check.critical)
        return CheckResult(name, r.ok, check.critical, r.error, r.at)

    async def _record(self, checks: dict[str, _Check], name: str, result: CheckResult) -> None:
        check = checks.get(name)
        if check is None:
            return
        check.result = CheckResult(name, result.ok, check.critical, result.error,
                                   current_runtime().clock.now())  # fmt: skip
        await self._aggregate(checks)

    @staticmethod
    def _stop_runner(check: _Check | None) -> None:
        if check is not None and check.runner is not None:
            unlink(check.runner)  # its end is not this server's
            exit_process(check.runner, "kill")

    async def _aggregate(self, checks: dict[str, _Check]) -> None:
        """Recompute the aggregate status; announce a change."""
        failing = [c for c in checks.values() if c.result is not None and c.result.ok is False]
        new: Status = (
            "unhealthy" if any(c.critical for c in failing)
            else "degraded" if failing else "healthy"
        )  # fmt: skip
        if new == self.aggregate:
            return
        old, self.aggregate = self.aggregate, new
        rt = current_runtime()
        data = {"from": old, "to": new, "failing": sorted(n for n, c in checks.items()
                                                          if c in failing)}  # fmt: skip
        if rt.event_handlers:
            rt.emit(("foundation", "health", "changed"), {}, data)
        if rt.whereis(self.signal_bus) is not None:
            from foundation.services.signal_bus import SignalBus

            with contextlib.suppress(FoundationError):
                await SignalBus.publish(self.signal_bus, "health.changed", data, source="health")


async def _runner(
    health: Pid, name: str, fn: Check, interval: float, timeout: float, breaker: str | None
) -> None:
    """Run one check every ``interval`` seconds (runtime clock), reporting each result."""
    clock = current_runtime().clock
    me = current_pid()
    while True:
        result = await _run_check(name, fn, timeout, breaker, interval)
        cast(health, ("result", name, result, me))
        await clock.sleep(interval)
