"""The workflow API: start, await, inspect, cancel and list workflows.

Every function talks to the coordinator registered as ``coordinator`` (default: the one of
``WorkflowSystem.child_specs()``). While that coordinator is being restarted, a request is
sent again (on the runtime clock, within its timeout): every request is idempotent.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from foundation.agents.action import validation_error
from foundation.agents.agent import find_agents
from foundation.errors import (
    CallTimeout,
    InvalidArgument,
    NoProcess,
    PersistenceError,
    ProcessExited,
    UnknownCapability,
    WorkflowNotFound,
)
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import call
from foundation.kernel.supervision import unwrap
from foundation.workflows.coordinator import FINISHED, WorkflowEntry, load_workflow
from foundation.workflows.definition import Workflow
from foundation.workflows.process import COORDINATOR, WorkflowState

__all__ = [
    "await_workflow",
    "cancel_workflow",
    "list_workflows",
    "start_workflow",
    "workflow_status",
]


async def _ask(coordinator: str, request: tuple[Any, ...], timeout: float | None, what: str) -> Any:
    """Call the coordinator, asking again while it is restarted, up to ``timeout`` seconds."""
    clock = current_runtime().clock
    deadline = None if timeout is None else clock.now() + timeout
    delay = 0.001
    while True:
        left = None if deadline is None else max(deadline - clock.now(), 0.0)
        try:
            return unwrap(await call(coordinator, request, left))
        except (NoProcess, ProcessExited):
            if deadline is not None and clock.now() + delay >= deadline:
                raise CallTimeout(
                    f"{what}: the workflow coordinator {coordinator!r} was not running for "
                    f"{timeout}s",
                    context={"coordinator": coordinator},
                ) from None
            await clock.sleep(delay)  # it is being restarted by its supervisor
            delay = min(delay * 2, 0.1)
        except CallTimeout:
            raise CallTimeout(
                f"{what}: no answer within {timeout}s", context={"coordinator": coordinator}
            ) from None


async def start_workflow(
    workflow: Workflow | dict[str, Any],
    input: dict[str, Any] | None = None,
    *,
    workflow_id: str | None = None,
    coordinator: str = COORDINATOR,
    timeout: float | None = 30.0,
) -> str:
    """Validate ``workflow`` and start it with ``input``; its id. Nothing starts if invalid.

    With ``workflow_id``, starting is idempotent: a workflow already started under that id is
    not started again (its id is returned), so a client that crashed may simply submit again.

    Raises ``ValidationError`` (a malformed definition), ``InvalidWorkflow`` (duplicate ids,
    unknown dependencies, cycles, bad templates, ``$input`` paths the input lacks) or
    ``UnknownCapability`` (no live agent offers a step's capability).
    """
    if not isinstance(workflow, Workflow):
        try:
            workflow = Workflow.model_validate(workflow)
        except PydanticValidationError as exc:
            raise validation_error("workflow definition", exc) from None
    if input is None:
        input = {}
    if not isinstance(input, dict):
        raise InvalidArgument(f"workflow input must be a dict, not {type(input).__name__}")
    workflow.validate_graph()
    workflow.check_input(input)
    for step in workflow.steps:
        if step.capability is not None and not find_agents(step.capability):
            raise UnknownCapability(
                f"workflow {workflow.name!r}, step {step.id!r}: no agent offers "
                f"{step.capability!r}",
                context={"step": step.id, "capability": step.capability},
            )
    if workflow_id is None:
        workflow_id = uuid.uuid4().hex[:16]
    elif not isinstance(workflow_id, str) or not workflow_id or "/" in workflow_id:
        raise InvalidArgument(f"invalid workflow id {workflow_id!r}: a non-empty str without /")
    definition = workflow.model_dump(mode="json")
    request = ("start", workflow_id, definition, input)
    return str(await _ask(coordinator, request, timeout, f"start_workflow {workflow.name!r}"))


async def await_workflow(
    workflow_id: str, timeout: float | None = 30.0, *, coordinator: str = COORDINATOR
) -> WorkflowEntry:
    """Wait until the workflow has finished; its entry (status, error). No polling: the
    coordinator answers when it learns the outcome. ``CallTimeout`` after ``timeout``."""
    what = f"await_workflow {workflow_id!r}"
    entry = await _ask(coordinator, ("await", workflow_id), timeout, what)
    if entry is None:
        raise WorkflowNotFound(
            f"no workflow {workflow_id!r} was ever started", context={"workflow": workflow_id}
        )
    assert isinstance(entry, WorkflowEntry)
    return entry


async def workflow_status(workflow_id: str) -> WorkflowState:
    """The workflow's full state (status, each step's status, result, attempts and error),
    from the store: as of its last step result, and after it has finished."""
    store = current_runtime().store
    if store is None:
        raise PersistenceError("the runtime has no state store: workflows need one")
    state = await load_workflow(store, workflow_id)
    if state is None:
        raise WorkflowNotFound(
            f"no workflow {workflow_id!r} was ever started", context={"workflow": workflow_id}
        )
    return state


async def cancel_workflow(
    workflow_id: str, timeout: float | None = 30.0, *, coordinator: str = COORDINATOR
) -> str:
    """Cancel a workflow: its running steps are stopped; its final status (``cancelled``, or
    how it finished if it finished first). The cancel is durable once asked."""
    what = f"cancel_workflow {workflow_id!r}"
    entry = await _ask(coordinator, ("cancel", workflow_id), timeout, what)
    if entry is None:
        raise WorkflowNotFound(
            f"no workflow {workflow_id!r} was ever started", context={"workflow": workflow_id}
        )
    assert isinstance(entry, WorkflowEntry)
    return entry.status


async def list_workflows(
    status: str | None = None, *, coordinator: str = COORDINATOR, timeout: float | None = 30.0
) -> dict[str, WorkflowEntry]:
    """The workflows the coordinator tracks (all running ones and the most recently finished;
    see ``Coordinator``), with ``status`` if given, by id."""
    if status is not None and status not in ("running", *FINISHED):
        raise InvalidArgument(
            f"invalid workflow status {status!r}: one of {['running', *FINISHED]}"
        )
    found = await _ask(coordinator, ("list", status), timeout, "list_workflows")
    assert isinstance(found, dict)
    return found
