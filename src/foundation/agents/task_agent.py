"""TaskAgent: a durable queue of tasks that leave it only once they have completed.

``queue_task`` makes the task durable before it answers with the task id; the agent then runs up
to ``max_concurrent`` tasks at once, each in a runner process it owns (linked: a crash of the
agent takes its runners with it), with a per-task timeout. A task leaves the queue when its
outcome is recorded, durably. Tasks in flight at a crash are run again after the restart:
delivery is at-least-once, so ``perform`` gets the attempt number and an idempotency key.
``max_error_threshold`` consecutive failures pause the agent (``resume`` to go on); a full queue
is refused with ``Overloaded``. Override ``perform(task)``: it runs in the runner, not in the
agent, so it must not touch the agent's state; its result must be JSON-ready.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from foundation.agents.action import action
from foundation.agents.agent import Agent
from foundation.errors import FoundationError, NotFound, Overloaded
from foundation.kernel.api import current_pid, spawn_link
from foundation.kernel.gen_server import call, cast, reply
from foundation.kernel.messages import Exit, NoReply, Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From

__all__ = ["TaskAgent", "TaskOutcome", "TaskRecord", "TaskStats"]


class TaskRecord(BaseModel):
    """A queued task: what to run, and how many times it was started."""

    id: str
    type: str
    payload: dict[str, Any] = {}
    idempotency_key: str
    attempts: int = 0
    status: Literal["queued", "running"] = "queued"
    queued_at: float = 0.0


class TaskOutcome(BaseModel):
    """A finished task: its result or error, and how many attempts it took."""

    id: str
    type: str
    idempotency_key: str
    status: Literal["completed", "failed"]
    result: Any = None
    error: dict[str, Any] | None = None
    attempts: int
    finished_at: float


class TaskStats(BaseModel):
    """What ``stats`` reports: queue size, running, processed and failed counts, pause state."""

    queued: int
    running: int
    processed: int
    failed: int
    consecutive_errors: int
    paused: bool
    pause_reason: str | None


class _QueueParams(BaseModel):
    type: str = Field(min_length=1)
    payload: dict[str, Any] = {}
    idempotency_key: str | None = None
    priority: Literal["normal", "high"] = "normal"


class _IdParams(BaseModel):
    id: str


class _Done(BaseModel):
    id: str
    attempt: int
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None


class TaskAgent(Agent):
    """A durable task queue agent; subclass and override ``perform``. See the module doc."""

    capabilities: ClassVar[tuple[str, ...]] = ("tasks",)
    trap_exit = True
    max_concurrent: ClassVar[int] = 4
    task_timeout: ClassVar[float] = 30.0
    max_error_threshold: ClassVar[int] = 10
    max_queue: ClassVar[int] = 1000
    keep_outcomes: ClassVar[int] = 1000

    class State(BaseModel):
        """The queue (tasks leave it only when done), recent outcomes and counters."""

        queue: list[TaskRecord] = []
        outcomes: dict[str, TaskOutcome] = {}
        paused: bool = False
        pause_reason: str | None = None
        consecutive_errors: int = 0
        processed: int = 0
        failed: int = 0
        next_id: int = 1

    _runners: dict[str, Pid]
    _drain_waiters: list[From]

    async def perform(self, task: TaskRecord) -> Any:
        """Run one task (in a runner process); its return value is the task's result."""
        raise NotImplementedError(f"{type(self).__name__} must override perform(task)")

    # -- actions -------------------------------------------------------------------------------

    @action(params=_QueueParams)
    async def queue_task(self, params: _QueueParams, state: State) -> tuple[str, State]:
        """Queue a task durably; answers its id (the same id again for a known idempotency key)."""
        key = params.idempotency_key
        if key is not None:
            for task in state.queue:
                if task.idempotency_key == key:
                    return task.id, state
            for outcome in state.outcomes.values():
                if outcome.idempotency_key == key:
                    return outcome.id, state
        if len(state.queue) >= self.max_queue:
            raise Overloaded(
                f"task queue of {self.agent_id!r} is full ({self.max_queue} tasks)",
                context={"agent": self.agent_id, "max_queue": self.max_queue},
            )
        task_id = f"{self.agent_id}-{state.next_id}"
        task = TaskRecord(
            id=task_id,
            type=params.type,
            payload=params.payload,
            idempotency_key=key or task_id,
            queued_at=time.time(),
        )
        queue = [task, *state.queue] if params.priority == "high" else [*state.queue, task]
        new = state.model_copy(update={"queue": queue, "next_id": state.next_id + 1})
        return task_id, self._dispatch(new)

    @action(params=_IdParams)
    async def task_status(self, params: _IdParams, state: State) -> tuple[dict[str, Any], State]:
        """Where a task is: queued or running (with attempts), or its outcome."""
        for task in state.queue:
            if task.id == params.id:
                return {"id": task.id, "status": task.status, "attempts": task.attempts}, state
        outcome = state.outcomes.get(params.id)
        if outcome is None:
            raise NotFound(f"agent {self.agent_id!r} has no task {params.id!r}")
        return outcome.model_dump(mode="json"), state

    @action
    async def stats(self, state: State) -> tuple[TaskStats, State]:
        """Queue size, running, processed and failed counts, and the pause state."""
        return (
            TaskStats(
                queued=sum(1 for t in state.queue if t.status == "queued"),
                running=sum(1 for t in state.queue if t.status == "running"),
                processed=state.processed,
                failed=state.failed,
                consecutive_errors=state.consecutive_errors,
                paused=state.paused,
                pause_reason=state.pause_reason,
            ),
            state,
        )

    @action
    async def pause(self, state: State) -> tuple[None, State]:
        """Stop starting tasks (those running finish); durable across restarts."""
        return None, state.model_copy(update={"paused": True, "pause_reason": "paused"})

    @action
    async def resume(self, state: State) -> tuple[None, State]:
        """Start tasks again, and forget the consecutive error count."""
        new = state.model_copy(
            update={"paused": False, "pause_reason": None, "consecutive_errors": 0}
        )
        return None, self._dispatch(new)

    # -- running -------------------------------------------------------------------------------

    async def on_start(self, state: Any) -> Any:
        self._runners = {}
        self._drain_waiters = []
        queue = [
            t.model_copy(update={"status": "queued"}) if t.status == "running" else t
            for t in state.queue
        ]  # in flight at the crash: they run again (at-least-once)
        return self._dispatch(state.model_copy(update={"queue": queue}))

    def _dispatch(self, state: Any) -> Any:
        """Start queued tasks up to ``max_concurrent``; marks them running in the state."""
        running = sum(1 for t in state.queue if t.status == "running")
        if state.paused or running >= self.max_concurrent:
            return state
        queue = list(state.queue)
        me = current_pid()
        for i, task in enumerate(queue):
            if running >= self.max_concurrent:
                break
            if task.status != "queued":
                continue
            started = queue[i] = task.model_copy(
                update={"status": "running", "attempts": task.attempts + 1}
            )
            running += 1
            self._runners[task.id] = spawn_link(
                _run_task, me, self.perform, started, self.task_timeout
            )
        return state.model_copy(update={"queue": queue})

    async def handle_cast(self, request: Any, state: Any) -> Any:
        if type(request) is _Done:
            return self._finish(request, state)
        return await super().handle_cast(request, state)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is Exit:
            for task_id, pid in list(self._runners.items()):
                if pid == msg.pid:
                    del self._runners[task_id]
                    if msg.reason != "normal":  # killed before it could report
                        error = {"code": "runner_exited", "message": str(msg.reason)}
                        return self._finish(
                            _Done(id=task_id, attempt=0, ok=False, error=error), state
                        )
            return state
        return await super().handle_info(msg, state)

    def _finish(self, done: _Done, state: Any) -> Any:
        self._runners.pop(done.id, None)
        task = next((t for t in state.queue if t.id == done.id), None)
        if task is None or task.status != "running":
            return state  # a report from before a restart, already settled
        outcome = TaskOutcome(
            id=task.id,
            type=task.type,
            idempotency_key=task.idempotency_key,
            status="completed" if done.ok else "failed",
            result=done.result,
            error=done.error,
            attempts=task.attempts,
            finished_at=time.time(),
        )
        outcomes = dict(state.outcomes)
        outcomes[task.id] = outcome
        while len(outcomes) > self.keep_outcomes:
            del outcomes[next(iter(outcomes))]
        errors = 0 if done.ok else state.consecutive_errors + 1
        update: dict[str, Any] = {
            "queue": [t for t in state.queue if t.id != done.id],
            "outcomes": outcomes,
            "processed": state.processed + 1,
            "failed": state.failed + (0 if done.ok else 1),
            "consecutive_errors": errors,
        }
        if errors >= self.max_error_threshold and not state.paused:
            update["paused"] = True
            update["pause_reason"] = f"{errors} consecutive task errors"
        new = self._dispatch(state.model_copy(update=update))
        idle = not any(t.status == "running" for t in new.queue)
        if not new.queue or (new.paused and idle):
            waiters, self._drain_waiters = self._drain_waiters, []
            for caller in waiters:
                reply(caller, None)
        return new

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        if request == ("__drain__",):
            idle = not any(t.status == "running" for t in state.queue)
            if not state.queue or (state.paused and idle):
                return Reply(None, state)
            self._drain_waiters.append(caller)
            return NoReply(state)
        return await super().handle_call(request, caller, state)

    @staticmethod
    async def complete_all_sync(agent: Any, timeout: float | None = 30.0) -> None:
        """Return once the queue is empty, or paused with nothing running: the queue's test twin."""
        await call(agent, ("__drain__",), timeout)


async def _run_task(agent: Pid, perform: Any, task: TaskRecord, timeout: float) -> None:
    """A runner process: performs one task and reports its outcome to the agent by a cast."""
    error: dict[str, Any] | None = None
    value: Any = None
    try:
        async with asyncio.timeout(timeout):
            value = await perform(task)
        json.dumps(value)
    except TimeoutError:
        error = {"code": "timeout", "message": f"task {task.id} took longer than {timeout}s"}
    except FoundationError as exc:  # the task's own failure is its outcome, recorded
        error = exc.to_dict()
    except Exception as exc:  # likewise: a handler's bug (or a result that is not JSON-ready)
        error = {  # fails that task, never the agent
            "code": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exception(exc)[-3:],
        }
    ok = error is None
    done = _Done(
        id=task.id, attempt=task.attempts, ok=ok, result=value if ok else None, error=error
    )
    cast(agent, done)
