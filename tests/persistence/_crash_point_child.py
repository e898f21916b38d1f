"""Child process of the crash-point tests (T2): die with ``os._exit(137)`` at a numbered point.

``python _crash_point_child.py STORE_URL POINT M CALLS`` starts ``SERVERS`` persistent counters
on the store (each comes back with its stored state), then has each make ``CALLS`` acknowledged
calls, all at once (so a group-commit batch holds several writes). It prints ``ack KEY COUNT``
after each acknowledgement and ``done`` at the end; when crash point ``POINT`` is reached for the
``M``-th time it prints ``crash POINT M KEY=COUNT ...`` (the writes concerned: the batch at points
1-5, the acknowledged call at point 6) and calls ``os._exit(137)``. ``POINT`` 0: no crash.

The points (``POINTS``) are injected by subclassing the store here: nothing in ``foundation``
knows of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from foundation import Reply, Runtime, call, spawn
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.persistence import PersistentServer, open_store
from foundation.persistence.group_commit import Write
from foundation.persistence.sqlite import SQLiteStore

POINTS = MappingProxyType(
    {
        1: "save queued, batch about to go to the writer thread (loop, GroupCommitStore._flush)",
        2: "writer thread, after BEGIN, before the batch's statements",
        3: "writer thread, after the batch's statements, before COMMIT",
        4: "writer thread, after COMMIT, before the results go back to the loop",
        5: "loop, in _committed: first `then` of a batch of 2+ writes called, the others not yet",
        6: "client, after an acknowledgement was printed, before its next call",
    }
)
"""Crash points, numbered along the path of one write (PostgreSQL: the child runs each batch in
an explicit transaction so that 2 and 3 exist; a one-round batch is otherwise one autocommit
statement, and a multi-round one runs in the same kind of transaction)."""

SERVERS = 4
CRASH_EXIT = 137


def token(key: str, n: int) -> int:
    """The value the ``n``-th call to ``key`` adds (so a stored list shows what was applied)."""
    return (n * 7919 + sum(key.encode())) % 100_003


class Counter(PersistentServer):
    class State(BaseModel):
        count: int = 0
        items: list[int] = []  # token(key, 1..count), in order: a lost or doubled call shows
        check: int = 0  # always 7 * count: a torn write would break it

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        if request == "get":
            return Reply(state.count, state)
        n = state.count + 1
        assert request == token(self.key, n), (request, n)
        return Reply(n, self.State(count=n, items=[*state.items, request], check=7 * n))


class Crasher:
    """Counts the passes through each point; at the ``m``-th pass of ``point`` prints the
    marker and exits the OS process at once (no cleanup, no flush: as a crash would)."""

    def __init__(self, point: int, m: int) -> None:
        self.point = point
        self.m = m
        self.seen = 0
        self.lock = threading.Lock()  # points 2-4 are on the writer thread

    def at(self, point: int, writes: list[tuple[str, int]]) -> None:
        if point != self.point:
            return
        with self.lock:
            self.seen += 1
            if self.seen != self.m:
                return
            what = " ".join(f"{key}={count}" for key, count in writes)
            os.write(1, f"crash {point} {self.m} {what}\n".encode())
            os._exit(CRASH_EXIT)


def _writes(batch: list[Write]) -> list[tuple[str, int]]:
    """(key, the count each write would store) for the marker."""
    return [(w.key, json.loads(w.text)["count"] if w.text else -1) for w in batch]


class CrashPoints:
    """Mixin over a GroupCommitStore: points 1, 4 and 5 (the backend subclasses add 2 and 3)."""

    crasher: Crasher
    _current: list[Write]

    def _flush(self) -> None:
        if self._inflight is None and self._queue:  # type: ignore[attr-defined]
            self.crasher.at(1, _writes(self._queue))  # type: ignore[attr-defined]
        super()._flush()  # type: ignore[misc]

    def _commit_isolating(self, batch: list[Write]) -> list[Any]:
        self._current = batch
        results: list[Any] = super()._commit_isolating(batch)  # type: ignore[misc]
        self.crasher.at(4, _writes(batch))
        return results

    def _committed(self, batch: list[Write], done: Any, settle: Any) -> None:
        first = batch[0]
        ok = not done.cancelled() and done.exception() is None
        if len(batch) >= 2 and first.then is not None and ok:
            answer = first.then

            def then(version: int | None, error: BaseException | None) -> None:
                answer(version, error)
                self.crasher.at(5, _writes(batch))

            first.then = then
        super()._committed(batch, done, settle)  # type: ignore[misc]


class _CrashConn:
    """The SQLite writer connection, with points 2 (after BEGIN) and 3 (before COMMIT)."""

    def __init__(self, conn: sqlite3.Connection, store: CrashSQLite) -> None:
        self._conn = conn
        self._store = store

    def execute(self, sql: str, *args: Any) -> Any:
        store = self._store
        if sql == "COMMIT":
            store.crasher.at(3, _writes(store._current))
        cursor = self._conn.execute(sql, *args)
        if sql.startswith("BEGIN"):
            store.crasher.at(2, _writes(store._current))
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class CrashSQLite(CrashPoints, SQLiteStore):
    def _commit(self, batch: list[Write]) -> list[Any]:
        if self._wconn is None:
            self._wconn = _CrashConn(self._connect(), self)  # type: ignore[assignment]
        return super()._commit(batch)


def _crash_postgres(base: type) -> type:
    from foundation.persistence import postgres

    class CrashPostgres(CrashPoints, base):  # type: ignore[valid-type, misc]
        def _commit(self, batch: list[Write]) -> list[Any]:
            results: list[Any] = self._run(self._w, _commit_in_transaction, batch)
            return results

    async def _commit_in_transaction(conn: Any, store: Any, batch: list[Write]) -> list[Any]:
        async with conn.transaction():
            store.crasher.at(2, _writes(batch))
            results = await postgres._commit(conn, store, batch)
            store.crasher.at(3, _writes(batch))
        return results

    return CrashPostgres


def crash_store(url: str, crasher: Crasher) -> Any:
    """The store ``url`` names, as its crash-point subclass."""
    plain = open_store(url)
    if isinstance(plain, SQLiteStore):
        store: Any = CrashSQLite(plain.path, synchronous=plain.synchronous)
    else:
        cls = _crash_postgres(type(plain))
        store = cls(plain.dsn, table=plain.table)  # type: ignore[attr-defined]
    store.crasher = crasher
    return store


async def main(url: str, point: int, m: int, calls: int) -> None:
    crasher = Crasher(point, m)
    async with Runtime(store=crash_store(url, crasher)):
        keys = [f"cp/c{i}" for i in range(SERVERS)]
        for key in keys:
            await Counter.start(key=key, name=key)

        async def client(key: str) -> None:
            count = await call(key, "get")
            for _ in range(calls):
                count = await call(key, token(key, count + 1))
                sys.stdout.write(f"ack {key} {count}\n")
                sys.stdout.flush()
                crasher.at(6, [(key, count)])

        pids = [spawn(client, key) for key in keys]
        for pid in pids:
            await wait_exit(pid)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
