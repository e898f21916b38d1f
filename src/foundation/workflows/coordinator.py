"""The Coordinator: small and persistent; it starts workflows and tracks their status.

It runs no step itself and never depends on a registry for a workflow's life: it asks its
``WorkflowSupervisor`` (a DynamicSupervisor of transient children) to start one
``WorkflowProcess`` per workflow (``start_workflow`` has validated the request in the caller),
and keeps workflow id -> status: the running workflows in its own persisted state (with a
cancel asked for), the finished ones in their own records, of which it remembers the
``keep_finished`` most recent in memory. Each running workflow's pid is kept in memory (pids
mean nothing to a later runtime): it learns a pid from the start it asked for, and a restarted
WorkflowProcess announces its new one; the kernel's local names serve for lookup only (finding
a live process after the coordinator's own restart, refusing a second one).

Each WorkflowProcess tells its coordinator when it restarts and when it finishes; ``await`` and
``cancel`` requests are answered then (deferred replies, no polling), once the coordinator's
new state is durable. A cancel is durable: it is recorded first and sent to the workflow on
each of its (re)starts until it has finished.

On every start the coordinator reconciles with the store before serving: a workflow it had as
running whose record has finished gets that outcome; one whose process is not alive is started
again (it resumes from its record); a running one it does not know yet is adopted; one whose
record no longer validates fails with the ``StateCorrupt`` message. Asked about a workflow it
does not remember, it reads the workflow's record. The durable state is bounded by the number
of running workflows, not by history; the scan at a restart reads every workflow record.
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
    InitError,
    InvalidArgument,
    NoProcess,
    StateCorrupt,
)
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.dynamic_supervisor import DynamicSupervisor
from foundation.kernel.gen_server import cast, reply
from foundation.kernel.messages import Continue, NoReply, Reply
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

_START_ATTEMPTS = 3
"""How many times a WorkflowProcess killed during its start is started again, at once."""

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
        """The running workflows, by id (finished ones are known from their own records)."""

        workflows: dict[str, WorkflowEntry] = {}

    supervisor: ClassVar[str] = WORKFLOW_SUPERVISOR
    keep_finished: ClassVar[int] = 1000

    _me: str
    _waiters: dict[str, list[From]]
    _pids: dict[str, Pid]
    _finished: dict[str, WorkflowEntry]

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
        self._finished = {}
        return Continue(state, "reconcile")

    async def handle_continue(self, arg: Any, state: Any) -> Any:
        return await self._reconcile(state)

    async def _reconcile(self, state: Any) -> Any:
        """Settle, restart or adopt every stored workflow (see the module docstring)."""
        store = self._store()
        running = {k: e for k, e in state.workflows.items() if e.status == "running"}
        finished: list[tuple[str, WorkflowEntry]] = []
        seen: set[str] = set()
        for key in await store.list("workflow/"):
            wid = key[len("workflow/") :]
            seen.add(wid)
            try:
                stored = await load_workflow(store, wid)
            except StateCorrupt as err:
                entry = running.pop(wid, None)
                if entry is not None:
                    finished.append((wid, self._settled(entry, "failed", err.message)))
                continue
            if stored is None or stored.coordinator != self._me:
                continue
            if stored.status in FINISHED:
                running.pop(wid, None)
                finished.append((wid, _entry(stored)))
                continue
            running.setdefault(wid, _entry(stored))
            failed = await self._ensure_running(wid, running[wid])
            if failed is not None:
                del running[wid]
                finished.append((wid, failed))
        for wid in [w for w in running if w not in seen]:
            error = f"the record of workflow {wid!r} is missing from the store"
            finished.append((wid, self._settled(running.pop(wid), "failed", error)))
        finished.sort(key=lambda item: item[1].finished_at or 0.0)
        for wid, entry in finished:
            self._remember(wid, entry)
        return state.model_copy(update={"workflows": running})

    async def _ensure_running(self, wid: str, entry: WorkflowEntry) -> WorkflowEntry | None:
        """Find or start the process of running workflow ``wid`` (its record exists): None,
        or its failed entry when it can never start."""
        pid = current_runtime().whereis(workflow_name(wid))
        if pid is None:
            try:
                pid = await self._start_process(wid, (wid, None, None, self._me))
            except FoundationError as err:
                if err.retryable:
                    raise  # the store or supervisor is unwell: crash, be restarted, try again
                return self._settled(entry, "failed", err.message)
        self._track(wid, pid, entry)
        return None

    async def _start_process(self, workflow_id: str, args: Any) -> Pid:
        """Start (or resume from its stored state) the process of ``workflow_id``."""
        spec = WorkflowProcess.child_spec(
            args,
            key=workflow_key(workflow_id),
            name=workflow_name(workflow_id),
            restart="transient",
        )
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                pid = await DynamicSupervisor.start_child(self.supervisor, spec)
            except AlreadyStarted as exc:
                return exc.pid  # type: ignore[return-value]
            except InitError as exc:
                # killed while it started, or a retryable store error: start it again (its
                # record, if saved, is resumed); an error of its own is the caller's
                transient = not isinstance(exc.reason, BaseException) or (
                    isinstance(exc.reason, FoundationError) and exc.reason.retryable
                )
                if not transient or attempt == _START_ATTEMPTS:
                    raise
                continue
            assert pid is not None
            return pid
        raise AssertionError("unreachable")  # pragma: no cover

    def _track(self, wid: str, pid: Pid, entry: WorkflowEntry) -> None:
        self._pids[wid] = pid
        if entry.cancel_requested:
            with contextlib.suppress(NoProcess):
                cast(pid, "cancel")

    def _settled(self, entry: WorkflowEntry, status: str, error: str | None) -> WorkflowEntry:
        finished = entry.finished_at or time.time()
        return entry.model_copy(update={"status": status, "error": error, "finished_at": finished})

    def _remember(self, wid: str, entry: WorkflowEntry) -> None:
        """Keep a finished entry in memory, the oldest dropped beyond ``keep_finished``."""
        self._finished.pop(wid, None)
        self._finished[wid] = entry
        while len(self._finished) > self.keep_finished:
            del self._finished[next(iter(self._finished))]

    async def _lookup(self, wid: str, state: Any) -> tuple[WorkflowEntry | None, Any]:
        """The entry of ``wid``: tracked, else from its record (a running one is adopted)."""
        entry = state.workflows.get(wid) or self._finished.get(wid)
        if entry is not None:
            return entry, state
        stored = await load_workflow(self._store(), wid)
        if stored is None or stored.status in FINISHED:
            return (None if stored is None else _entry(stored)), state
        if stored.coordinator != self._me:
            raise InvalidArgument(
                f"workflow {wid!r} is run by the coordinator {stored.coordinator!r}, not by "
                f"{self._me!r}: ask that one",
                context={"workflow": wid, "coordinator": stored.coordinator},
            )
        entry = _entry(stored)
        failed = await self._ensure_running(wid, entry)
        if failed is not None:
            self._remember(wid, failed)
            return failed, state
        return entry, state.model_copy(update={"workflows": {**state.workflows, wid: entry}})

    async def handle_call(self, request: Any, caller: From, state: Any) -> Any:
        kind = request[0] if isinstance(request, tuple) and request else None
        if kind == "start":
            return await self._start_request(request, state)
        if kind == "list":
            status = request[1]
            found = {} if status not in (None, "running") else dict(state.workflows)
            if status != "running":
                found.update(
                    (k, e) for k, e in self._finished.items() if status in (None, e.status)
                )
            return Reply(found, state)
        if kind in ("await", "get", "cancel"):
            wid = request[1]
            try:
                entry, state = await self._lookup(wid, state)
            except (StateCorrupt, InvalidArgument) as err:
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
        if wid in state.workflows or wid in self._finished:
            return Reply(wid, state)  # started before: starting is idempotent
        entry = WorkflowEntry(name=definition["name"], created_at=time.time())
        try:
            pid = await self._start_process(wid, (wid, definition, inputs, self._me))
        except FoundationError as err:
            return Reply(Failed(err), state)
        self._track(wid, pid, entry)
        return Reply(wid, state.model_copy(update={"workflows": {**state.workflows, wid: entry}}))

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
            self._pids.pop(wid, None)
            workflows = dict(state.workflows)
            entry = workflows.pop(wid, None) or WorkflowEntry(name=wid, created_at=time.time())
            entry = self._settled(entry, status, error)
            self._remember(wid, entry)
            for waiter in self._waiters.pop(wid, []):
                reply(waiter, entry)  # held until the new state is durable
            return state.model_copy(update={"workflows": workflows})
        return await super().handle_cast(request, state)
