"""Scheduler: every periodic, one-shot and cron job of every process lives here.

``await Scheduler.schedule("report", target="reporter", message=("report",), every=60)`` (or
``at=`` an epoch time, ``after=`` seconds, ``cron="*/5 * * * *"``) sends ``message`` to the
process registered as ``target`` at each tick, whichever pid holds the name then: a schedule
survives its target's restarts (the seed's agents scheduled messages to themselves, and lost
them on every restart). Ticks are computed from the schedule's anchor (``anchor + k * every``),
never from the time of the last tick, so they do not drift. A tick that finds its target down
follows the schedule's ``missed`` policy: ``"skip"`` it, or ``"catch_up"`` once (one message as
soon as the target is back, however many ticks it missed). Durable schedules (the default) are
saved in the state store under ``schedule/<name>`` before ``schedule`` answers, and are reloaded
by the next scheduler, in this OS process or the next one; ticks missed meanwhile follow the
same policy. The scheduler keeps one kernel timer, for its earliest tick. Times are epoch
seconds: ``wall = epoch + (clock.now() - clock at start)`` (``epoch`` defaults to the real
time at start; tests pass ``epoch=0`` to read ticks on the virtual clock directly).
"""

from __future__ import annotations

import heapq
import json
import math
import time
from typing import Any, Literal

from pydantic import BaseModel

from foundation.errors import FoundationError, InvalidArgument, NotFound
from foundation.kernel.api import send
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.timers import TimerRef, cancel_timer, send_after
from foundation.persistence.memory import MemoryStore
from foundation.persistence.store import StateStore
from foundation.services.cron import Cron

__all__ = [
    "Job",
    "SCHEDULER",
    "Scheduler",
]

SCHEDULER = "scheduler"
"""The default registered name of the scheduler."""

Missed = Literal["skip", "catch_up"]


class Job(BaseModel):
    """A schedule: who gets what, when, and what happens to ticks the target misses."""

    name: str
    target: str
    message: Any
    kind: Literal["every", "once", "cron"]
    every: float | None = None
    cron: str | None = None
    anchor: float
    next_at: float
    index: int = 1  # for ``every``: next_at == anchor + index * every
    missed: Missed = "skip"
    durable: bool = True
    ticks: int = 0
    skipped: int = 0
    owed: bool = False


class _Tick:
    """The scheduler's wake-up message (its one timer)."""


_TICK = _Tick()
_RETRY_OWED = 0.05  # seconds between checks that a catch-up target is back


class Scheduler(GenServer):
    """The schedule table and its one timer; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: str = SCHEDULER, epoch: float | None = None
    ) -> Pid:
        """Start the scheduler, reloading the durable schedules stored by earlier runs."""
        return await cls._start(epoch, name=name, timeout=30.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(cls, *, name: str = SCHEDULER, **kw: Any) -> Any:  # type: ignore[override]
        """A child spec for the scheduler under ``name``."""
        from foundation.kernel.child_spec import ChildSpec

        async def start() -> Pid:
            return await cls.start_link(name=name, **kw)

        return ChildSpec(id=name, start=start)

    # -- client API ----------------------------------------------------------------------------

    @staticmethod
    async def schedule(
        name: str,
        target: str,
        message: Any,
        *,
        every: float | None = None,
        at: float | None = None,
        after: float | None = None,
        cron: str | None = None,
        missed: Missed = "skip",
        durable: bool = True,
        scheduler: Any = SCHEDULER,
    ) -> Job:
        """Create or replace schedule ``name``; exactly one of every/at/after/cron."""
        given = [k for k, v in (("every", every), ("at", at), ("after", after), ("cron", cron))
                 if v is not None]  # fmt: skip
        if len(given) != 1:
            raise InvalidArgument(
                f"schedule {name!r}: give exactly one of every, at, after, cron (got {given})"
            )
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidArgument(f"invalid schedule name {name!r}: a non-empty str without /")
        if not isinstance(target, str) or not target:
            raise InvalidArgument(f"schedule {name!r}: target must be a registered name (a str)")
        if missed not in ("skip", "catch_up"):
            raise InvalidArgument(f"schedule {name!r}: missed must be 'skip' or 'catch_up'")
        if every is not None and (isinstance(every, bool) or every <= 0):
            raise InvalidArgument(f"schedule {name!r}: every must be seconds > 0, not {every!r}")
        if after is not None and after < 0:
            raise InvalidArgument(f"schedule {name!r}: after must be seconds >= 0")
        if cron is not None:
            Cron.parse(cron)
        if durable:
            try:
                json.dumps(message)
            except (TypeError, ValueError):
                raise InvalidArgument(
                    f"schedule {name!r}: a durable schedule's message must be JSON-ready "
                    f"(got {message!r}); use durable=False for others"
                ) from None
        spec = {"every": every, "at": at, "after": after, "cron": cron}
        request = ("schedule", name, target, message, spec, missed, durable)
        return await call(scheduler, request)  # type: ignore[no-any-return]

    @staticmethod
    async def cancel(name: str, *, scheduler: Any = SCHEDULER) -> bool:
        """Remove a schedule (and its stored copy); False if there was none."""
        return await call(scheduler, ("cancel", name))  # type: ignore[no-any-return]

    @staticmethod
    async def jobs(*, scheduler: Any = SCHEDULER) -> dict[str, Job]:
        """Every schedule, by name."""
        return await call(scheduler, ("jobs",))  # type: ignore[no-any-return]

    @staticmethod
    async def get(name: str, *, scheduler: Any = SCHEDULER) -> Job:
        """One schedule; ``NotFound`` if there is none."""
        job = (await Scheduler.jobs(scheduler=scheduler)).get(name)
        if job is None:
            raise NotFound(f"no schedule {name!r}")
        return job

    # -- server --------------------------------------------------------------------------------

    def _wall(self) -> float:
        return self.epoch + (self.clock.now() - self.t0)

    async def init(self, epoch: float | None) -> dict[str, Job]:
        rt = current_runtime()
        self.clock = rt.clock
        self.t0 = self.clock.now()
        self.epoch = time.time() if epoch is None else epoch
        self.store: StateStore = rt.store if rt.store is not None else MemoryStore()
        self.versions: dict[str, int] = {}
        self.heap: list[tuple[float, str]] = []
        self.timer: TimerRef | None = None
        self.timer_at = math.inf
        jobs: dict[str, Job] = {}
        now = self._wall()
        for key in await self.store.list("schedule/"):
            rec = await self.store.load(key)
            if rec is None:
                continue
            job = Job.model_validate(rec.data)
            self.versions[job.name] = rec.version
            if job.next_at <= now:  # ticks missed while no scheduler ran
                job = self._advance(job, now, missed_while_down=True)
            jobs[job.name] = job
            heapq.heappush(self.heap, (job.next_at, job.name))
        self._arm(jobs)
        return jobs

    def _first(
        self, spec: dict[str, Any], now: float
    ) -> tuple[Literal["every", "once", "cron"], float, float]:
        if spec["every"] is not None:
            return "every", now, now + float(spec["every"])
        if spec["cron"] is not None:
            return "cron", now, Cron.parse(spec["cron"]).next_after(now)
        at = spec["at"] if spec["at"] is not None else now + float(spec["after"])
        return "once", now, float(at)

    def _advance(self, job: Job, now: float, missed_while_down: bool = False) -> Job:
        """The job after its tick(s) up to ``now``: the next time on its grid."""
        update: dict[str, Any] = {}
        if missed_while_down:
            update["owed"] = job.missed == "catch_up"
            update["skipped"] = job.skipped + (0 if job.missed == "catch_up" else 1)
        if job.kind == "every":
            assert job.every is not None
            # the first grid point strictly after now, never behind the last one (no drift,
            # and no tick twice for float rounding)
            k = max(job.index + 1, math.floor((now - job.anchor) / job.every + 1e-9) + 1)
            update["next_at"] = job.anchor + k * job.every
            update["index"] = k
        elif job.kind == "cron":
            assert job.cron is not None
            update["next_at"] = Cron.parse(job.cron).next_after(now)
        else:
            update["next_at"] = math.inf
        return job.model_copy(update=update)

    def _arm(self, jobs: dict[str, Job]) -> None:
        while self.heap and (
            self.heap[0][1] not in jobs or jobs[self.heap[0][1]].next_at != self.heap[0][0]
        ):
            heapq.heappop(self.heap)  # stale entry of a changed or cancelled job
        due = self.heap[0][0] if self.heap else math.inf
        if any(j.owed for j in jobs.values()):
            due = min(due, self._wall() + _RETRY_OWED)
        if due == self.timer_at:
            return
        if self.timer is not None:
            cancel_timer(self.timer)
            self.timer = None
        self.timer_at = due
        if due != math.inf:
            self.timer = send_after(self.pid, _TICK, max(due - self._wall(), 0.0))

    async def handle_call(self, request: Any, caller: From, jobs: dict[str, Job]) -> Any:
        kind = request[0]
        if kind == "schedule":
            _, name, target, message, spec, missed, durable = request
            now = self._wall()
            job_kind, anchor, first = self._first(spec, now)
            job = Job(
                name=name, target=target, message=message, kind=job_kind, every=spec["every"],
                cron=spec["cron"], anchor=anchor, next_at=first, missed=missed, durable=durable,
            )  # fmt: skip
            await self._store(job, jobs)
            jobs[name] = job
            heapq.heappush(self.heap, (job.next_at, name))
            self._arm(jobs)
            return Reply(job, jobs)
        if kind == "cancel":
            gone = jobs.pop(request[1], None)
            if gone is not None and gone.durable:
                await self.store.delete(f"schedule/{gone.name}", self.versions.pop(gone.name, None))
            self._arm(jobs)
            return Reply(gone is not None, jobs)
        if kind == "jobs":
            return Reply(dict(jobs), jobs)
        return await super().handle_call(request, caller, jobs)

    async def _store(self, job: Job, jobs: dict[str, Job]) -> None:
        if not job.durable:
            return
        key = f"schedule/{job.name}"
        version = self.versions.get(job.name)
        if version is None and job.name not in jobs:
            stored = await self.store.load(key)
            version = stored.version if stored is not None else None
        self.versions[job.name] = await self.store.save(key, job.model_dump(mode="json"), version)

    async def handle_info(self, msg: Any, jobs: dict[str, Job]) -> Any:
        if msg is not _TICK:
            return await super().handle_info(msg, jobs)
        self.timer, self.timer_at = None, math.inf
        now = self._wall()
        rt = current_runtime()
        for name, owed in list(jobs.items()):
            if owed.owed and rt.whereis(owed.target) is not None:
                self._deliver(owed)
                paid = jobs[name] = owed.model_copy(update={"owed": False, "ticks": owed.ticks + 1})
                if paid.kind == "once":
                    await self._finish(paid, jobs)
        while self.heap and self.heap[0][0] <= now:
            due, name = heapq.heappop(self.heap)
            current = jobs.get(name)
            if current is None or current.next_at != due:
                continue
            job = current
            if rt.whereis(job.target) is not None:
                self._deliver(job)
                job = job.model_copy(update={"ticks": job.ticks + 1})
                job = self._advance(job, max(now, due))
            else:
                job = self._advance(job, max(now, due), missed_while_down=True)
            jobs[name] = job
            if job.kind == "once":
                if not job.owed:
                    await self._finish(job, jobs)
                continue  # an owed one-shot waits for its target (the owed path above)
            heapq.heappush(self.heap, (job.next_at, name))
        self._arm(jobs)
        return jobs

    def _deliver(self, job: Job) -> None:
        try:
            send(job.target, job.message)
        except FoundationError:  # gone between the check and the send: a missed tick
            return

    async def _finish(self, job: Job, jobs: dict[str, Job]) -> None:
        jobs.pop(job.name, None)
        if job.durable:
            await self.store.delete(f"schedule/{job.name}", self.versions.pop(job.name, None))
