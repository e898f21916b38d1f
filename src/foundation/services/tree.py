"""Services: every service, started by one supervisor in dependency order.

``Services.child_specs()`` gives, in start order: the dead-letter queue (everything else hands
it what it cannot deliver), the signal bus, the circuit breaker, buffered delivery, the
scheduler, system commands, task pools, coordination, feature flags and health checks, each
under its default registered name. ``Services.supervisor_spec()`` wraps them in one
``rest_for_one`` supervisor: a service that restarts restarts the ones started after it, which
may depend on it, and none before it.
"""

from __future__ import annotations

from typing import Any

from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.pid import Pid
from foundation.kernel.supervisor import Supervisor
from foundation.services.circuit_breaker import CircuitBreaker
from foundation.services.commands import SystemCommands
from foundation.services.coordination import Coordination
from foundation.services.dead_letters import DeadLetterQueue
from foundation.services.delivery import Delivery
from foundation.services.feature_flags import FeatureFlags
from foundation.services.health import HealthChecks
from foundation.services.scheduler import Scheduler
from foundation.services.signal_bus import SignalBus
from foundation.services.task_pools import TaskPools

__all__ = [
    "Services",
]


def _spec(name: str, start: Any, **kw: Any) -> ChildSpec:
    async def run() -> Pid:
        return await start(name=name, **kw)  # type: ignore[no-any-return]

    return ChildSpec(id=name, start=run)


class Services:
    """The services layer as child specs; see the module docstring."""

    @staticmethod
    def child_specs(*, scheduler_epoch: float | None = None) -> list[ChildSpec]:
        """Every service, in dependency order, under its default name."""
        sink = DeadLetterQueue.sink()
        return [
            DeadLetterQueue.child_spec(),
            SignalBus.child_spec(name="signal_bus", dead_letters=sink),
            CircuitBreaker.child_spec(),
            _spec("delivery", Delivery.start_link, dead_letters=sink),
            Scheduler.child_spec(epoch=scheduler_epoch),
            _spec("system_commands", SystemCommands.start_link),
            _spec("task_pools", TaskPools.start_link),
            _spec("coordination", Coordination.start_link),
            FeatureFlags.child_spec(),
            HealthChecks.child_spec(),
        ]

    @staticmethod
    def supervisor_spec(*, id: str = "services", **kw: Any) -> ChildSpec:
        """One rest_for_one supervisor of every service."""
        return Supervisor.child_spec(
            Services.child_specs(**kw), id=id, strategy="rest_for_one", max_restarts=10,
            max_seconds=5,
        )  # fmt: skip
