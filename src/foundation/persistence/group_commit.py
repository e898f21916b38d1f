"""GroupCommitStore: the write path SQLite and PostgreSQL share: a queue, a writer thread.

A save is queued and answered by a future. At the end of the loop pass, everything queued goes
to the store's **writer thread** as one batch, which the backend writes in one transaction;
saves made while that commit is in flight wait for the next one, so the more writers there are,
the more each commit carries. Every caller is answered when its own save is durable: with its
new version, its own ``StaleVersion``, or, if the commit failed, a ``PersistenceError`` shared by
the whole batch (none of it acknowledged). Reads run on a second thread with their own
connection. Both threads are kernel-owned (``runtime.worker``), so the event loop never blocks
and no caller's cancellation (a killed process) can interrupt a commit that others wait for:
a killed writer's save still lands, and ``load`` of that key waits for it.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from foundation.errors import FoundationError, InvalidArgument, PersistenceError
from foundation.kernel.context import RUNTIME
from foundation.persistence.memory import check_key, check_version, encode, settled
from foundation.persistence.store import Stored

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime, ThreadWorker

__all__ = ["GroupCommitStore", "StoreStats", "Then", "Write"]

Then = Callable[[int | None, BaseException | None], None]
"""Told a write's outcome in the pass its commit is answered: ``(version, None)`` or
``(None, error)``."""


@dataclass(slots=True)
class StoreStats:
    """Writes so far: saves and deletes acknowledged, and the commits that carried them."""

    writes: int = 0
    commits: int = 0
    largest_batch: int = 0


@dataclass(slots=True)
class Write:
    """One queued save (``text`` is its JSON) or delete (``text`` is ``None``)."""

    key: str
    text: str | None
    expected: int | None
    schema_version: int
    fut: asyncio.Future[int | None] = field(repr=False)
    then: Then | None = field(default=None, repr=False)


class GroupCommitStore:
    """The shared half of a batched store; a backend supplies what runs on its two threads.

    ``_commit(batch)`` (writer thread) checks each write's version in order and writes the
    batch in one transaction, returning per write its new version, ``None`` (a delete) or its
    ``StaleVersion``; an exception fails the whole batch. ``_load``, ``_list`` run on the reader
    thread; ``_close_writer``/``_close_reader`` release each thread's connection.
    """

    kind = "store"  # names the threads: "<kind>-writer:<label>"

    def __init__(self, label: str) -> None:
        self.stats = StoreStats()
        self._label = label
        self._rt: Runtime | None = None
        self._writer: ThreadWorker | None = None
        self._reader: ThreadWorker | None = None
        self._queue: list[Write] = []
        self._settle: asyncio.Future[Any] | None = None  # the queued batch's, for callback writes
        self._writing: dict[str, asyncio.Future[Any]] = {}
        self._inflight: asyncio.Future[Any] | None = None
        self._scheduled = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    def attach(self, rt: Runtime) -> None:
        """Take the writer and reader threads from ``rt`` (the runtime calls this on start)."""
        self._rt = rt
        self._writer = rt.worker(f"{self.kind}-writer:{self._label}")
        self._reader = rt.worker(f"{self.kind}-reader:{self._label}")
        self._forget_connections()  # any left belong to threads of an earlier runtime
        self._closed = False

    def _ready(self) -> tuple[ThreadWorker, ThreadWorker]:
        if self._closed:
            raise PersistenceError(f"{self!r} is closed", retryable=False)
        if self._writer is None or self._reader is None:
            rt = RUNTIME.get()
            if rt is None:
                raise PersistenceError(
                    f"{self!r} is not attached to a runtime: pass it as Runtime(store=...)",
                    retryable=False,
                )
            self.attach(rt)
        assert self._writer is not None
        assert self._reader is not None
        return self._writer, self._reader

    async def close(self) -> None:
        """Finish the writes queued and in flight, then release both connections; idempotent."""
        if self._closed or self._writer is None or self._reader is None:
            self._closed = True
            return
        await self._drain()
        self._closed = True
        await self._writer.run(self._close_writer)
        await self._reader.run(self._close_reader)

    async def _drain(self) -> None:
        """Wait until every write queued or in flight so far is committed (or failed)."""
        while self._inflight is not None or self._queue:
            if self._inflight is None:
                self._flush()
            assert self._inflight is not None
            await asyncio.wait([self._inflight])

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, key: str) -> Stored | None:
        """The record under ``key`` (after any write of it still in flight), or ``None``."""
        await settled(self._writing, key)  # a write in flight (a dead writer's) lands first
        _, reader = self._ready()
        return await reader.run(self._load, key)

    # -- writes --------------------------------------------------------------------------------

    async def save(
        self,
        key: str,
        data: dict[str, Any],
        expected_version: int | None,
        *,
        schema_version: int = 1,
    ) -> int:
        """Write ``data`` if ``key`` is still at ``expected_version``; its new version, once
        durable (``StaleVersion`` if not, ``PersistenceError`` if the commit failed)."""
        version = await self._write(key, encode(key, data), expected_version, schema_version)
        assert version is not None
        return version

    async def save_json(
        self, key: str, text: str, expected_version: int | None, *, schema_version: int = 1
    ) -> int:
        """``save`` of data already encoded as JSON text (what persistent servers hand over)."""
        check_key(key)
        version = await self._write(key, text, expected_version, schema_version)
        assert version is not None
        return version

    def save_json_nowait(
        self, key: str, text: str, expected_version: int | None, schema_version: int = 1
    ) -> asyncio.Future[int | None]:
        """``save_json`` without the coroutine: the future answers once the save is durable
        (what a persistent server awaits on every change)."""
        check_key(key)
        return self._write(key, text, expected_version, schema_version)

    def save_json_then(
        self,
        key: str,
        text: str,
        expected_version: int | None,
        schema_version: int,
        then: Then,
    ) -> None:
        """``save_json`` told by callback: ``then(version, error)`` runs once the save is
        durable (or failed), in the very pass that answers its commit, with no task woken to
        hear it (what a persistent server uses to reply without a round trip of its own)."""
        if type(key) is not str or not key:
            check_key(key)
        self._write(key, text, expected_version, schema_version, then)

    async def delete(self, key: str, expected_version: int | None) -> None:
        """Remove ``key`` if it is still at ``expected_version`` (``None``: any), durably."""
        check_key(key)
        await self._write(key, None, expected_version, 0)

    async def forget_deleted(self, prefix: str = "", older_than: float = 0.0) -> int:
        """Drop the tombstones of keys under ``prefix`` deleted ``older_than`` seconds ago or
        more; how many. A forgotten key's versions start again at 1: only for keys that are
        never written again (unique ids), or whose old writers are all gone."""
        if not isinstance(prefix, str):
            raise InvalidArgument(f"invalid prefix {prefix!r}: a str")
        writer, _ = self._ready()
        await self._drain()  # deletes queued before land first
        forgotten: int = await writer.run(self._forget, prefix, time.time() - older_than)
        return forgotten

    def _write(
        self,
        key: str,
        text: str | None,
        expected: int | None,
        schema_version: int,
        then: Then | None = None,
    ) -> asyncio.Future[int | None]:
        """Queue a write; the future answers once its commit is durable (a plain function:
        one coroutine less per save)."""
        if self._closed or self._writer is None:
            self._ready()
        if expected is not None and (type(expected) is not int or expected < 1):
            check_version(key, expected)  # raises: a tombstone's negated version is no target
        rt = self._rt
        assert rt is not None
        fut: asyncio.Future[int | None] | None
        if then is None:
            fut = rt.loop.create_future()
        else:  # told by callback: one future per batch, for ``load`` to wait on, is enough
            fut = self._settle
            if fut is None:
                fut = self._settle = rt.loop.create_future()
        self._queue.append(Write(key, text, expected, schema_version, fut, then))
        self._writing[key] = fut  # the latest write of the key: ``load`` waits for it
        if self._inflight is None and not self._scheduled:
            # Start the commit at the end of this loop pass, so that every save made in the
            # same pass (servers woken together make theirs together) joins the batch.
            self._scheduled = True
            rt.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        """Hand everything queued to the writer thread as one transaction."""
        self._scheduled = False
        if self._inflight is not None or not self._queue:
            return
        writer, _ = self._ready()
        batch, self._queue = self._queue, []
        settle, self._settle = self._settle, None
        inflight = self._inflight = writer.submit(self._commit_isolating, batch)
        inflight.add_done_callback(lambda done: self._committed(batch, done, settle))

    def _committed(
        self,
        batch: list[Write],
        done: asyncio.Future[list[Any]],
        settle: asyncio.Future[Any] | None,
    ) -> None:
        """Answer every caller of a finished commit, then start the next one if saves wait."""
        self._inflight = None
        writing = self._writing
        err: BaseException | None
        if done.cancelled():
            err = PersistenceError(f"the commit to {self!r} was cancelled; nothing acknowledged")
        else:
            err = done.exception()
        if err is not None:
            if not isinstance(err, FoundationError):
                err = PersistenceError(
                    f"commit to {self!r} failed: {err!r}; none of its {len(batch)} writes was made",
                    context={"store": repr(self)},
                )
            for w in batch:
                if writing.get(w.key) is w.fut:
                    del writing[w.key]
                if w.then is not None:
                    try:
                        w.then(None, err)
                    except Exception as exc:
                        self._callback_failed(exc)
                elif not w.fut.done():
                    w.fut.set_exception(err)
        else:
            stats = self.stats
            stats.commits += 1
            stats.writes += len(batch)
            stats.largest_batch = max(stats.largest_batch, len(batch))
            for w, result in zip(batch, done.result(), strict=True):
                fut = w.fut
                if writing.get(w.key) is fut:
                    del writing[w.key]
                then = w.then
                if then is not None:
                    try:
                        if isinstance(result, BaseException):
                            then(None, result)
                        else:
                            then(result, None)
                    except Exception as exc:
                        self._callback_failed(exc)
                    continue
                if fut.done():  # its caller was killed: the write landed all the same
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        if settle is not None:
            settle.set_result(None)  # only ``load`` waits on it: settled, not answered
        if self._queue and not self._scheduled:
            self._scheduled = True
            assert self._rt is not None
            self._rt.loop.call_soon(self._flush)

    def _callback_failed(self, exc: Exception) -> None:
        """A ``save_json_then`` callback raised: reported, and the other writes still answered."""
        assert self._rt is not None
        self._rt.loop.call_exception_handler(
            {"message": f"a save callback of {self!r} raised", "exception": exc}
        )

    def _commit_isolating(self, batch: builtins.list[Write]) -> builtins.list[Any]:
        """On the writer thread: commit the batch; if one write's own data made it fail (text
        the database refuses), commit the writes one by one instead, so that only that write
        fails (with its own error) and the others are not held hostage by it."""
        try:
            return self._commit(batch)
        except Exception as exc:
            if len(batch) == 1 or not self._row_error(exc):
                raise
        results: builtins.list[Any] = []
        for w in batch:  # in order; each alone, so each outcome is exactly its own
            try:
                results.extend(self._commit([w]))
            except Exception as exc:
                results.append(self._refused(w, exc))
        return results

    def _refused(self, w: Write, exc: Exception) -> PersistenceError:
        if isinstance(exc, PersistenceError) and not self._row_error(exc):
            return exc
        cause = exc.__cause__ if isinstance(exc, PersistenceError) and exc.__cause__ else exc
        err = PersistenceError(
            f"{self!r} refused the write of {w.key!r}: {type(cause).__name__}: {cause}",
            context={"key": w.key},
            retryable=False,
        )
        err.__cause__ = cause
        return err

    # -- the backend's side (runs on the store's threads) --------------------------------------

    def _row_error(self, exc: BaseException) -> bool:
        """Did the data of one write (not the database) make ``exc`` happen?"""
        return isinstance(exc, UnicodeEncodeError)  # a lone surrogate: not UTF-8 text

    def _forget_connections(self) -> None:
        """Drop (without closing) connections made on threads that are gone."""

    def _commit(self, batch: builtins.list[Write]) -> builtins.list[Any]:
        raise NotImplementedError

    def _load(self, key: str) -> Stored | None:
        raise NotImplementedError

    def _list(self, prefix: str) -> builtins.list[str]:
        raise NotImplementedError

    def _forget(self, prefix: str, cutoff: float) -> int:
        raise NotImplementedError

    def _close_writer(self) -> None:
        raise NotImplementedError

    def _close_reader(self) -> None:
        raise NotImplementedError

    # -- listing (last: the method's name shadows the builtin in the class body) -----------

    async def list(self, prefix: str = "") -> builtins.list[str]:
        """Every stored key starting with ``prefix``, sorted (by code point)."""
        _, reader = self._ready()
        return await reader.run(self._list, prefix)
