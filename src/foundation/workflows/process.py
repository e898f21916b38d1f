"""WorkflowProcess: one supervised, persistent process per workflow, resumable mid-way.

It owns the workflow's state (definition, input, each step's status, result, attempts and
error) under the key ``workflow/<id>``. Ready steps (all dependencies completed) run in
parallel, each in a runner process the workflow links to and owns (it traps exits, so no runner
outlives it and a runner that dies is seen): a runner picks a healthy live agent with the
step's capability (spread by workflow and attempt), calls the action with the step's timeout
and retries retryable errors by the step's policy on the runtime clock, then reports.

Each result is recorded, durably, exactly once: a report for a step that is no longer running
is ignored. A step that was running when the workflow process crashed runs again after the
restart (at-least-once; give the action ``"$idempotency_key"`` in its params to make it safe),
and completed steps never run again. ``attempts`` counts the agent calls started for a step; a
step fails once ``retry.max_attempts`` calls failed with retryable errors, at the first
non-retryable one, or when its runner died that many times; a crash of the workflow process
itself never fails a step. The process stops normally once the workflow has completed or failed
(its supervisor does not restart it: ``transient``), after telling its coordinator; ``cancel``
kills the running steps' runners, records ``cancelled`` and stops. An empty workflow completes
at once. Events: ``("foundation", "workflow", "step", "stop")`` per recorded step result and
``("foundation", "workflow", "stop")`` per finished workflow.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from foundation.agents.agent import find_agents, run
from foundation.errors import (
    FoundationError,
    InvalidArgument,
    NoProcess,
    RetryExhausted,
    UnknownCapability,
    format_reason,
)
from foundation.kernel.api import current_pid, exit, spawn_link, unlink
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import cast
from foundation.kernel.messages import Continue, Exit, Reply, Stop
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.persistence.server import PersistentServer
from foundation.services.retry import retry
from foundation.workflows.definition import Step, Workflow, ready_steps, render

__all__ = [
    "COORDINATOR",
    "StepState",
    "WorkflowProcess",
    "WorkflowState",
    "workflow_key",
    "workflow_name",
]

COORDINATOR = "foundation.workflows.coordinator"
"""The registered name of the default coordinator."""

Status = Literal["running", "completed", "failed", "cancelled"]


def workflow_name(workflow_id: str) -> str:
    """The local process name of a running workflow (for lookup only, never for its life)."""
    return f"workflow:{workflow_id}"


def workflow_key(workflow_id: str) -> str:
    """Where a workflow's state is stored."""
    return f"workflow/{workflow_id}"


class StepState(BaseModel):
    """Where one step is: pending, running, completed or failed, with attempts and outcome."""

    status: Literal["pending", "running", "completed", "failed"] = "pending"
    result: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    agent: str | None = None


class WorkflowState(BaseModel):
    """A workflow's durable state (times are wall-clock seconds, for people)."""

    id: str
    name: str
    definition: Workflow
    input: dict[str, Any] = {}
    status: Status = "running"
    steps: dict[str, StepState] = {}
    error: str | None = None
    coordinator: str = COORDINATOR
    created_at: float = 0.0
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class _StepDone:
    step: str
    ok: bool
    result: Any
    error: dict[str, Any] | None
    agent: str | None
    attempts: int


class WorkflowProcess(PersistentServer):
    """Runs one workflow; started by its coordinator under the WorkflowSupervisor."""

    State = WorkflowState
    trap_exit = True

    _runners: dict[str, Pid]

    async def init(self, args: tuple[str, dict[str, Any], dict[str, Any], str]) -> Any:
        workflow_id, definition, inputs, coordinator = args
        workflow = Workflow.model_validate(definition)
        state = WorkflowState(
            id=workflow_id,
            name=workflow.name,
            definition=workflow,
            input=inputs,
            steps={s.id: StepState() for s in workflow.steps},
            coordinator=coordinator,
            created_at=time.time(),
        )
        self._runners = {}
        return Continue(state, "advance")  # the coordinator that started it knows its pid

    async def on_after_load(self, state: Any) -> Any:
        self._runners = {}
        steps = {  # running at the crash: run again (completed ones never do)
            k: s.model_copy(update={"status": "pending"}) if s.status == "running" else s
            for k, s in state.steps.items()
        }
        # a coordinator that is down reconciles from the store when it comes back
        with contextlib.suppress(NoProcess):
            cast(state.coordinator, ("started", state.id, current_pid(), state.name))
        return Continue(state.model_copy(update={"steps": steps}), "advance")

    async def handle_continue(self, arg: Any, state: WorkflowState) -> Any:
        return self._advance(state)

    def _advance(self, state: WorkflowState) -> Any:
        """Finish the workflow, or start every ready step; the new state."""
        if state.status != "running":
            return self._finish(state)
        steps = dict(state.steps)
        failed = next((k for k, s in steps.items() if s.status == "failed"), None)
        if failed is not None:
            err = steps[failed].error or {}
            error = f"step {failed!r} failed: {err.get('message', err)}"
            return self._finish(state.model_copy(update={"status": "failed", "error": error}))
        completed = {k for k, s in steps.items() if s.status == "completed"}
        if len(completed) == len(steps):
            return self._finish(state.model_copy(update={"status": "completed"}))
        started = {k for k, s in steps.items() if s.status == "running"}
        results = {k: steps[k].result for k in completed}
        me = current_pid()
        for slot, step in enumerate(ready_steps(state.definition, completed, started)):
            prev = steps[step.id].attempts
            try:
                params = render(
                    step.params, state.input, results, workflow_id=state.id, step_id=step.id
                )
            except FoundationError as err:
                steps[step.id] = steps[step.id].model_copy(
                    update={"status": "failed", "error": err.to_dict()}
                )
                return self._advance(state.model_copy(update={"steps": steps}))
            steps[step.id] = steps[step.id].model_copy(
                update={"status": "running", "attempts": prev + 1}
            )
            self._runners[step.id] = spawn_link(_run_step, me, state.id, step, params, prev, slot)
        return state.model_copy(update={"steps": steps})

    def _finish(self, state: WorkflowState) -> Any:
        for pid in self._runners.values():
            exit(pid, "kill")
        self._runners.clear()
        final = state.model_copy(update={"finished_at": state.finished_at or time.time()})
        rt = current_runtime()
        if rt.event_handlers:
            rt.emit(
                ("foundation", "workflow", "stop"),
                {"steps": len(final.steps)},
                {"workflow": final.id, "name": final.name, "status": final.status},
            )
        return Stop("normal", final)  # saved first; terminate then tells the coordinator

    async def terminate(self, reason: Any, state: Any) -> None:
        if isinstance(state, WorkflowState) and state.status != "running":
            # a coordinator that is down reads the outcome from the store when it comes back
            with contextlib.suppress(NoProcess):
                cast(state.coordinator, ("finished", state.id, state.status, state.error))

    async def handle_cast(self, request: Any, state: WorkflowState) -> Any:
        if type(request) is _StepDone:
            return self._record(request, state)
        if request == "cancel":
            return self._cancel(state)
        return await super().handle_cast(request, state)

    def _record(self, done: _StepDone, state: WorkflowState) -> Any:
        """Record a runner's report, once, and go on."""
        self._runners.pop(done.step, None)
        current = state.steps.get(done.step)
        if current is None or current.status != "running" or state.status != "running":
            return state  # settled already
        update: dict[str, Any] = {"agent": done.agent, "attempts": done.attempts}
        if done.ok:
            update.update(status="completed", result=done.result, error=None)
        else:
            update.update(status="failed", error=done.error)
        rt = current_runtime()
        if rt.event_handlers:
            rt.emit(
                ("foundation", "workflow", "step", "stop"),
                {"attempts": done.attempts},
                {"workflow": state.id, "step": done.step, "ok": done.ok, "agent": done.agent},
            )
        steps = {**state.steps, done.step: current.model_copy(update=update)}
        return self._advance(state.model_copy(update={"steps": steps}))

    def _cancel(self, state: WorkflowState) -> Any:
        if state.status != "running":
            return self._finish(state)
        return self._finish(state.model_copy(update={"status": "cancelled"}))

    async def handle_call(self, request: Any, caller: From, state: WorkflowState) -> Any:
        if request == "cancel":
            result = self._cancel(state)
            return Stop("normal", result.state, reply=result.state.status)
        if request == "status":
            return Reply(state, state)
        return await super().handle_call(request, caller, state)

    async def handle_info(self, msg: Any, state: WorkflowState) -> Any:
        if type(msg) is Exit:
            for step_id, pid in list(self._runners.items()):
                if pid == msg.pid:
                    del self._runners[step_id]
                    if msg.reason != "normal" and state.steps[step_id].status == "running":
                        return self._runner_died(state, step_id, msg.reason)
            return state
        return await super().handle_info(msg, state)

    def _runner_died(self, state: WorkflowState, step_id: str, reason: Any) -> Any:
        """A runner died before it reported: run the step again, within its attempts."""
        current = state.steps[step_id]
        if current.attempts < state.definition.step(step_id).retry.max_attempts:
            update: dict[str, Any] = {"status": "pending"}
        else:
            error = InvalidArgument(
                f"the runner of step {step_id!r} died {current.attempts} times, last with "
                f"{format_reason(reason)}",
                context={"step": step_id},
            )
            update = {"status": "failed", "error": error.to_dict()}
        steps = {**state.steps, step_id: current.model_copy(update=update)}
        return self._advance(state.model_copy(update={"steps": steps}))


async def _run_step(
    workflow: Pid, workflow_id: str, step: Step, params: dict[str, Any], prev: int, slot: int
) -> None:
    """A runner: run one step (with its retries) and report the outcome to the workflow.

    ``prev`` attempts were made before this runner; it makes at most the rest of the step's
    ``max_attempts`` (at least one: a workflow restart never uses up a step).
    """
    calls = 0
    agent: str | None = step.agent

    async def attempt() -> Any:
        nonlocal calls, agent
        calls += 1
        agent = step.agent if step.agent is not None else _pick(step, workflow_id, slot + calls)
        return await run(agent, step.action, params, timeout=step.timeout)

    budget = max(1, step.retry.max_attempts - prev)
    ok = False
    result: Any = None
    error: dict[str, Any] | None = None
    try:
        policy = step.retry.to_retry(budget, seed=f"{workflow_id}:{step.id}:{prev}")
        value = await retry(attempt, policy=policy)
        result = to_jsonable_python(value)
        ok = True
    except RetryExhausted as exc:
        cause = exc.__cause__
        err = cause if isinstance(cause, FoundationError) else exc
        error = {**err.to_dict(), "message": f"{err.message} (after {prev + calls} attempts)"}
    except FoundationError as err:
        error = err.to_dict()
    except PydanticSerializationError as exc:
        bad = InvalidArgument(
            f"step {step.id!r}: {agent!r}.{step.action} returned a result that is not "
            f"JSON-ready, so it cannot be recorded: {exc}",
            context={"step": step.id, "agent": agent, "action": step.action},
        )
        error = bad.to_dict()
    unlink(workflow)  # reported: no exit message to handle after this
    cast(workflow, _StepDone(step.id, ok, result, error, agent, prev + calls))


def _pick(step: Step, workflow_id: str, turn: int) -> str:
    """A healthy live agent with the step's capability, spread by workflow and turn (steps
    started together take different turns, and each retry the next one)."""
    assert step.capability is not None
    agents = find_agents(step.capability, health="healthy")
    if not agents:
        raise UnknownCapability(
            f"no healthy agent offers {step.capability!r} (step {step.id!r})",
            retryable=True,
            context={"capability": step.capability, "step": step.id},
        )
    spread = zlib.crc32(workflow_id.encode()) + turn
    return agents[spread % len(agents)].id
