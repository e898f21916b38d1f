"""Every error Foundation raises or returns: one root, a flat set of documented subclasses.

Each error has a stable ``code`` (for programs), a message that says what was wrong and where
(for people), a ``retryable`` flag (may the same operation succeed if tried again?) and a
``context`` mapping with the details. ``to_dict()`` gives a JSON-ready form.

    FoundationError                 foundation_error
    ├── CallTimeout                 call_timeout        (retryable)
    ├── NoProcess                   noproc              (retryable)
    ├── ProcessExited               process_exited      (retryable)
    ├── InitError                   init_error
    ├── MailboxFull                 mailbox_full        (retryable)
    ├── ReceiveTimeout              receive_timeout     (retryable)
    ├── AlreadyStarted              already_started
    ├── AlreadyRegistered           already_registered
    ├── AlreadyPresent              already_present
    ├── ChildRunning                running
    ├── ChildNotFound               not_found
    ├── MaxChildren                 max_children        (retryable)
    ├── BadReturn                   bad_return_value
    ├── InvalidArgument             invalid_argument
    ├── UnexpectedMessage           unexpected_message
    ├── NoRuntime                   no_runtime
    ├── CommandNotAllowed           command_not_allowed
    ├── CommandTimeout              command_timeout     (retryable)
    ├── CommandFailed               command_failed
    ├── OutputTooLarge              output_too_large
    ├── Overloaded                  overloaded          (retryable)
    ├── LockTimeout                 lock_timeout        (retryable)
    ├── NotLockHolder               not_lock_holder
    ├── BarrierTimeout              barrier_timeout     (retryable)
    ├── NotInProcess                not_in_process
    ├── RateLimited                 rate_limited        (retryable)
    ├── LimiterNotFound             limiter_not_found
    ├── RetryExhausted              retry_exhausted
    ├── PoolNotFound                pool_not_found
    ├── HttpRequestFailed           http_request_failed (retryable)
    ├── HttpStatusError             http_status         (retryable for 429 and 5xx)
    ├── BackendUnavailable          backend_unavailable (retryable)
    ├── PersistenceError            persistence_error   (retryable)
    ├── StaleVersion                stale_version       (retryable)
    ├── StateCorrupt                state_corrupt
    ├── CircuitOpen                 circuit_open        (retryable)
    ├── UnknownFlag                 unknown_flag
    ├── NotFound                    not_found_key
    ├── ValidationError             validation_error
    ├── UnknownAction               unknown_action
    ├── UnknownCapability           unknown_capability
    ├── InvalidWorkflow             invalid_workflow
    └── WorkflowNotFound            workflow_not_found
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AlreadyPresent",
    "AlreadyRegistered",
    "AlreadyStarted",
    "BackendUnavailable",
    "BadReturn",
    "BarrierTimeout",
    "CallTimeout",
    "ChildNotFound",
    "ChildRunning",
    "CircuitOpen",
    "CommandFailed",
    "CommandNotAllowed",
    "CommandTimeout",
    "FoundationError",
    "HttpRequestFailed",
    "HttpStatusError",
    "InitError",
    "InvalidArgument",
    "InvalidWorkflow",
    "LimiterNotFound",
    "LockTimeout",
    "MailboxFull",
    "MaxChildren",
    "NoProcess",
    "NoRuntime",
    "NotFound",
    "NotInProcess",
    "NotLockHolder",
    "OutputTooLarge",
    "Overloaded",
    "PersistenceError",
    "PoolNotFound",
    "ProcessExited",
    "RateLimited",
    "ReceiveTimeout",
    "RetryExhausted",
    "StaleVersion",
    "StateCorrupt",
    "UnexpectedMessage",
    "UnknownAction",
    "UnknownCapability",
    "UnknownFlag",
    "ValidationError",
    "WorkflowNotFound",
]


def format_reason(reason: object) -> str:
    """Render an exit reason for messages: strings as they are, exceptions as ``Type: text``."""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return repr(reason)


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseException):
        return format_reason(value)
    return str(value)


class FoundationError(Exception):
    """Raised for any failure Foundation reports; catch this to catch them all."""

    code: ClassVar[str] = "foundation_error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        context: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = dict(context or {})
        self.retryable = self.default_retryable if retryable is None else retryable

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: code, message, retryable and context."""
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "context": _jsonable(self.context),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class CallTimeout(FoundationError):
    """Raised when a call (or an awaited task) got no answer in time; the request may still run."""

    code = "call_timeout"
    default_retryable = True


class NoProcess(FoundationError):
    """Raised when the target of a call, cast or send is dead or its name is not registered."""

    code = "noproc"
    default_retryable = True


class ProcessExited(FoundationError):
    """Raised to a caller whose target exited before answering; ``reason`` is its exit reason."""

    code = "process_exited"
    default_retryable = True

    def __init__(self, message: str, *, reason: object, context: Mapping[str, Any] | None = None):
        super().__init__(message, context={"reason": reason, **(context or {})})
        self.reason = reason


class InitError(FoundationError):
    """Raised by ``start``/``start_link`` when the new process failed in ``init``; see reason."""

    code = "init_error"

    def __init__(self, message: str, *, reason: object, context: Mapping[str, Any] | None = None):
        super().__init__(message, context={"reason": reason, **(context or {})})
        self.reason = reason


class MailboxFull(FoundationError):
    """Raised to a sender when the target's bounded mailbox (``max_mailbox``) is full."""

    code = "mailbox_full"
    default_retryable = True


class ReceiveTimeout(FoundationError):
    """Raised by ``receive(timeout=...)`` when no matching message arrived in time."""

    code = "receive_timeout"
    default_retryable = True


class AlreadyStarted(FoundationError):
    """Raised when starting a process under a name another live process holds; see ``pid``."""

    code = "already_started"

    def __init__(self, message: str, *, pid: object, context: Mapping[str, Any] | None = None):
        super().__init__(message, context={"pid": pid, **(context or {})})
        self.pid = pid


class AlreadyRegistered(FoundationError):
    """Raised when registering a key a unique registry already holds for another process."""

    code = "already_registered"


class AlreadyPresent(FoundationError):
    """Raised by ``start_child`` when a child spec with that id exists (use ``restart_child``)."""

    code = "already_present"


class ChildRunning(FoundationError):
    """Raised by ``restart_child``/``delete_child`` or ``start_child`` when the child is running."""

    code = "running"


class ChildNotFound(FoundationError):
    """Raised when a supervisor has no child with the given id or pid."""

    code = "not_found"


class MaxChildren(FoundationError):
    """Raised by a DynamicSupervisor that already runs ``max_children`` children."""

    code = "max_children"
    default_retryable = True


class BadReturn(FoundationError):
    """Raised inside a GenServer whose callback returned a value of the wrong shape (it crashes)."""

    code = "bad_return_value"


class InvalidArgument(FoundationError):
    """Raised for a bad argument, option or spec; the message names the field and the value."""

    code = "invalid_argument"


class NoRuntime(FoundationError):
    """Raised when a kernel function is used outside ``async with Runtime()`` or a process."""

    code = "no_runtime"


class NotInProcess(FoundationError):
    """Raised when a function that needs a calling process (receive, link, monitor) has none."""

    code = "not_in_process"


class UnexpectedMessage(FoundationError):
    """Raised inside a GenServer that got a call, cast or continue it has no handler for."""

    code = "unexpected_message"


class CommandNotAllowed(FoundationError):
    """Raised when a system command is not on the allow-list (or not installed)."""

    code = "command_not_allowed"


class CommandTimeout(FoundationError):
    """Raised when a system command outlived its timeout; its whole process group was killed."""

    code = "command_timeout"
    default_retryable = True


class CommandFailed(FoundationError):
    """Raised when a system command exited non-zero; ``context`` has the code and output tail."""

    code = "command_failed"


class OutputTooLarge(FoundationError):
    """Raised when a system command wrote more than its output cap; it was killed."""

    code = "output_too_large"


class Overloaded(FoundationError):
    """Raised when a service is at its concurrency cap; try again later."""

    code = "overloaded"
    default_retryable = True


class LockTimeout(FoundationError):
    """Raised when a lock was not granted before the caller's timeout (it never will be)."""

    code = "lock_timeout"
    default_retryable = True


class NotLockHolder(FoundationError):
    """Raised when releasing or renewing a lock with a token that no longer holds it."""

    code = "not_lock_holder"


class BarrierTimeout(FoundationError):
    """Raised when a barrier did not fill before the caller's timeout."""

    code = "barrier_timeout"
    default_retryable = True


class RateLimited(FoundationError):
    """Raised when a rate limit denied a request; ``retry_after`` says when one may pass."""

    code = "rate_limited"
    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, context={"retry_after": retry_after, **(context or {})})
        self.retry_after = retry_after


class LimiterNotFound(FoundationError):
    """Raised when a rate limiter name was never configured (or was removed); configure it."""

    code = "limiter_not_found"


class RetryExhausted(FoundationError):
    """Raised when retries gave up (attempts or time spent); the last error is ``__cause__``."""

    code = "retry_exhausted"

    def __init__(
        self, message: str, *, attempts: int, context: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, context={"attempts": attempts, **(context or {})})
        self.attempts = attempts


class PoolNotFound(FoundationError):
    """Raised when no HTTP pool is configured under the requested service name."""

    code = "pool_not_found"


class HttpRequestFailed(FoundationError):
    """Raised when an HTTP request failed before a response (connect, read, write, protocol)."""

    code = "http_request_failed"
    default_retryable = True


class HttpStatusError(FoundationError):
    """Raised when a response had an error status and the caller asked for that to raise.

    Retryable for 429 (too many requests) and 5xx; other statuses are the caller's to fix.
    """

    code = "http_status"

    def __init__(
        self, message: str, *, status: int, context: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(
            message,
            context={"status": status, **(context or {})},
            retryable=status == 429 or status >= 500,
        )
        self.status = status


class BackendUnavailable(FoundationError):
    """Raised when a shared backend (Redis, PostgreSQL) did not answer or refused a command."""

    code = "backend_unavailable"
    default_retryable = True


class PersistenceError(FoundationError):
    """Raised when a store could not make a change durable; the change was not acknowledged."""

    code = "persistence_error"
    default_retryable = True


class StaleVersion(PersistenceError):
    """Raised when a save or delete names a version another writer already replaced (fencing).

    Retryable: the stale copy reloads (a persistent server crashes and restarts from the store),
    after which the same request can succeed.
    """

    code = "stale_version"
    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        key: str,
        expected: int | None,
        actual: int | None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message,
            context={"key": key, "expected": expected, "actual": actual, **(context or {})},
        )
        self.key, self.expected, self.actual = key, expected, actual


class StateCorrupt(PersistenceError):
    """Raised when stored state no longer decodes or validates; it is never overwritten."""

    code = "state_corrupt"
    default_retryable = False


class CircuitOpen(FoundationError):
    """Raised when a circuit breaker refuses a call; ``retry_after`` says when a trial may pass."""

    code = "circuit_open"
    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, context={"retry_after": retry_after, **(context or {})})
        self.retry_after = retry_after


class UnknownFlag(FoundationError):
    """Raised when a feature flag was never defined; define it before asking for it."""

    code = "unknown_flag"


class NotFound(FoundationError):
    """Raised when a keyed entry (dead letter, schedule, task, stored key) does not exist."""

    code = "not_found_key"


class ValidationError(FoundationError):
    """Raised when input (action params, a request, a definition) fails validation; see errors."""

    code = "validation_error"

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, context={"errors": errors or [], **(context or {})})
        self.errors = errors or []


class UnknownAction(FoundationError):
    """Raised when an agent is asked to run an action it does not define."""

    code = "unknown_action"


class UnknownCapability(FoundationError):
    """Raised when no registered agent offers a requested capability."""

    code = "unknown_capability"


class InvalidWorkflow(FoundationError):
    """Raised when a workflow definition is invalid: unknown dependencies, cycles, bad steps."""

    code = "invalid_workflow"


class WorkflowNotFound(FoundationError):
    """Raised when no workflow with the given id was ever started."""

    code = "workflow_not_found"
