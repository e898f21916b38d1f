"""Services: the resilience and operations processes agents rely on.

Each service is a supervised process with a synchronous API usable in tests: signal bus,
dead letters, circuit breaker and buffered delivery, rate limiter, retry, cache, HTTP pools,
scheduler, system commands, task pools, coordination, health checks, feature flags.
"""

from foundation.services.cache import Cache as Cache
from foundation.services.cache import CacheServer as CacheServer
from foundation.services.cache import CacheStats as CacheStats
from foundation.services.circuit_breaker import BreakerConfig as BreakerConfig
from foundation.services.circuit_breaker import CircuitBreaker as CircuitBreaker
from foundation.services.commands import CommandResult as CommandResult
from foundation.services.commands import SystemCommands as SystemCommands
from foundation.services.coordination import Coordination as Coordination
from foundation.services.coordination import Leadership as Leadership
from foundation.services.coordination import Lease as Lease
from foundation.services.cron import Cron as Cron
from foundation.services.dead_letters import DeadLetter as DeadLetter
from foundation.services.dead_letters import DeadLetterQueue as DeadLetterQueue
from foundation.services.delivery import Delivery as Delivery
from foundation.services.feature_flags import FeatureFlags as FeatureFlags
from foundation.services.feature_flags import Flag as Flag
from foundation.services.health import HealthCheck as HealthCheck
from foundation.services.health import HealthChecks as HealthChecks
from foundation.services.http import HttpPoolConfig as HttpPoolConfig
from foundation.services.http import HttpPools as HttpPools
from foundation.services.protected import protected_call as protected_call
from foundation.services.rate_limiter import FixedWindow as FixedWindow
from foundation.services.rate_limiter import LimitStatus as LimitStatus
from foundation.services.rate_limiter import RateLimiter as RateLimiter
from foundation.services.rate_limiter import TokenBucket as TokenBucket
from foundation.services.redis_rate_limiter import RedisRateLimiter as RedisRateLimiter
from foundation.services.retry import Retry as Retry
from foundation.services.scheduler import Job as Job
from foundation.services.scheduler import Scheduler as Scheduler
from foundation.services.signal_bus import Signal as Signal
from foundation.services.signal_bus import SignalBus as SignalBus
from foundation.services.task_pools import PoolConfig as PoolConfig
from foundation.services.task_pools import TaskPools as TaskPools
from foundation.services.tree import Services as Services
from foundation.services.tree import start_services as start_services

__all__ = [
    "BreakerConfig",
    "Cache",
    "CacheServer",
    "CacheStats",
    "CircuitBreaker",
    "CommandResult",
    "Coordination",
    "Cron",
    "DeadLetter",
    "DeadLetterQueue",
    "Delivery",
    "FeatureFlags",
    "FixedWindow",
    "Flag",
    "HealthCheck",
    "HealthChecks",
    "HttpPoolConfig",
    "HttpPools",
    "Job",
    "Leadership",
    "Lease",
    "LimitStatus",
    "PoolConfig",
    "RateLimiter",
    "RedisRateLimiter",
    "Retry",
    "Scheduler",
    "Services",
    "Signal",
    "SignalBus",
    "SystemCommands",
    "TaskPools",
    "TokenBucket",
    "protected_call",
    "start_services",
]
