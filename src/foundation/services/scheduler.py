"""Scheduler: every periodic, one-shot and cron job of every process lives here.

``await Scheduler.schedule("report", target="reporter", message=("report",), every=60)`` (or
``at=`` an epoch time, ``after=`` seconds, ``cron="*/5 * * * *"``) sends ``message`` (a plain
``send``: the target's ``handle_info``) to the process registered as ``target`` at each tick,
whichever pid holds the name then: a schedule survives its target's restarts (the seed's agents
scheduled messages to themselves, and lost them on every restart; no process of this project
does that). Ticks are computed from the schedule's anchor (``anchor + k * every``), never from
the time of the last tick, so they do not drift.

A tick that finds its target down follows the schedule's ``missed`` policy: ``"skip"`` it (the
default), or ``"catch_up"`` once: one message as soon as the target is back (checked every
``recheck`` seconds while something is owed), however many ticks it missed; then ticks go on
on the grid. Ticks that pass while no scheduler runs at all (the OS process was down) follow
the same policy when the schedules are reloaded. A one-shot that is skipped is gone.

Durable schedules (the default) are saved in the state store (``runtime.store``; without one,
a private ``MemoryStore`` that lives as long as the scheduler) under ``schedule/<name>`` before
``schedule`` answers, and are reloaded by the next scheduler, in this OS process or the next.
A durable catch-up schedule is also saved after each of its ticks, so a reload owes exactly the
ticks that were missed (a crash between a send and that save can repeat one message: catch-up is
at-least-once); a "skip" schedule is not saved per tick (a reload only needs its grid), so its
``ticks``/``skipped`` counters restart from the stored copy. A durable message must be
JSON-ready; it is delivered as JSON gives it back (a tuple comes back as a list).

The scheduler keeps one kernel timer (``send_after`` on the runtime clock), for its earliest
tick, and a heap of due times, so a tick costs O(log n) however many schedules there are. Times
are epoch seconds: ``wall = epoch + clock.now()``, where ``epoch`` (the wall time the runtime
clock's zero stands for) defaults to ``time.time() - clock.now()`` at start; tests pass
``epoch=0`` to read ticks on the virtual clock directly.
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
from foundation.kernel.supervision import Failed, unwrap
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


_FIELDS = tuple(Job.model_fields)


class _Entry:
    """A schedule as the server keeps it: plain slots, cheap to update on every tick."""

    __slots__ = (*_FIELDS, "parsed")
    name: str
    target: str
    message: Any
    kind: Literal["every", "once", "cron"]
    every: float | None
    cron: str | None
    anchor: float
    next_at: float
    index: int
    missed: Missed
    durable: bool
    ticks: int
    skipped: int
    owed: bool

    def __init__(self, job: Job) -> None:
        for field in _FIELDS:
            setattr(self, field, getattr(job, field))
        self.parsed = Cron.parse(job.cron) if job.cron is not None else None

    def job(self) -> Job:
        """A snapshot as a ``Job`` (what callers see and what is stored)."""
        return Job.model_construct(**{f: getattr(self, f) for f in _FIELDS})


class _Tick:
    """The scheduler's wake-up message (its one timer)."""


_TICK = _Tick()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Scheduler(GenServer):
    """The schedule table and its one timer; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: str = SCHEDULER, epoch: float | None = None, recheck: float = 0.05
    ) -> Pid:
        """Start the scheduler, reloading the durable schedules stored by earlier runs."""
        if epoch is not None and not _number(epoch):
            raise InvalidArgument(f"invalid epoch: {epoch!r} (epoch seconds)")
        if not _number(recheck) or recheck <= 0:
            raise InvalidArgument(f"invalid recheck: {recheck!r} (seconds > 0)")
        return await cls._start((epoch, float(recheck)), name=name, timeout=30.0,
                                max_mailbox=None, link=True)  # fmt: skip

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
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidArgument(f"invalid schedule name {name!r}: a non-empty str without /")
        given = [k for k, v in (("every", every), ("at", at), ("after", after), ("cron", cron))
                 if v is not None]  # fmt: skip
        if len(given) != 1:
            raise InvalidArgument(
                f"schedule {name!r}: give exactly one of every, at, after, cron (got {given})"
            )
        if not isinstance(target, str) or not target:
            raise InvalidArgument(f"schedule {name!r}: target must be a registered name (a str)")
        if missed not in ("skip", "catch_up"):
            raise InvalidArgument(f"schedule {name!r}: missed must be 'skip' or 'catch_up'")
        if every is not None and (not _number(every) or every <= 0):
            raise InvalidArgument(f"schedule {name!r}: every must be seconds > 0, not {every!r}")
        if after is not None and (not _number(after) or after < 0):
            raise InvalidArgument(f"schedule {name!r}: after must be seconds >= 0, not {after!r}")
        if at is not None and not _number(at):
            raise InvalidArgument(f"schedule {name!r}: at must be epoch seconds, not {at!r}")
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
        return unwrap(await call(scheduler, request))  # type: ignore[no-any-return]

    @staticmethod
    async def cancel(name: str, *, scheduler: Any = SCHEDULER) -> bool:
        """Remove a schedule (and its stored copy); False if there was none."""
        return unwrap(await call(scheduler, ("cancel", name)))  # type: ignore[no-any-return]

    @staticmethod
    async def cancel_target(target: str, *, scheduler: Any = SCHEDULER) -> int:
        """Remove every schedule of ``target``; how many there were."""
        names = list(await Scheduler.jobs(target=target, scheduler=scheduler))
        return sum([await Scheduler.cancel(n, scheduler=scheduler) for n in names])

    @staticmethod
    async def jobs(*, target: str | None = None, scheduler: Any = SCHEDULER) -> dict[str, Job]:
        """Every schedule (of ``target``, if given), by name; copies."""
        return await call(scheduler, ("jobs", target))  # type: ignore[no-any-return]

    @staticmethod
    async def get(name: str, *, scheduler: Any = SCHEDULER) -> Job:
        """One schedule; ``NotFound`` if there is none."""
        job = (await Scheduler.jobs(scheduler=scheduler)).get(name)
        if job is None:
            raise NotFound(f"no schedule {name!r} in scheduler {scheduler!r}")
        return job

    @staticmethod
    async def run_now(name: str, *, scheduler: Any = SCHEDULER) -> bool:
        """Send a schedule's message now, off its grid (the test twin of a tick); delivered?"""
        return unwrap(await call(scheduler, ("run_now", name)))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    def _wall(self) -> float:
        return self.epoch + self.clock.now()

    async def init(self, args: tuple[float | None, float]) -> dict[str, _Entry]:
        epoch, self.recheck = args
        rt = current_runtime()
        self.clock = rt.clock
        self.epoch = time.time() - self.clock.now() if epoch is None else epoch
        self.store: StateStore = rt.store if rt.store is not None else MemoryStore()
        self.versions: dict[str, int] = {}
        self.heap: list[tuple[float, str]] = []
        self.owed: set[str] = set()
        self.timer: TimerRef | None = None
        self.timer_at = math.inf
        jobs: dict[str, _Entry] = {}
        now = self._wall()
        for key in await self.store.list("schedule/"):
            rec = await self.store.load(key)
            if rec is None:
                continue
            job = _Entry(Job.model_validate(rec.data))
            self.versions[job.name] = rec.version
            jobs[job.name] = job
            if job.next_at <= now:  # ticks passed while no scheduler ran
                self._missed(job, now, count=job.missed == "catch_up")
                if job.kind == "once" and not job.owed:
                    await self._finish(job, jobs)
                    continue
            if job.owed:
                self.owed.add(job.name)
            if job.next_at != math.inf:
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

    def _advance(self, job: _Entry, now: float) -> int:
        """Move the job to its next grid time strictly after ``now``; grid times passed over."""
        if job.kind == "every":
            assert job.every is not None
            # never behind the current grid point (no tick twice for float rounding)
            k = max(job.index + 1, math.floor((now - job.anchor) / job.every + 1e-9) + 1)
            passed = k - job.index - 1
            job.index = k
            job.next_at = job.anchor + k * job.every
            return passed
        if job.kind == "cron":
            assert job.parsed is not None
            job.next_at = job.parsed.next_after(now)
            return 0
        job.next_at = math.inf
        return 0

    def _missed(self, job: _Entry, now: float, *, count: bool = True) -> None:
        """The tick due now found no target (or no scheduler): apply the ``missed`` policy."""
        passed = self._advance(job, now)
        if job.missed == "catch_up":
            job.owed = True
            self.owed.add(job.name)
        if count:
            job.skipped += (0 if job.missed == "catch_up" else 1) + passed

    def _arm(self, jobs: dict[str, _Entry]) -> None:
        heap = self.heap
        while heap and (heap[0][1] not in jobs or jobs[heap[0][1]].next_at != heap[0][0]):
            heapq.heappop(heap)  # stale entry of a changed or cancelled job
        due = heap[0][0] if heap else math.inf
        if self.owed:
            due = min(due, self._wall() + self.recheck)
        if due == self.timer_at:
            return
        if self.timer is not None:
            cancel_timer(self.timer)
            self.timer = None
        self.timer_at = due
        if due != math.inf:
            self.timer = send_after(self.pid, _TICK, max(due - self._wall(), 0.0))

    async def handle_call(self, request: Any, caller: From, jobs: dict[str, _Entry]) -> Any:
        kind = request[0]
        if kind == "schedule":
            _, name, target, message, spec, missed, durable = request
            now = self._wall()
            job_kind, anchor, first = self._first(spec, now)
            job = _Entry(Job(
                name=name, target=target, message=message, kind=job_kind, every=spec["every"],
                cron=spec["cron"], anchor=anchor, next_at=first, missed=missed, durable=durable,
            ))  # fmt: skip
            old = jobs.get(name)
            try:
                if job.durable:
                    await self._save(job, stored=old is not None and old.durable)
                elif old is not None and old.durable:
                    await self._delete(name)
            except FoundationError as err:
                return Reply(Failed(err), jobs)
            jobs[name] = job
            self.owed.discard(name)
            heapq.heappush(self.heap, (job.next_at, name))
            self._arm(jobs)
            return Reply(job.job(), jobs)
        if kind == "cancel":
            gone = jobs.pop(request[1], None)
            self.owed.discard(request[1])
            if gone is not None and gone.durable:
                try:
                    await self._delete(gone.name)
                except FoundationError as err:
                    return Reply(Failed(err), jobs)
            self._arm(jobs)
            return Reply(gone is not None, jobs)
        if kind == "jobs":
            target = request[1]
            return Reply({n: j.job() for n, j in jobs.items()
                          if target is None or j.target == target}, jobs)  # fmt: skip
        if kind == "run_now":
            found = jobs.get(request[1])
            if found is None:
                return Reply(Failed(NotFound(f"no schedule {request[1]!r}")), jobs)
            delivered = self._deliver(found)
            if delivered:
                found.ticks += 1
            return Reply(delivered, jobs)
        return await super().handle_call(request, caller, jobs)

    async def _save(self, job: _Entry, *, stored: bool = True) -> None:
        key = f"schedule/{job.name}"
        version = self.versions.get(job.name)
        if version is None and not stored:
            found = await self.store.load(key)  # a copy left by an earlier run
            version = found.version if found is not None else None
        self.versions[job.name] = await self.store.save(
            key, job.job().model_dump(mode="json"), version
        )

    async def _delete(self, name: str) -> None:
        await self.store.delete(f"schedule/{name}", self.versions.pop(name, None))

    async def handle_info(self, msg: Any, jobs: dict[str, _Entry]) -> Any:
        if msg is not _TICK:
            return await super().handle_info(msg, jobs)
        self.timer, self.timer_at = None, math.inf
        now = self._wall()
        for name in list(self.owed):
            job = jobs.get(name)
            if job is None or not job.owed:
                self.owed.discard(name)
            elif self._deliver(job):
                self.owed.discard(name)
                job.owed = False
                job.ticks += 1
                if job.kind == "once":
                    await self._finish(job, jobs)
                elif job.durable:
                    await self._save(job)
        heap = self.heap
        while heap and heap[0][0] <= now:
            due, name = heapq.heappop(heap)
            job = jobs.get(name)
            if job is None or job.next_at != due:
                continue  # stale: changed or cancelled
            if self._deliver(job):
                job.ticks += 1
                job.skipped += self._advance(job, max(now, due))
            else:
                self._missed(job, max(now, due))
            if job.kind == "once" and not job.owed:
                await self._finish(job, jobs)
                continue
            if job.next_at != math.inf:
                heapq.heappush(heap, (job.next_at, name))
            if job.durable and job.missed == "catch_up":
                await self._save(job)
        self._arm(jobs)
        return jobs

    def _deliver(self, job: _Entry) -> bool:
        try:
            send(job.target, job.message)
        except FoundationError:  # no such process, or a full bounded mailbox: a missed tick
            return False
        return True

    async def _finish(self, job: _Entry, jobs: dict[str, _Entry]) -> None:
        jobs.pop(job.name, None)
        self.owed.discard(job.name)
        if job.durable:
            await self._delete(job.name)
