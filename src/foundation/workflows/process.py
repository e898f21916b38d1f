"""WorkflowProcess: one supervised, persistent process per workflow, resumable mid-way.

It owns the workflow's state (definition, input, each step's status, result, attempts and
error) under the key ``workflow/<id>``. Ready steps run in parallel, each in a runner process
the workflow links to and owns: a runner picks an agent, calls the action with the step's
timeout and retries retryable errors by the step's policy, then reports. Each result is
recorded, durably, exactly once; a step that was running when the workflow crashed runs again
after the restart (at-least-once: the action sees ``idempotency_key`` = ``"<wf>:<step>"`` in
the step's ``context`` if it declares that param); completed steps never run again. The process
stops normally once the workflow has completed or failed, after telling the coordinator;
``cancel`` kills the running steps, records ``cancelled`` and stops.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from typing import Any, Literal

from pydantic import BaseModel

from foundation.agents.agent import find_agents, run
from foundation.errors import FoundationError, NoProcess, UnknownCapability
from foundation.kernel.api import current_pid, exit, spawn_link
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import cast
from foundation.kernel.messages import Continue, Exit, Reply, Stop
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.persistence.server import PersistentServer
from foundation.workflows.definition import Step, Workflow, ready_steps, render

__all__ = [
    "COORDINATOR",
    "StepState",
    "WorkflowProcess",
    "WorkflowState",
    "workflow_name",
]

COORDINATOR = "foundation.workflows.coordinator"
"""The registered name of the coordinator."""

Status = Literal["running", "completed", "failed", "cancelled"]


def workflow_name(workflow_id: str) -> str:
    """The local process name of a running workflow (for lookup only, never for its life)."""
    return f"workflow:{workflow_id}"


class StepState(BaseModel):
    """Where one step is: pending, running, completed or failed, with attempts and outcome."""

    status: Literal["pending", "running", "completed", "failed"] = "pending"
    result: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    agent: str | None = None


class WorkflowState(BaseModel):
    """A workflow's durable state."""

    id: str
    name: str
    definition: Workflow
    input: dict[str, Any] = {}
    status: Status = "running"
    steps: dict[str, StepState] = {}
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None


class _StepDone(BaseModel):
    step: str
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    agent: str | None = None


class WorkflowProcess(PersistentServer):
    """Runs one workflow; started by the coordinator under the WorkflowSupervisor."""

    State = WorkflowState
    trap_exit = True
    coordinator: str = COORDINATOR

    _runners: dict[str, Pid]

    async def init(self, args: tuple[str, dict[str, Any], dict[str, Any]]) -> Any:
        workflow_id, definition, inputs = args
        workflow = Workflow.model_validate(definition)
        state = WorkflowState(
            id=workflow_id,
            name=workflow.name,
            definition=workflow,
            input=inputs,
            steps={s.id: StepState() for s in workflow.steps},
            created_at=time.time(),
        )
        return self._resume(state)

    async def on_after_load(self, state: Any) -> Any:
        return self._resume(state)

    def _resume(self, state: WorkflowState) -> Any:
        self._runners = {}
        steps = {  # running at the crash: run again (completed ones never do)
            k: s.model_copy(update={"status": "pending"}) if s.status == "running" else s
            for k, s in state.steps.items()
        }
        # a coordinator that is down reconciles from the store when it comes back
        with contextlib.suppress(NoProcess):
            cast(self.coordinator, ("started", state.id, current_pid()))
        return Continue(state.model_copy(update={"steps": steps}), "advance")

    async def handle_continue(self, arg: Any, state: WorkflowState) -> Any:
        return self._advance(state)

    def _advance(self, state: WorkflowState) -> Any:
        if state.status != "running":
            return self._finish(state)
        steps = dict(state.steps)
        if any(s.status == "failed" for s in steps.values()):
            failed = next(k for k, s in steps.items() if s.status == "failed")
            err = steps[failed].error or {}
            return self._finish(
                state.model_copy(
                    update={
                        "status": "failed",
                        "error": f"step {failed!r} failed: {err.get('message', err)}",
                    }
                )
            )
        completed = {k for k, s in steps.items() if s.status == "completed"}
        if len(completed) == len(steps):
            return self._finish(state.model_copy(update={"status": "completed"}))
        started = {k for k, s in steps.items() if s.status == "running"}
        results = {k: steps[k].result for k in completed}
        me = current_pid()
        for slot, step in enumerate(ready_steps(state.definition, completed, started)):
            attempts = steps[step.id].attempts + 1
            try:
                params = render(step.params, state.input, results)
            except FoundationError as err:
                steps[step.id] = steps[step.id].model_copy(
                    update={"status": "failed", "error": err.to_dict(), "attempts": attempts}
                )
                return self._advance(state.model_copy(update={"steps": steps}))
            steps[step.id] = steps[step.id].model_copy(
                update={"status": "running", "attempts": attempts}
            )
            self._runners[step.id] = spawn_link(_run_step, me, state.id, step, params, slot)
        return state.model_copy(update={"steps": steps})

    def _finish(self, state: WorkflowState) -> Any:
        for pid in self._runners.values():
            exit(pid, "kill")
        self._runners.clear()
        final = state.model_copy(update={"finished_at": state.finished_at or time.time()})
        return Stop("normal", final)  # saved first; terminate then tells the coordinator

    async def terminate(self, reason: Any, state: Any) -> None:
        if isinstance(state, WorkflowState) and state.status != "running":
            # a coordinator that is down reads the outcome from the store when it comes back
            with contextlib.suppress(NoProcess):
                cast(self.coordinator, ("finished", state.id, state.status, state.error))

    async def handle_cast(self, request: Any, state: WorkflowState) -> Any:
        if type(request) is _StepDone:
            self._runners.pop(request.step, None)
            current = state.steps.get(request.step)
            if current is None or current.status != "running" or state.status != "running":
                return state  # settled already (or a report from before a restart)
            update: dict[str, Any] = {"agent": request.agent}
            if request.ok:
                update.update(status="completed", result=request.result, error=None)
            else:
                update.update(status="failed", error=request.error)
            steps = {**state.steps, request.step: current.model_copy(update=update)}
            return self._advance(state.model_copy(update={"steps": steps}))
        return await super().handle_cast(request, state)

    async def handle_call(self, request: Any, caller: From, state: WorkflowState) -> Any:
        if request == "cancel":
            if state.status != "running":
                return Reply(state.status, state)
            cancelled = state.model_copy(update={"status": "cancelled"})
            result = self._finish(cancelled)
            return Stop("normal", result.state, reply="cancelled")
        if request == "status":
            return Reply(state, state)
        return await super().handle_call(request, caller, state)

    async def handle_info(self, msg: Any, state: WorkflowState) -> Any:
        if type(msg) is Exit:
            for step_id, pid in list(self._runners.items()):
                if pid == msg.pid:
                    del self._runners[step_id]
                    if msg.reason != "normal" and state.steps[step_id].status == "running":
                        # killed before it could report: run it again
                        steps = {
                            **state.steps,
                            step_id: state.steps[step_id].model_copy(update={"status": "pending"}),
                        }
                        return self._advance(state.model_copy(update={"steps": steps}))
            return state
        return await super().handle_info(msg, state)


async def _run_step(
    workflow: Pid, workflow_id: str, step: Step, params: dict[str, Any], slot: int
) -> None:
    """A runner: run one step (with its retries) and report the outcome to the workflow."""
    clock = current_runtime().clock
    attempt = 0
    while True:
        attempt += 1
        agent = step.agent
        try:
            if agent is None:
                agent = _pick(step, workflow_id, slot + attempt)
            result = await run(agent, step.action, params, timeout=step.timeout)
        except FoundationError as err:
            if not err.retryable or attempt >= step.retry.max_attempts:
                error = {**err.to_dict(), "attempts": attempt}
                cast(workflow, _StepDone(step=step.id, ok=False, error=error, agent=agent))
                return
            await clock.sleep(step.retry.delay(attempt))
            continue
        cast(workflow, _StepDone(step=step.id, ok=True, result=result, agent=agent))
        return


def _pick(step: Step, workflow_id: str, turn: int) -> str:
    """A healthy live agent with the step's capability, spread by workflow and turn (steps
    started together take different turns, and each retry the next one)."""
    assert step.capability is not None
    agents = find_agents(step.capability, health="healthy")
    if not agents:
        raise UnknownCapability(
            f"no healthy agent offers {step.capability!r} (step {step.id!r})",
            retryable=True,
            context={"capability": step.capability},
        )
    spread = zlib.crc32(workflow_id.encode()) + turn
    return agents[spread % len(agents)].id
