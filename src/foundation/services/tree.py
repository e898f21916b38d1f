"""Services: every service, started by one supervisor in dependency order.

``Services.child_specs()`` gives, in start order: the dead-letter queue (everything after it
hands it what it cannot deliver), the signal bus (overflow to the dead letters), the circuit
breaker, buffered delivery (breaker and dead letters), the cache, the rate limiter, the HTTP
pools (only with ``http_pools=True``: they need the ``http`` extra), the scheduler, system
commands, task pools, coordination, feature flags (announce changes on the bus) and health
checks (breaker and bus), each under its default registered name (``Services.NAMES``).
``Services.supervisor_spec()`` wraps them in one ``rest_for_one`` supervisor and
``start_services()`` starts that supervisor linked to the caller: a service that restarts
restarts the ones started after it, which may depend on it, and none before it. Restart
intensity is 3 restarts in 5 seconds, the seed's value for every environment (tests do not get
a gentler tree); beyond it the services supervisor gives up and escalates to its parent.

``epoch`` (or ``scheduler_epoch``, for the scheduler alone) is passed to the scheduler and the
dead-letter queue: the wall time the runtime clock's zero stands for (tests pass 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.pid import Pid
from foundation.kernel.supervisor import Supervisor
from foundation.services.cache import CacheServer
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.commands import SystemCommands
from foundation.services.coordination import Coordination
from foundation.services.dead_letters import DeadLetterQueue
from foundation.services.delivery import Delivery
from foundation.services.feature_flags import FeatureFlags
from foundation.services.health import HealthCheck, HealthChecks
from foundation.services.rate_limiter import RateLimiter
from foundation.services.scheduler import Scheduler
from foundation.services.signal_bus import SignalBus
from foundation.services.task_pools import TaskPools

__all__ = [
    "Services",
    "start_services",
]


def _spec(name: str, start: Any, **kw: Any) -> ChildSpec:
    async def run() -> Pid:
        return await start(name=name, **kw)  # type: ignore[no-any-return]

    return ChildSpec(id=name, start=run)


class Services:
    """The services layer as child specs; see the module docstring."""

    NAMES: ClassVar[tuple[str, ...]] = (
        "dead_letters", "signal_bus", "circuit_breaker", "delivery", "cache", "rate_limiter",
        "scheduler", "system_commands", "task_pools", "coordination", "feature_flags", "health",
    )  # fmt: skip
    """The registered names of the default services, in start order (``http_pools`` after
    ``rate_limiter`` when asked for)."""

    @staticmethod
    def child_specs(
        *,
        epoch: float | None = None,
        scheduler_epoch: float | None = None,
        http_pools: bool = False,
        health_checks: Mapping[str, HealthCheck] | None = None,
    ) -> list[ChildSpec]:
        """Every service, in dependency order, under its default name (``health_checks``: the
        checks declared at start, run again after every restart of the health service)."""
        sink = DeadLetterQueue.sink()
        specs = [
            DeadLetterQueue.child_spec(epoch=epoch),
            SignalBus.child_spec(name="signal_bus", dead_letters=sink),
            CircuitBreaker.child_spec(),
            _spec("delivery", Delivery.start_link, dead_letters=sink),
            CacheServer.child_spec(),
            RateLimiter.child_spec(),
        ]
        if http_pools:
            from foundation.services.http import HttpPools

            specs.append(HttpPools.child_spec())
        specs += [
            Scheduler.child_spec(epoch=scheduler_epoch if scheduler_epoch is not None else epoch),
            _spec("system_commands", SystemCommands.start_link),
            _spec("task_pools", TaskPools.start_link),
            _spec("coordination", Coordination.start_link),
            FeatureFlags.child_spec(),
            HealthChecks.child_spec(checks=health_checks),
        ]
        return specs

    @staticmethod
    def supervisor_spec(
        *, id: str = "services", max_restarts: int = 3, max_seconds: float = 5.0, **kw: Any
    ) -> ChildSpec:
        """One rest_for_one supervisor of every service, registered as ``id`` (``kw``: as for
        ``child_specs``)."""
        return Supervisor.child_spec(
            Services.child_specs(**kw), id=id, name=id, strategy="rest_for_one",
            max_restarts=max_restarts, max_seconds=max_seconds,
        )  # fmt: skip


async def start_services(
    *, name: str | None = "services", max_restarts: int = 3, max_seconds: float = 5.0, **kw: Any
) -> Pid:
    """Start every service under one rest_for_one supervisor linked to the caller; its pid."""
    return await Supervisor.start_link(
        Services.child_specs(**kw), strategy="rest_for_one", max_restarts=max_restarts,
        max_seconds=max_seconds, name=name,
    )  # fmt: skip
