"""BreakerConfig: how one circuit trips and recovers, and which outcomes are failures.

Defaults are the seed's (five failures within a minute open a circuit; a trial after a minute;
three successful trials close it), kept as configuration rather than magic numbers. A returned
value can be a failure: by default a returned exception or ``Failed`` counts (the seed's breaker
counted only raised exceptions, so a returned error was a success), and ``is_failure(result)``
says it for any other shape of error value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from foundation.errors import InvalidArgument
from foundation.kernel.supervision import Failed

__all__ = [
    "BreakerConfig",
    "CircuitState",
]

CircuitState = Literal["closed", "open", "half_open"]
"""The states of a circuit, as ``CircuitBreaker.state`` reports them."""


@dataclass(frozen=True)
class BreakerConfig:
    """How one circuit trips and recovers (defaults: the seed's); see the module docstring.

    ``trial_retry_after`` is the ``retry_after`` given to callers refused while a trial runs.
    """

    failure_threshold: int = 5
    window: float = 60.0
    reset_timeout: float = 60.0
    success_threshold: int = 3
    failures: tuple[type[BaseException], ...] = (Exception,)
    ignore: tuple[type[BaseException], ...] = ()
    is_failure: Callable[[Any], bool] | None = None
    trial_retry_after: float = 0.1

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "success_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"invalid {name}: {value!r} (an int >= 1)")
        for name in ("window", "reset_timeout", "trial_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument(f"invalid {name}: {value!r} (seconds > 0)")
        for name in ("failures", "ignore"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise InvalidArgument(f"invalid {name}: {value!r} (a tuple of exception types)")
        if self.is_failure is not None and not callable(self.is_failure):
            raise InvalidArgument(f"invalid is_failure: {self.is_failure!r} (a callable)")

    def counts(self, exc: BaseException) -> bool:
        """Whether this exception is a failure of the service."""
        return isinstance(exc, self.failures) and not isinstance(exc, self.ignore)

    def failed(self, result: Any) -> bool:
        """Whether this returned value is a failure of the service."""
        if self.is_failure is not None:
            return bool(self.is_failure(result))
        return isinstance(result, (BaseException, Failed))
