"""HealthChecks: registered checks on an interval, each behind its own breaker; one status.

``await HealthChecks.register("db", check, interval=10, timeout=2, critical=True)``: ``check``
is an async function that returns truthy when healthy (falsy or an exception: unhealthy). Each
check runs in its own runner process owned by the service, never in the service's loop, within
``timeout`` seconds, through the circuit ``health:<name>`` when a circuit breaker service runs
(a check that keeps failing is then not hammered: its circuit opens and the check counts as
failing until a trial passes). The aggregate is ``healthy`` (all pass), ``degraded`` (only
non-critical checks fail) or ``unhealthy`` (a critical one fails). Each change of the aggregate
emits ``("foundation", "health", "changed")`` and the signal ``health.changed`` when a signal
bus runs. ``check_now(name)`` runs a check at once in the caller (the synchronous twin).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from foundation.errors import FoundationError, InvalidArgument, NotFound
from foundation.kernel.api import spawn_link
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call, cast
from foundation.kernel.messages import Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.services.circuit_breaker import BREAKER, BreakerConfig, CircuitBreaker

__all__ = [
    "CheckResult",
    "HEALTH",
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


@dataclass
class _Check:
    fn: Check
    interval: float
    timeout: float
    critical: bool
    runner: Pid | None = None
    result: CheckResult | None = None


async def _run_check(name: str, fn: Check, timeout: float, breaker: str | None) -> CheckResult:
    """Run one check in the caller; an exception or a falsy result is a failure."""

    async def guarded() -> Any:
        async with asyncio.timeout(timeout):
            return await fn()

    try:
        if breaker is not None:
            ok = await CircuitBreaker.call(f"health:{name}", guarded, breaker=breaker)
        else:
            ok = await guarded()
    except TimeoutError:
        return CheckResult(name, False, True, f"timed out after {timeout}s")
    except Exception as exc:  # a failing check is an outcome of the check, recorded
        return CheckResult(name, False, True, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, bool(ok), True, None if ok else "returned a falsy value")


class HealthChecks(GenServer):
    """The check table and the aggregate status; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: str = HEALTH, signal_bus: str = "signal_bus", breaker: str = BREAKER
    ) -> Pid:
        """Start the service."""
        return await cls._start(
            (signal_bus, breaker), name=name, timeout=5.0, max_mailbox=None, link=True
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
        fn, timeout, breaker = await call(health, ("fn", name))
        result = await _run_check(name, fn, timeout, breaker)
        await call(health, ("result", name, result))
        return await call(health, ("get", name))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: tuple[str, str]) -> dict[str, _Check]:
        self.signal_bus, self.breaker = args
        self.aggregate: Status = "healthy"
        return {}

    def _breaker(self) -> str | None:
        return self.breaker if current_runtime().whereis(self.breaker) is not None else None

    async def handle_call(self, request: Any, caller: From, checks: dict[str, _Check]) -> Any:
        kind = request[0]
        if kind == "register":
            name, check = request[1], request[2]
            old = checks.get(name)
            if old is not None and old.runner is not None:
                from foundation import exit as exit_process

                exit_process(old.runner, "kill")
            breaker = self._breaker()
            if breaker is not None:
                config = BreakerConfig(failure_threshold=3, reset_timeout=check.interval * 3)
                await CircuitBreaker.configure(f"health:{name}", config, breaker=breaker)
            check.runner = spawn_link(_runner, self.pid, name, check.fn, check.interval,
                                      check.timeout, breaker)  # fmt: skip
            checks[name] = check
            return Reply(None, checks)
        if kind == "status":
            return Reply((self.aggregate, {n: self._result(n, c) for n, c in checks.items()}),
                         checks)  # fmt: skip
        if kind in ("fn", "get") and request[1] not in checks:
            return Reply(NotFound(f"no health check {request[1]!r}"), checks)
        if kind == "fn":
            check = checks[request[1]]
            return Reply((check.fn, check.timeout, self._breaker()), checks)
        if kind == "get":
            return Reply(self._result(request[1], checks[request[1]]), checks)
        if kind == "result":
            await self._record(checks, request[1], request[2])
            return Reply(None, checks)
        return await super().handle_call(request, caller, checks)

    async def handle_cast(self, request: Any, checks: dict[str, _Check]) -> Any:
        if request[0] == "result":
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
    while True:
        cast(health, ("result", name, await _run_check(name, fn, timeout, breaker)))
        await clock.sleep(interval)
