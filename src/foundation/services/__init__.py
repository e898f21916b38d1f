"""Services: the resilience and operations processes agents rely on.

Each service is a supervised process with a synchronous API usable in tests: signal bus,
dead letters, circuit breaker and buffered delivery, rate limiter, retry, cache, HTTP pools,
scheduler, system commands, task pools, coordination, health checks, feature flags.
"""

from foundation.services.commands import CommandResult as CommandResult
from foundation.services.commands import SystemCommands as SystemCommands
from foundation.services.coordination import Coordination as Coordination
from foundation.services.coordination import Leadership as Leadership
from foundation.services.coordination import Lease as Lease
from foundation.services.signal_bus import Signal as Signal
from foundation.services.signal_bus import SignalBus as SignalBus
from foundation.services.task_pools import PoolConfig as PoolConfig
from foundation.services.task_pools import TaskPools as TaskPools

__all__ = [
    "CommandResult",
    "Coordination",
    "Leadership",
    "Lease",
    "PoolConfig",
    "Signal",
    "SignalBus",
    "SystemCommands",
    "TaskPools",
]
