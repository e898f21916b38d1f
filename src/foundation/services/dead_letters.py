"""DeadLetterQueue: durable entries for every message that could not be delivered.

``await DeadLetterQueue.put(recipient, message, reason, metadata)`` stores an entry (id,
recipient, message, reason, attempts, first and last failure, metadata) in the state store
under ``dlq/<id>`` **before** it answers: a dead letter is never lost, and the queue comes back
with all of them after a restart of the process or of the whole OS process. Every other service
hands its undeliverable messages here (``DeadLetterQueue.sink()`` is the ``DeadLetterSink`` they
take). ``retry(recipient=..., reason=...)`` delivers matching entries again, by a call made by
the caller (never inside the queue's server), with exponential backoff per entry between
attempts: a delivered entry is removed, a failed one counts the attempt. ``purge(max_age)``
removes old entries. Messages that are not JSON-ready are stored as their ``repr`` (flagged).
Without a store in the runtime, entries live in a ``MemoryStore`` (and die with the runtime).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel

from foundation.errors import FoundationError, InvalidArgument, NotFound
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.persistence.memory import MemoryStore
from foundation.persistence.store import StateStore
from foundation.services.signal_bus import DeadLetterSink

__all__ = [
    "DEAD_LETTERS",
    "DeadLetter",
    "DeadLetterQueue",
]

DEAD_LETTERS = "dead_letters"
"""The default registered name of the dead-letter queue."""


class DeadLetter(BaseModel):
    """One undeliverable message and what happened to it."""

    id: str
    recipient: str
    message: Any
    message_is_repr: bool = False
    reason: str
    attempts: int = 1
    first_failure: float
    last_failure: float
    next_retry_at: float = 0.0
    metadata: dict[str, Any] = {}


def _jsonable(value: Any) -> tuple[Any, bool]:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value), True
    return value, False


class DeadLetterQueue(GenServer):
    """The durable dead-letter queue; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: str = DEAD_LETTERS, backoff: float = 1.0, max_backoff: float = 300.0
    ) -> Pid:
        """Start the queue, loading the entries stored by earlier runs."""
        return await cls._start((backoff, max_backoff), name=name, timeout=30.0, max_mailbox=None,
                                link=True)  # fmt: skip

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
        """Store a dead letter durably; its id."""
        body, is_repr = _jsonable(message)
        meta, _ = _jsonable(dict(metadata or {}))
        if not isinstance(meta, dict):
            meta = {"repr": meta}
        return await call(dlq, ("put", str(recipient), body, is_repr, str(reason), meta))  # type: ignore[no-any-return]

    @staticmethod
    def sink(dlq: Any = DEAD_LETTERS) -> DeadLetterSink:
        """The ``DeadLetterSink`` other services take: ``put`` on this queue."""

        async def put(recipient: Any, message: Any, reason: str, meta: dict[str, Any]) -> None:
            await DeadLetterQueue.put(recipient, message, reason, meta, dlq=dlq)

        return put

    @staticmethod
    async def list(
        *, recipient: str | None = None, reason: str | None = None, dlq: Any = DEAD_LETTERS
    ) -> list[DeadLetter]:
        """The entries matching the filters, oldest first."""
        return await call(dlq, ("list", recipient, reason))  # type: ignore[no-any-return]

    @staticmethod
    async def retry(
        *,
        recipient: str | None = None,
        reason: str | None = None,
        timeout: float = 5.0,
        dlq: Any = DEAD_LETTERS,
    ) -> dict[str, int]:
        """Deliver the matching entries due for a retry again; counts of delivered and failed."""
        now = current_runtime().clock.now()
        done = {"delivered": 0, "failed": 0, "not_due": 0}
        for entry in await DeadLetterQueue.list(recipient=recipient, reason=reason, dlq=dlq):
            if entry.next_retry_at > now or entry.message_is_repr:
                done["not_due"] += 1
                continue
            try:
                await call(entry.recipient, entry.message, timeout)
            except FoundationError as err:
                await call(dlq, ("failed", entry.id, err.code))
                done["failed"] += 1
                continue
            await call(dlq, ("delivered", entry.id))
            done["delivered"] += 1
        return done

    @staticmethod
    async def purge(max_age: float, *, dlq: Any = DEAD_LETTERS) -> int:
        """Remove entries whose last failure is older than ``max_age`` seconds; how many."""
        if max_age < 0:
            raise InvalidArgument(f"invalid max_age: {max_age!r} (seconds >= 0)")
        return await call(dlq, ("purge", max_age))  # type: ignore[no-any-return]

    @staticmethod
    async def stats(*, dlq: Any = DEAD_LETTERS) -> dict[str, Any]:
        """How many entries, by reason."""
        return await call(dlq, ("stats",))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: tuple[float, float]) -> dict[str, tuple[DeadLetter, int]]:
        self.backoff, self.max_backoff = args
        rt = current_runtime()
        self.store: StateStore = rt.store if rt.store is not None else MemoryStore()
        entries: dict[str, tuple[DeadLetter, int]] = {}
        for key in await self.store.list("dlq/"):
            rec = await self.store.load(key)
            if rec is not None:
                entry = DeadLetter.model_validate(rec.data)
                entries[entry.id] = (entry, rec.version)
        return entries

    async def _save(self, entry: DeadLetter, version: int | None) -> int:
        return await self.store.save(f"dlq/{entry.id}", entry.model_dump(mode="json"), version)

    async def handle_call(self, request: Any, caller: From, entries: Any) -> Any:
        kind = request[0]
        now, wall = current_runtime().clock.now(), time.time()
        if kind == "put":
            _, recipient, body, is_repr, reason, meta = request
            entry = DeadLetter(
                id=uuid.uuid4().hex[:16],
                recipient=recipient,
                message=body,
                message_is_repr=is_repr,
                reason=reason,
                first_failure=wall,
                last_failure=wall,
                next_retry_at=now,
                metadata=meta,
            )
            entries[entry.id] = (entry, await self._save(entry, None))  # durable, then the reply
            return Reply(entry.id, entries)
        if kind == "list":
            _, recipient, reason = request
            found = [
                e
                for e, _ in entries.values()
                if recipient in (None, e.recipient) and reason in (None, e.reason)
            ]
            return Reply(sorted(found, key=lambda e: e.first_failure), entries)
        if kind in ("failed", "delivered"):
            item = entries.get(request[1])
            if item is None:
                return Reply(None, entries)
            entry, version = item
            if kind == "delivered":
                await self.store.delete(f"dlq/{entry.id}", version)
                del entries[entry.id]
                return Reply(None, entries)
            delay = min(self.backoff * 2 ** (entry.attempts - 1), self.max_backoff)
            entry = entry.model_copy(
                update={
                    "attempts": entry.attempts + 1,
                    "last_failure": wall,
                    "next_retry_at": now + delay,
                    "metadata": {**entry.metadata, "last_error": request[2]},
                }
            )
            entries[entry.id] = (entry, await self._save(entry, version))
            return Reply(None, entries)
        if kind == "purge":
            old = [e for e, _ in entries.values() if e.last_failure < wall - request[1]]
            for entry in old:
                await self.store.delete(f"dlq/{entry.id}", entries[entry.id][1])
                del entries[entry.id]
            return Reply(len(old), entries)
        if kind == "stats":
            by_reason: dict[str, int] = {}
            for entry, _ in entries.values():
                by_reason[entry.reason] = by_reason.get(entry.reason, 0) + 1
            return Reply({"entries": len(entries), "by_reason": by_reason}, entries)
        if kind == "get":
            item = entries.get(request[1])
            if item is None:
                return Reply(NotFound(f"no dead letter {request[1]!r}"), entries)
            return Reply(item[0], entries)
        return await super().handle_call(request, caller, entries)
