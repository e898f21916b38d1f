"""The Coordinator (small, persistent) and the WorkflowSupervisor, with the workflow API.

The coordinator validates a request, asks the ``WorkflowSupervisor`` (a DynamicSupervisor of
transient children) to start one ``WorkflowProcess``, and keeps workflow id -> status in its
own persisted state; it runs no step itself. On every start it reconciles with the store: a
workflow it does not know yet is adopted, a finished one gets its final status, and one that
is neither running nor finished is started again. ``await_workflow`` is answered when the
coordinator learns the outcome (no polling); should the coordinator crash meanwhile, the API
asks the new one.

``WorkflowSystem.child_specs()`` gives the supervisor then the coordinator, in start order.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel

from foundation.agents.agent import find_agents
from foundation.errors import (
    AlreadyStarted,
    CallTimeout,
    FoundationError,
    InvalidArgument,
    NoProcess,
    ProcessExited,
    UnknownCapability,
    WorkflowNotFound,
)
from foundation.kernel.api import monitor
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.context import current_runtime
from foundation.kernel.dynamic_supervisor import DynamicSupervisor
from foundation.kernel.gen_server import call, reply
from foundation.kernel.messages import Down, NoReply, Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.persistence.server import PersistentServer
from foundation.workflows.definition import Workflow
from foundation.workflows.process import (
    COORDINATOR,
    WorkflowProcess,
    WorkflowState,
    workflow_name,
)

__all__ = [
    "Coordinator",
    "WORKFLOW_SUPERVISOR",
    "WorkflowEntry",
    "WorkflowSupervisor",
    "WorkflowSystem",
    "await_workflow",
    "cancel_workflow",
    "list_workflows",
    "start_workflow",
    "workflow_status",
]

WORKFLOW_SUPERVISOR = "foundation.workflows.supervisor"
"""The registered name of the workflow supervisor."""

_FINISHED = ("completed", "failed", "cancelled")


class WorkflowEntry(BaseModel):
    """What the coordinator keeps of one workflow."""

    name: str
    status: Literal["running", "completed", "failed", "cancelled"] = "running"
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None


class WorkflowSupervisor(DynamicSupervisor):
    """Supervises one WorkflowProcess per workflow (transient: a finished one stays down)."""


class Coordinator(PersistentServer):
    """Routes and tracks workflows; see the module docstring."""

    class State(BaseModel):
        """Every workflow the coordinator knows, by id."""

        workflows: dict[str, WorkflowEntry] = {}

    supervisor: str = WORKFLOW_SUPERVISOR
    _waiters: dict[str, list[From]]

    async def init(self, args: Any) -> Any:
        return await self._reconcile(self.State())

    async def on_after_load(self, state: Any) -> Any:
        return await self._reconcile(state)

    async def _reconcile(self, state: Any) -> Any:
        """Adopt, settle or restart every stored workflow (see the module docstring)."""
        self._waiters = {}
        rt = current_runtime()
        workflows = dict(state.workflows)
        for key in await self._store().list("workflow/"):
            rec = await self._store().load(key)
            if rec is None:
                continue
            stored = WorkflowState.model_validate(rec.data)
            entry = workflows.get(stored.id) or WorkflowEntry(
                name=stored.name, created_at=stored.created_at
            )
            if stored.status in _FINISHED:
                entry = entry.model_copy(
                    update={
                        "status": stored.status,
                        "error": stored.error,
                        "finished_at": stored.finished_at,
                    }
                )
            elif entry.status == "running":
                pid = rt.whereis(workflow_name(stored.id))
                if pid is None:
                    pid = await self._start_process(stored.id, None)
                monitor(pid)
            workflows[stored.id] = entry
        return state.model_copy(update={"workflows": workflows})

    async def _start_process(self, workflow_id: str, args: Any) -> Pid:
        """Start (or resume from its stored state) the process of ``workflow_id``."""
        spec = WorkflowProcess.child_spec(
            args,
            key=f"workflow/{workflow_id}",
            name=workflow_name(workflow_id),
            restart="transient",
        )
        try:
            pid = await DynamicSupervisor.start_child(self.supervisor, spec)
        except AlreadyStarted as exc:
            return exc.pid  # type: ignore[return-value]
        assert pid is not None
        return pid

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        kind = request[0]
        if kind == "start":
            _, workflow_id, definition, inputs = request
            if workflow_id in state.workflows:
                return Reply(workflow_id, state)  # started before: starting is idempotent
            entry = WorkflowEntry(name=definition["name"], created_at=time.time())
            workflows = {**state.workflows, workflow_id: entry}
            pid = await self._start_process(workflow_id, (workflow_id, definition, inputs))
            monitor(pid)
            return Reply(workflow_id, state.model_copy(update={"workflows": workflows}))
        if kind == "await":
            entry = state.workflows.get(request[1])
            if entry is None:
                return Reply(None, state)
            if entry.status in _FINISHED:
                return Reply(entry, state)
            self._waiters.setdefault(request[1], []).append(caller)
            return NoReply(state)
        if kind == "get":
            return Reply(state.workflows.get(request[1]), state)
        if kind == "list":
            status = request[1]
            return Reply(
                {k: e for k, e in state.workflows.items() if status in (None, e.status)}, state
            )
        if kind == "cancel":
            entry = state.workflows.get(request[1])
            if entry is None:
                return Reply(None, state)
            running = current_runtime().whereis(workflow_name(request[1]))
            if running is not None and entry.status == "running":
                # it may finish meanwhile: its outcome then arrives as "finished"
                with contextlib.suppress(NoProcess, ProcessExited):
                    await call(running, "cancel")
            return Reply(state.workflows[request[1]], state)
        return await super().handle_call(request, caller, state)

    async def handle_cast(self, request: Any, state: Any) -> Any:
        kind = request[0]
        if kind == "finished":
            _, workflow_id, status, error = request
            entry = state.workflows.get(workflow_id)
            if entry is None:
                return state
            entry = entry.model_copy(
                update={"status": status, "error": error, "finished_at": time.time()}
            )
            for waiter in self._waiters.pop(workflow_id, []):
                reply(waiter, entry)  # held until the new state is durable
            return state.model_copy(update={"workflows": {**state.workflows, workflow_id: entry}})
        if kind == "started":
            monitor(request[2])
            return state
        return await super().handle_cast(request, state)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is Down:
            return state  # a restarted workflow says "started" again; a finished one said so
        return await super().handle_info(msg, state)


class WorkflowSystem:
    """The workflow layer's processes, in the order to start them."""

    @staticmethod
    def child_specs(*, max_restarts: int = 10_000, max_seconds: float = 5.0) -> list[ChildSpec]:
        """The workflow supervisor, then the coordinator (state key ``workflows/coordinator``)."""
        return [
            WorkflowSupervisor.child_spec(
                name=WORKFLOW_SUPERVISOR, max_restarts=max_restarts, max_seconds=max_seconds
            ),
            Coordinator.child_spec(key="workflows/coordinator", name=COORDINATOR),
        ]


async def _coordinator_call(request: Any, timeout: float | None) -> Any:
    """Call the coordinator, asking again if it crashed or is restarting, up to ``timeout``."""
    clock = current_runtime().clock
    deadline = None if timeout is None else clock.now() + timeout
    delay = 0.001
    while True:
        left = None if deadline is None else max(deadline - clock.now(), 0.0)
        try:
            return await call(COORDINATOR, request, left)
        except (NoProcess, ProcessExited):
            if deadline is not None and clock.now() + delay >= deadline:
                raise CallTimeout(
                    f"the workflow coordinator did not answer {request[0]!r} within {timeout}s",
                    context={"request": request[0]},
                ) from None
            await clock.sleep(delay)  # it is being restarted by its supervisor
            delay = min(delay * 2, 0.1)


async def start_workflow(
    workflow: Workflow | dict[str, Any],
    input: dict[str, Any] | None = None,
    *,
    workflow_id: str | None = None,
) -> str:
    """Validate ``workflow`` and start it; its id. Nothing starts if it is invalid.

    With ``workflow_id``, starting is idempotent: a workflow already started under that id is
    not started again (its id is returned), so a client that crashed may simply submit again.

    Raises ``InvalidWorkflow`` (unknown dependencies, duplicate ids, cycles), ``ValidationError``
    (a malformed definition) or ``UnknownCapability`` (no live agent offers a step's).
    """
    from foundation.agents.action import validation_error

    if not isinstance(workflow, Workflow):
        try:
            workflow = Workflow.model_validate(workflow)
        except Exception as exc:
            from pydantic import ValidationError as PydanticValidationError

            if isinstance(exc, PydanticValidationError):
                raise validation_error("workflow definition", exc) from None
            raise
    if input is not None and not isinstance(input, dict):
        raise InvalidArgument(f"workflow input must be a dict, not {type(input).__name__}")
    workflow.validate_graph()
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
    return str(
        await _coordinator_call(("start", workflow_id, definition, input or {}), timeout=30.0)
    )


async def await_workflow(workflow_id: str, timeout: float | None = 30.0) -> WorkflowEntry:
    """Wait until the workflow has finished; its entry (status, error). No polling."""
    clock = current_runtime().clock
    deadline = None if timeout is None else clock.now() + timeout
    while True:
        left = None if deadline is None else max(deadline - clock.now(), 0.0)
        try:
            entry = await call(COORDINATOR, ("await", workflow_id), left)
        except (NoProcess, ProcessExited):  # the coordinator crashed: ask its successor
            entry = await _coordinator_call(("get", workflow_id), left)
            if entry is not None and entry.status not in _FINISHED:
                continue
        if entry is None:
            raise WorkflowNotFound(f"no workflow {workflow_id!r} was ever started")
        assert isinstance(entry, WorkflowEntry)
        return entry


async def workflow_status(workflow_id: str) -> WorkflowState:
    """The workflow's full state (steps, results, errors), from the store."""
    rec = await _store().load(f"workflow/{workflow_id}")
    if rec is None:
        raise WorkflowNotFound(f"no workflow {workflow_id!r} was ever started")
    return WorkflowState.model_validate(rec.data)


async def cancel_workflow(workflow_id: str) -> str:
    """Stop a running workflow (its running steps are killed); its status after."""
    entry = await _coordinator_call(("cancel", workflow_id), timeout=30.0)
    if entry is None:
        raise WorkflowNotFound(f"no workflow {workflow_id!r} was ever started")
    final = await await_workflow(workflow_id)
    return final.status


async def list_workflows(status: str | None = None) -> dict[str, WorkflowEntry]:
    """Every workflow the coordinator knows (with ``status``, if given), by id."""
    if status is not None and status not in ("running", *_FINISHED):
        raise InvalidArgument(f"invalid workflow status {status!r}")
    found = await _coordinator_call(("list", status), timeout=30.0)
    assert isinstance(found, dict)
    return found


def _store() -> Any:
    store = current_runtime().store
    if store is None:
        raise FoundationError("the runtime has no state store: workflows need one")
    return store
