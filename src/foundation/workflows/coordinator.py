"""The Coordinator: small and persistent; it starts workflows and tracks their status.

It validates nothing twice (``start_workflow`` validates in the caller), runs no step itself
and never depends on a registry for a workflow's life: it asks its ``WorkflowSupervisor`` (a
DynamicSupervisor of transient children) to start one ``WorkflowProcess`` per workflow, keeps
workflow id -> status in its own persisted state and each running workflow's pid in memory
(pids mean nothing to a later runtime; every WorkflowProcess announces its pid on each start,
and the kernel's local names serve for lookup only).

Each WorkflowProcess tells its coordinator when it starts and when it finishes; ``await`` and
``cancel`` requests are answered then (deferred replies, no polling). A cancel is durable: it is
recorded first and sent to the workflow on each of its (re)starts until it has finished.

On every start the coordinator reconciles with the store before serving: a stored workflow it
tracks as running but whose record has finished gets that outcome; one whose process is not
alive is started again (it resumes from its record); one it does not know yet is adopted; a
record that no longer validates fails its workflow with ``StateCorrupt``. It keeps every running
workflow and the ``keep_finished`` most recently finished ones; older finished workflows are
answered from their records in the store.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from foundation.errors import (
    AlreadyStarted,
    FoundationError,
    InvalidArgument,
    NoProcess,
    StateCorrupt,
)
from foundation.kernel.api import monitor
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.dynamic_supervisor import DynamicSupervisor
from foundation.kernel.gen_server import cast, reply
from foundation.kernel.messages import Continue, Down, NoReply, Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed
from foundation.persistence.server import PersistentServer
from foundation.workflows.process import (
    WorkflowProcess,
    WorkflowState,
    workflow_key,
    workflow_name,
)
from foundation.workflows.supervisor import WORKFLOW_SUPERVISOR

__all__ = ["Coordinator", "FINISHED", "WorkflowEntry", "load_workflow"]

FINISHED = ("completed", "failed", "cancelled")
"""The statuses of a workflow that has finished."""


class WorkflowEntry(BaseModel):
    """What the coordinator keeps of one workflow (times are wall-clock seconds)."""

    name: str
    status: Literal["running", "completed", "failed", "cancelled"] = "running"
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    cancel_requested: bool = False


async def load_workflow(store: Any, workflow_id: str) -> WorkflowState | None:
    """The stored state of a workflow, or None; ``StateCorrupt`` if it no longer validates."""
    rec = await store.load(workflow_key(workflow_id))
    if rec is None:
        return None
    try:
        return WorkflowState.model_validate(rec.data)
    except PydanticValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()]
        raise StateCorrupt(
            f"the stored state of workflow {workflow_id!r} no longer validates: bad fields "
            f"{fields[:5]}; the record is left as it is",
            context={"key": workflow_key(workflow_id), "fields": fields},
        ) from None


def _entry(stored: WorkflowState) -> WorkflowEntry:
    return WorkflowEntry(
        name=stored.name,
        status=stored.status,
        error=stored.error,
        created_at=stored.created_at,
        finished_at=stored.finished_at,
    )


class Coordinator(PersistentServer):
    """Starts and tracks workflows; see the module docstring. Start it with a name."""

    class State(BaseModel):
        """Every workflow the coordinator tracks, by id."""

        workflows: dict[str, WorkflowEntry] = {}

    supervisor: ClassVar[str] = WORKFLOW_SUPERVISOR
    keep_finished: ClassVar[int] = 1000

    _me: str
    _waiters: dict[str, list[From]]
    _pids: dict[str, Pid]
    _ids: dict[Pid, str]

    async def init(self, args: Any) -> Any:
        return self._prepare(self.State())

    async def on_after_load(self, state: Any) -> Any:
        return self._prepare(state)

    def _prepare(self, state: Any) -> Any:
        proc = current_process()
        if proc is None or not isinstance(proc.name, str):
            raise InvalidArgument("a workflow Coordinator needs a registered name")
        self._me = proc.name
        self._waiters = {}
        self._pids = {}
        self._ids = {}
        return Continue(state, "reconcile")

    async def handle_continue(self, arg: Any, state: Any) -> Any:
        return await self._reconcile(state)

    async def _reconcile(self, state: Any) -> Any:
        """Settle, restart or adopt every stored workflow (see the module docstring)."""
        workflows = dict(state.workflows)
        seen: set[str] = set()
        for key in await self._store().list("workflow/"):
            wid = key[len("workflow/") :]
            seen.add(wid)
            entry = workflows.get(wid)
            if entry is not None and entry.status in FINISHED:
                continue
            try:
                stored = await load_workflow(self._store(), wid)
            except StateCorrupt as err:
                if entry is not None:
                    workflows[wid] = self._settled(entry, "failed", err.message)
                continue
            if stored is None or stored.coordinator != self._me:
                continue
            if stored.status in FINISHED:
                if entry is not None:
                    workflows[wid] = self._settled(entry, stored.status, stored.error)
                continue
            workflows[wid] = entry or _entry(stored)
            await self._ensure_running(wid, workflows)
        for wid, entry in list(workflows.items()):
            if entry.status == "running" and wid not in seen:
                error = f"the record of workflow {wid!r} is missing from the store"
                workflows[wid] = self._settled(entry, "failed", error)
        return self._pruned(state.model_copy(update={"workflows": workflows}))

    async def _ensure_running(self, wid: str, workflows: dict[str, WorkflowEntry]) -> None:
        """Find or start the process of running workflow ``wid`` (its record exists)."""
        pid = current_runtime().whereis(workflow_name(wid))
        if pid is None:
            try:
                pid = await self._start_process(wid, (wid, None, None, self._me))
            except FoundationError as err:
                if err.retryable:
                    raise  # the store or supervisor is unwell: crash, be restarted, try again
                workflows[wid] = self._settled(workflows[wid], "failed", err.message)
                return
        self._track(wid, pid, workflows[wid])

    async def _start_process(self, workflow_id: str, args: Any) -> Pid:
        """Start (or resume from its stored state) the process of ``workflow_id``."""
        spec = WorkflowProcess.child_spec(
            args,
            key=workflow_key(workflow_id),
            name=workflow_name(workflow_id),
            restart="transient",
        )
        try:
            pid = await DynamicSupervisor.start_child(self.supervisor, spec)
        except AlreadyStarted as exc:
            return exc.pid  # type: ignore[return-value]
        assert pid is not None
        return pid

    def _track(self, wid: str, pid: Pid, entry: WorkflowEntry) -> None:
        if self._pids.get(wid) != pid:
            self._pids[wid] = pid
            self._ids[pid] = wid
            monitor(pid)
        if entry.cancel_requested:
            with contextlib.suppress(NoProcess):
                cast(pid, "cancel")

    def _settled(self, entry: WorkflowEntry, status: str, error: str | None) -> WorkflowEntry:
        finished = entry.finished_at or time.time()
        return entry.model_copy(update={"status": status, "error": error, "finished_at": finished})

    def _pruned(self, state: Any) -> Any:
        """Drop the oldest finished entries beyond ``keep_finished`` (their records stay)."""
        workflows = state.workflows
        if len(workflows) <= self.keep_finished:
            return state
        finished = [(e.finished_at or 0.0, k) for k, e in workflows.items() if e.status in FINISHED]
        extra = len(finished) - self.keep_finished
        if extra <= 0:
            return state
        drop = {k for _, k in sorted(finished)[:extra]}
        kept = {k: e for k, e in workflows.items() if k not in drop}
        return state.model_copy(update={"workflows": kept})

    async def _lookup(self, wid: str, state: Any) -> tuple[WorkflowEntry | None, Any]:
        """The entry of ``wid``: tracked, else from its record (a running one is adopted)."""
        entry = state.workflows.get(wid)
        if entry is not None:
            return entry, state
        stored = await load_workflow(self._store(), wid)
        if stored is None or stored.status in FINISHED:
            return (None if stored is None else _entry(stored)), state
        workflows = {**state.workflows, wid: _entry(stored)}
        await self._ensure_running(wid, workflows)
        return workflows[wid], state.model_copy(update={"workflows": workflows})

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        kind = request[0] if isinstance(request, tuple) and request else None
        if kind == "start":
            return await self._start_request(request, state)
        if kind == "list":
            found = {k: e for k, e in state.workflows.items() if request[1] in (None, e.status)}
            return Reply(found, state)
        if kind in ("await", "get", "cancel"):
            wid = request[1]
            try:
                entry, state = await self._lookup(wid, state)
            except StateCorrupt as err:
                return Reply(Failed(err), state)
            if entry is None or entry.status in FINISHED or kind == "get":
                return Reply(entry, state)
            if kind == "cancel" and not entry.cancel_requested:
                entry = entry.model_copy(update={"cancel_requested": True})
                state = state.model_copy(update={"workflows": {**state.workflows, wid: entry}})
                pid = self._pids.get(wid)
                if pid is not None:
                    self._track(wid, pid, entry)
            self._waiters.setdefault(wid, []).append(caller)
            return NoReply(state)  # answered when the workflow has finished
        return await super().handle_call(request, caller, state)

    async def _start_request(self, request: Any, state: Any) -> Any:
        _, wid, definition, inputs = request
        if wid in state.workflows:
            return Reply(wid, state)  # started before: starting is idempotent
        entry = WorkflowEntry(name=definition["name"], created_at=time.time())
        try:
            pid = await self._start_process(wid, (wid, definition, inputs, self._me))
        except FoundationError as err:
            return Reply(Failed(err), state)
        self._track(wid, pid, entry)
        workflows = {**state.workflows, wid: entry}
        return Reply(wid, self._pruned(state.model_copy(update={"workflows": workflows})))

    async def handle_cast(self, request: Any, state: Any) -> Any:
        kind = request[0] if isinstance(request, tuple) and request else None
        if kind == "started":
            _, wid, pid, name = request
            entry = state.workflows.get(wid)
            if entry is None:  # started before this coordinator recorded it: adopt it
                entry = WorkflowEntry(name=name, created_at=time.time())
                state = state.model_copy(update={"workflows": {**state.workflows, wid: entry}})
            self._track(wid, pid, entry)
            return state
        if kind == "finished":
            _, wid, status, error = request
            entry = state.workflows.get(wid) or WorkflowEntry(name=wid, created_at=time.time())
            entry = self._settled(entry, status, error)
            for waiter in self._waiters.pop(wid, []):
                reply(waiter, entry)  # held until the new state is durable
            workflows = {**state.workflows, wid: entry}
            return self._pruned(state.model_copy(update={"workflows": workflows}))
        return await super().handle_cast(request, state)

    async def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is Down:
            # a restarted workflow announces its new pid; a finished one said it had finished
            wid = self._ids.pop(msg.pid, None)
            if wid is not None and self._pids.get(wid) == msg.pid:
                del self._pids[wid]
            return state
        return await super().handle_info(msg, state)
