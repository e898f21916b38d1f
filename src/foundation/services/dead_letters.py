"""DeadLetterQueue: durable entries for every message that could not be delivered.

``await DeadLetterQueue.put(recipient, message, reason, metadata)`` stores an entry (id,
recipient, message, reason, attempts, first and last failure, metadata) in the state store
under ``dlq/<id>`` **before** it answers: a dead letter is never lost, and the queue comes back
with all of them after a restart of the queue or of the whole OS process. ``put`` is a call, so a
queue that is not running is a ``NoProcess`` error for the sender, never a silent loss (the
seed cast to a queue no supervisor started). Every other service hands its undeliverable
messages here: ``DeadLetterQueue.sink()`` is the ``DeadLetterSink`` the signal bus and the
buffered delivery take.

What is stored: a JSON-ready message as is; a ``Signal`` as its JSON form (rebuilt as a
``Signal`` when retried); anything else as its ``repr`` (``message_kind == "repr"``: kept for
inspection, never retried). Metadata values that are not JSON-ready are stored as their
``repr``. A recipient is a registered name, or a pid (its ``str`` is stored; the pid itself is
remembered only while this queue runs, since a pid means nothing to a later OS process).

``retry(recipient=..., reason=...)`` delivers the matching entries that are due again, from the
caller (never inside the queue's server): by a call (the recipient's reply is the
acknowledgement) or, for signals and entries whose metadata says ``delivery="send"``, by a send
(the way they were first sent). A delivered entry is removed; a failed one counts the attempt
and is not due again before ``backoff * 2 ** (attempts - 1)`` seconds (at most
``max_backoff``). ``purge(max_age=..., max_attempts=...)`` removes expired entries.

The queue also sweeps by itself every ``sweep_every`` seconds (default 300; ``None``: never):
it purges the expired entries (first failed over ``expire_after`` seconds ago, default a day,
or tried ``max_attempts`` times, default 5) and retries the due ones, in a process of its own
linked to the queue (the queue's server never waits on a recipient), one sweep at a time. Times are
epoch seconds on the runtime clock (``epoch`` as for the scheduler: the wall time the clock's
zero stands for; tests pass ``epoch=0``). Without a store in the runtime, entries live in a
private ``MemoryStore`` (and die with the queue).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel

from foundation.errors import FoundationError, InvalidArgument, NotFound
from foundation.kernel.api import is_alive, send, spawn_link
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.kernel.timers import send_after
from foundation.persistence.memory import MemoryStore
from foundation.persistence.store import StateStore
from foundation.services.signal_bus import DeadLetterSink, Signal

__all__ = [
    "DEAD_LETTERS",
    "DeadLetter",
    "DeadLetterQueue",
]

DEAD_LETTERS = "dead_letters"
"""The default registered name of the dead-letter queue."""


class DeadLetter(BaseModel):
    """One undeliverable message and what happened to it (times in epoch seconds)."""

    id: str
    seq: int = 0  # arrival order in the queue
    recipient: str
    recipient_is_pid: bool = False
    message: Any
    message_kind: Literal["json", "signal", "repr"] = "json"
    delivery: Literal["call", "send"] = "call"
    reason: str
    attempts: int = 1
    first_failure: float
    last_failure: float
    next_retry_at: float = 0.0
    metadata: dict[str, Any] = {}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _encode(
    recipient: Any, message: Any, reason: Any, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The JSON-ready fields of a new entry (computed in the sender, not in the server)."""
    meta = {str(k): v if _jsonable(v) else repr(v) for k, v in (metadata or {}).items()}
    body: Any
    if isinstance(message, Signal):
        body, kind, delivery = message.model_dump(mode="json"), "signal", "send"
    elif _jsonable(message):
        body, kind, delivery = message, "json", "call"
    else:
        body, kind, delivery = repr(message), "repr", "call"
    if meta.get("delivery") in ("call", "send"):
        delivery = meta["delivery"]
    return {"recipient": str(recipient), "recipient_is_pid": type(recipient) is Pid,
            "message": body, "message_kind": kind, "delivery": delivery, "reason": str(reason),
            "metadata": meta}  # fmt: skip


def _matching(entries: Any, recipient: str | None, reason: str | None) -> list[DeadLetter]:
    found = [e for e, _ in entries.values()
             if recipient in (None, e.recipient) and reason in (None, e.reason)]  # fmt: skip
    return sorted(found, key=lambda e: (e.first_failure, e.seq))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


class _Sweep:
    """The queue's timer message: time to purge what expired and retry what is due."""

    __slots__ = ()


async def _sweep(dlq: Pid, expire_after: float, max_attempts: int) -> None:
    """One sweep, outside the queue's server: purge the expired entries, retry the due ones."""
    await DeadLetterQueue.purge(max_age=expire_after, max_attempts=max_attempts, dlq=dlq)
    await DeadLetterQueue.retry(dlq=dlq)


class DeadLetterQueue(GenServer):
    """The durable dead-letter queue; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: str = DEAD_LETTERS,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        epoch: float | None = None,
        sweep_every: float | None = 300.0,
        expire_after: float = 86_400.0,
        max_attempts: int = 5,
    ) -> Pid:
        """Start the queue, loading the entries stored by earlier runs."""
        if not _positive(backoff) or not _positive(max_backoff):
            raise InvalidArgument(f"invalid backoff {backoff!r}/{max_backoff!r} (seconds > 0)")
        if sweep_every is not None and not _positive(sweep_every):
            raise InvalidArgument(f"invalid sweep_every: {sweep_every!r} (seconds > 0, or None)")
        if not _positive(expire_after):
            raise InvalidArgument(f"invalid expire_after: {expire_after!r} (seconds > 0)")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgument(f"invalid max_attempts: {max_attempts!r} (an int >= 1)")
        sweep = (sweep_every, expire_after, max_attempts)
        return await cls._start((backoff, max_backoff, epoch, sweep), name=name, timeout=30.0,
                                max_mailbox=None, link=True)  # fmt: skip

    @classmethod
    def child_spec(cls, *, name: str = DEAD_LETTERS, **kw: Any) -> Any:  # type: ignore[override]
        """A child spec for the queue under ``name``."""
        from foundation.kernel.child_spec import ChildSpec

        async def start() -> Pid:
            return await cls.start_link(name=name, **kw)

        return ChildSpec(id=name, start=start)

    # -- client API ----------------------------------------------------------------------------

    @staticmethod
    async def put(
        recipient: Any,
        message: Any,
        reason: str,
        metadata: dict[str, Any] | None = None,
        *,
        dlq: Any = DEAD_LETTERS,
    ) -> str:
        """Store a dead letter durably (stored before this returns); its id."""
        fields = _encode(recipient, message, reason, metadata)
        pid = recipient if type(recipient) is Pid else None
        return unwrap(await call(dlq, ("put", fields, pid)))  # type: ignore[no-any-return]

    @staticmethod
    def sink(dlq: Any = DEAD_LETTERS) -> DeadLetterSink:
        """The ``DeadLetterSink`` other services take: ``put`` on this queue."""

        async def put(recipient: Any, message: Any, reason: str, meta: dict[str, Any]) -> None:
            await DeadLetterQueue.put(recipient, message, reason, meta, dlq=dlq)

        return put

    @staticmethod
    async def list(
        *,
        recipient: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
        dlq: Any = DEAD_LETTERS,
    ) -> list[DeadLetter]:
        """The entries matching the filters, oldest first (at most ``limit``)."""
        return await call(dlq, ("list", recipient, reason, limit))  # type: ignore[no-any-return]

    @staticmethod
    async def get(id: str, *, dlq: Any = DEAD_LETTERS) -> DeadLetter:
        """One entry; ``NotFound`` if there is none."""
        return unwrap(await call(dlq, ("get", id)))  # type: ignore[no-any-return]

    @staticmethod
    async def retry(
        *,
        recipient: str | None = None,
        reason: str | None = None,
        timeout: float = 5.0,
        dlq: Any = DEAD_LETTERS,
    ) -> dict[str, int]:
        """Deliver the matching entries due for a retry again; counts of what happened."""
        done = {"delivered": 0, "failed": 0, "not_due": 0, "not_retryable": 0}
        due, pids, matching = await call(dlq, ("due", recipient, reason))
        done["not_due"] = matching - len(due)
        for entry in due:
            if entry.message_kind == "repr":
                done["not_retryable"] += 1
                continue
            message = entry.message
            if entry.message_kind == "signal":
                message = Signal.model_validate(message)
            target = pids.get(entry.id) if entry.recipient_is_pid else entry.recipient
            try:
                if target is None:
                    raise NotFound(f"pid {entry.recipient} is not known to this runtime")
                if entry.delivery == "send":
                    send(target, message)
                else:
                    await call(target, message, timeout)
            except FoundationError as err:
                await call(dlq, ("failed", entry.id, err.code))
                done["failed"] += 1
                continue
            await call(dlq, ("delivered", entry.id))
            done["delivered"] += 1
        return done

    @staticmethod
    async def purge(
        *,
        max_age: float | None = None,
        max_attempts: int | None = None,
        dlq: Any = DEAD_LETTERS,
    ) -> int:
        """Remove entries first failed over ``max_age`` seconds ago, or tried ``max_attempts``
        times or more (with neither: every entry); how many."""
        if max_age is not None and (not isinstance(max_age, int | float) or max_age < 0):
            raise InvalidArgument(f"invalid max_age: {max_age!r} (seconds >= 0)")
        if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
            raise InvalidArgument(f"invalid max_attempts: {max_attempts!r} (an int >= 1)")
        return unwrap(await call(dlq, ("purge", max_age, max_attempts)))  # type: ignore[no-any-return]

    @staticmethod
    async def stats(*, dlq: Any = DEAD_LETTERS) -> dict[str, Any]:
        """How many entries, by reason and by recipient, and the oldest first failure."""
        return await call(dlq, ("stats",))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.epoch + self.clock.now()

    async def init(
        self, args: tuple[float, float, float | None, tuple[float | None, float, int]]
    ) -> dict[str, tuple[DeadLetter, int]]:
        self.backoff, self.max_backoff, epoch, self.sweep = args
        self.sweeper: Pid | None = None
        self.dropped = 0  # entries deleted since the last forget_deleted
        if self.sweep[0] is not None:
            send_after(self.pid, _Sweep(), self.sweep[0])
        rt = current_runtime()
        self.clock = rt.clock
        self.epoch = time.time() - self.clock.now() if epoch is None else epoch
        self.store: StateStore = rt.store if rt.store is not None else MemoryStore()
        self.pids: dict[str, Pid] = {}  # entry id -> the recipient pid, while this queue runs
        entries: dict[str, tuple[DeadLetter, int]] = {}
        for key in await self.store.list("dlq/"):
            rec = await self.store.load(key)
            if rec is not None:
                entry = DeadLetter.model_validate(rec.data)
                entries[entry.id] = (entry, rec.version)
        self.seq = max((e.seq for e, _ in entries.values()), default=0)
        return entries

    async def _save(self, entry: DeadLetter, version: int | None) -> int:
        return await self.store.save(f"dlq/{entry.id}", entry.model_dump(mode="json"), version)

    async def handle_call(self, request: Any, caller: From, entries: Any) -> Any:
        kind = request[0]
        now = self._now()
        if kind == "put":
            fields, pid = request[1], request[2]
            self.seq += 1
            entry = DeadLetter(id=uuid.uuid4().hex, seq=self.seq, first_failure=now,
                               last_failure=now, next_retry_at=now, **fields)  # fmt: skip
            try:
                version = await self._save(entry, None)  # durable, then the reply
            except FoundationError as err:
                return Reply(Failed(err), entries)
            entries[entry.id] = (entry, version)
            if pid is not None:
                self.pids[entry.id] = pid
            return Reply(entry.id, entries)
        if kind == "list":
            found = _matching(entries, request[1], request[2])
            return Reply(found if request[3] is None else found[: request[3]], entries)
        if kind == "due":
            matching = _matching(entries, request[1], request[2])
            due = [e for e in matching if e.next_retry_at <= now]
            pids = {e.id: self.pids[e.id] for e in due if e.id in self.pids}
            return Reply((due, pids, len(matching)), entries)
        if kind == "get":
            item = entries.get(request[1])
            if item is None:
                return Reply(Failed(NotFound(f"no dead letter {request[1]!r}")), entries)
            return Reply(item[0], entries)
        if kind in ("failed", "delivered"):
            item = entries.get(request[1])
            if item is None:  # purged meanwhile
                return Reply(None, entries)
            entry, version = item
            if kind == "delivered":
                await self._drop(entries, entry.id)
                return Reply(None, entries)
            delay = min(self.backoff * 2 ** (entry.attempts - 1), self.max_backoff)
            entry = entry.model_copy(update={
                "attempts": entry.attempts + 1, "last_failure": now, "next_retry_at": now + delay,
                "metadata": {**entry.metadata, "last_error": request[2]},
            })  # fmt: skip
            entries[entry.id] = (entry, await self._save(entry, version))
            return Reply(None, entries)
        if kind == "purge":
            max_age, max_attempts = request[1], request[2]
            cutoff = now - max_age if max_age is not None else math.inf
            old = [i for i, (e, _) in entries.items()
                   if (max_age is None and max_attempts is None) or e.first_failure <= cutoff
                   or (max_attempts is not None and e.attempts >= max_attempts)]  # fmt: skip
            for entry_id in old:
                await self._drop(entries, entry_id)
            return Reply(len(old), entries)
        if kind == "stats":
            by_reason: dict[str, int] = {}
            by_recipient: dict[str, int] = {}
            for entry, _ in entries.values():
                by_reason[entry.reason] = by_reason.get(entry.reason, 0) + 1
                by_recipient[entry.recipient] = by_recipient.get(entry.recipient, 0) + 1
            oldest = min((e.first_failure for e, _ in entries.values()), default=None)
            return Reply({"entries": len(entries), "by_reason": by_reason,
                          "by_recipient": by_recipient, "oldest": oldest}, entries)  # fmt: skip
        return await super().handle_call(request, caller, entries)

    async def handle_info(self, msg: Any, entries: Any) -> Any:
        if type(msg) is _Sweep:
            every, expire_after, max_attempts = self.sweep
            if self.sweeper is None or not is_alive(self.sweeper):  # one sweep at a time
                await self._forget_dropped()  # what the last sweep (or anyone) deleted
                self.sweeper = spawn_link(_sweep, self.pid, expire_after, max_attempts)
            assert every is not None
            send_after(self.pid, _Sweep(), every)
            return entries
        return await super().handle_info(msg, entries)

    async def _drop(self, entries: Any, entry_id: str) -> None:
        _, version = entries.pop(entry_id)
        self.pids.pop(entry_id, None)
        await self.store.delete(f"dlq/{entry_id}", version)
        self.dropped += 1

    async def _forget_dropped(self) -> None:
        """Entry ids are never used twice: their tombstones need not be kept (where the store
        can forget them), so a queue's table does not grow with every letter it ever held."""
        forget = getattr(self.store, "forget_deleted", None)
        if forget is not None and self.dropped:
            self.dropped = 0
            await forget("dlq/")
