"""Registry: processes registered under keys, with metadata, found without a message round trip.

``await Registry.start_link(keys="unique"|"duplicate", name=..., index=[...])``. A process
registers itself (``await Registry.register(reg, key, metadata)``, a call, so the registry can
monitor it: one monitor per registered process, removed with its last key) and its entries
disappear when it exits. Reads are plain synchronous functions served from the registry's tables
on the same event loop: ``lookup``, ``select`` (answered from indexes on the metadata fields
declared in ``index``; a list-valued field is indexed per element), ``count``, ``dispatch``,
``keys``. A registry also resolves ``("via", registry, key)`` process names.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from foundation.errors import (
    AlreadyRegistered,
    InvalidArgument,
    NoProcess,
    NotInProcess,
)
from foundation.kernel.api import demonitor, monitor
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From, Process
from foundation.kernel.supervision import Failed, unwrap

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime

__all__ = ["Registry", "register_via", "whereis_via"]

Keys = Literal["unique", "duplicate"]


class _Entry:
    __slots__ = ("key", "meta", "pid", "seq")

    def __init__(self, key: Hashable, pid: Pid, meta: Any, seq: int) -> None:
        self.key = key
        self.pid = pid
        self.meta = meta
        self.seq = seq


class _Tables:
    """The registry's data, read directly by the synchronous functions."""

    __slots__ = ("by_pid", "entries", "index", "indexed", "mode", "monitors", "seq")

    def __init__(self, mode: str, indexed: tuple[str, ...]) -> None:
        self.mode = mode
        self.indexed = indexed
        self.entries: dict[Hashable, dict[Pid, _Entry]] = {}
        self.by_pid: dict[Pid, set[Hashable]] = {}
        self.monitors: dict[Pid, Ref] = {}
        self.index: dict[str, dict[Hashable, set[_Entry]]] = {f: {} for f in indexed}
        self.seq = itertools.count()

    def _index_values(self, meta: Any, field: str) -> Iterable[Hashable]:
        if not isinstance(meta, Mapping) or field not in meta:
            return ()
        value = meta[field]
        if isinstance(value, list | tuple | set | frozenset):
            return value
        return (value,)

    def add_index(self, entry: _Entry) -> None:
        for field in self.indexed:
            table = self.index[field]
            for value in self._index_values(entry.meta, field):
                table.setdefault(value, set()).add(entry)

    def drop_index(self, entry: _Entry) -> None:
        for field in self.indexed:
            table = self.index[field]
            for value in self._index_values(entry.meta, field):
                bucket = table.get(value)
                if bucket is not None:
                    bucket.discard(entry)
                    if not bucket:
                        del table[value]

    def remove(self, key: Hashable, pid: Pid) -> bool:
        by_key = self.entries.get(key)
        entry = by_key.pop(pid, None) if by_key is not None else None
        if entry is None:
            return False
        if not by_key:
            del self.entries[key]
        self.drop_index(entry)
        keys = self.by_pid.get(pid)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_pid[pid]
        return True


def _tables(reg: Any) -> _Tables:
    rt = current_runtime()
    proc = rt.resolve(reg)
    if proc is None:
        raise NoProcess(f"registry {reg!r} is not running", context={"registry": reg})
    server = proc.server
    if not isinstance(server, Registry):
        raise InvalidArgument(f"{reg!r} is not a Registry (it is a {proc.behaviour})")
    return server._t


def _check_meta_filters(t: _Tables, filters: Mapping[str, Any]) -> None:
    for field in filters:
        if field not in t.indexed:
            raise InvalidArgument(
                f"select on {field!r}: the registry indexes only {list(t.indexed)}; "
                "declare it in index=[...] at start",
                context={"field": field, "indexed": list(t.indexed)},
            )


class Registry(GenServer):
    """A key/process table with metadata and indexes; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, keys: Keys = "unique", name: Any = None, index: Iterable[str] = ()
    ) -> Pid:
        """Start a registry linked to the caller."""
        return await cls._start(
            cls._check(keys, index), name=name, timeout=5.0, max_mailbox=None, link=True
        )

    @classmethod
    async def start(  # type: ignore[override]
        cls, *, keys: Keys = "unique", name: Any = None, index: Iterable[str] = ()
    ) -> Pid:
        """Start an unlinked registry."""
        return await cls._start(
            cls._check(keys, index), name=name, timeout=5.0, max_mailbox=None, link=False
        )

    @classmethod
    def child_spec(  # type: ignore[override]
        cls, *, keys: Keys = "unique", name: Any = None, index: Iterable[str] = (), id: Any = None
    ) -> Any:
        """A child spec that runs a registry under a supervisor."""
        from foundation.kernel.child_spec import ChildSpec

        args = cls._check(keys, index)

        async def start() -> Pid:
            return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

        return ChildSpec(id=id or (name if isinstance(name, str) else "Registry"), start=start)

    @staticmethod
    def _check(keys: Any, index: Iterable[str]) -> tuple[str, tuple[str, ...]]:
        if keys not in ("unique", "duplicate"):
            raise InvalidArgument(
                f"invalid keys: {keys!r} (unique or duplicate)",
                context={"field": "keys", "value": keys},
            )
        fields = tuple(index)
        for f in fields:
            if not isinstance(f, str):
                raise InvalidArgument(f"invalid index field: {f!r} (must be a str)")
        return keys, fields

    # -- writes (calls from the owning process) ------------------------------------------------

    @staticmethod
    async def register(reg: Any, key: Hashable, metadata: Any = None) -> None:
        """Register the calling process under ``key``; removed when it exits or unregisters."""
        unwrap(await call(reg, ("register", key, metadata)))

    @staticmethod
    async def unregister(reg: Any, key: Hashable) -> None:
        """Remove the calling process's entry under ``key`` (no-op if it has none)."""
        unwrap(await call(reg, ("unregister", key)))

    @staticmethod
    async def update_metadata(reg: Any, key: Hashable, metadata: Any) -> None:
        """Replace the metadata of the calling process's entry under ``key`` (re-indexed)."""
        unwrap(await call(reg, ("update", key, metadata)))

    # -- reads (synchronous, no round trip) ------------------------------------------------------

    @staticmethod
    def lookup(reg: Any, key: Hashable) -> list[tuple[Pid, Any]]:
        """``[(pid, metadata)]`` registered under ``key`` (live processes only)."""
        by_key = _tables(reg).entries.get(key)
        if not by_key:
            return []
        return [(e.pid, e.meta) for e in by_key.values() if e.pid._proc is not None]

    @staticmethod
    def whereis_name(reg: Any, key: Hashable) -> Pid | None:
        """The live pid under ``key`` in a unique registry, or None."""
        by_key = _tables(reg).entries.get(key)
        if not by_key:
            return None
        for e in by_key.values():
            if e.pid._proc is not None:
                return e.pid
        return None

    @staticmethod
    def select(reg: Any, **filters: Any) -> list[tuple[Hashable, Pid, Any]]:
        """``[(key, pid, metadata)]`` matching every filter on indexed fields, in register order.

        A filter value matches an entry whose field equals it or, for a list-valued field,
        contains it. Only indexed fields can be filtered (``InvalidArgument`` otherwise); with
        no filters, every entry is returned.
        """
        t = _tables(reg)
        _check_meta_filters(t, filters)
        if not filters:
            found: Iterable[_Entry] = (e for by_key in t.entries.values() for e in by_key.values())
        else:
            sets = []
            for field, value in filters.items():
                bucket = t.index[field].get(value)
                if not bucket:
                    return []
                sets.append(bucket)
            sets.sort(key=len)
            found = set(sets[0]).intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        live = [e for e in found if e.pid._proc is not None]
        live.sort(key=lambda e: e.seq)
        return [(e.key, e.pid, e.meta) for e in live]

    @staticmethod
    def count(reg: Any, **filters: Any) -> int:
        """How many entries the registry holds (matching ``filters``, as for ``select``)."""
        t = _tables(reg)
        if filters:
            return len(Registry.select(reg, **filters))
        return sum(len(by_key) for by_key in t.entries.values())

    @staticmethod
    def keys(reg: Any, pid: Pid) -> list[Hashable]:
        """The keys ``pid`` is registered under."""
        return list(_tables(reg).by_pid.get(pid, ()))

    @staticmethod
    def dispatch(reg: Any, key: Hashable, fn: Callable[[list[tuple[Pid, Any]]], Any]) -> bool:
        """Call ``fn(entries)`` with the ``[(pid, metadata)]`` under ``key``; False if none."""
        entries = Registry.lookup(reg, key)
        if not entries:
            return False
        fn(entries)
        return True

    # -- the server ---------------------------------------------------------------------------

    async def init(self, args: tuple[str, tuple[str, ...]]) -> None:
        self._t = _Tables(*args)

    async def handle_call(self, request: Any, caller: From, state: None) -> Any:
        op = request[0] if isinstance(request, tuple) and request else None
        owner = caller.pid
        if op not in ("register", "unregister", "update"):
            return Reply(Failed(InvalidArgument(f"registry: unknown request {request!r}")), state)
        if owner is None or owner._proc is None:
            err = NotInProcess("Registry.register/unregister must be called by the owning process")
            return Reply(Failed(err), state)
        key = request[1]
        try:
            hash(key)
        except TypeError:
            return Reply(Failed(InvalidArgument(f"registry key must be hashable: {key!r}")), state)
        if op == "register":
            return Reply(self._register(owner, key, request[2]), state)
        if op == "unregister":
            if self._t.remove(key, owner):
                self._maybe_demonitor(owner)
            return Reply(None, state)
        entry = self._t.entries.get(key, {}).get(owner)
        if entry is None:
            return Reply(
                Failed(InvalidArgument(f"{owner!r} is not registered under {key!r}")), state
            )
        self._t.drop_index(entry)
        entry.meta = request[2]
        self._t.add_index(entry)
        return Reply(None, state)

    def _register(self, owner: Pid, key: Hashable, meta: Any) -> Any:
        t = self._t
        by_key = t.entries.get(key)
        if by_key:
            if t.mode == "unique":
                holder = next(iter(by_key.values())).pid
                return Failed(
                    AlreadyRegistered(
                        f"key {key!r} is already registered to {holder!r}",
                        context={"key": key, "pid": holder},
                    )
                )
            if owner in by_key:
                return Failed(
                    AlreadyRegistered(
                        f"{owner!r} is already registered under {key!r}", context={"key": key}
                    )
                )
        entry = _Entry(key, owner, meta, next(t.seq))
        t.entries.setdefault(key, {})[owner] = entry
        t.add_index(entry)
        t.by_pid.setdefault(owner, set()).add(key)
        if owner not in t.monitors:
            t.monitors[owner] = monitor(owner)
        return None

    def _maybe_demonitor(self, pid: Pid) -> None:
        if pid not in self._t.by_pid:
            ref = self._t.monitors.pop(pid, None)
            if ref is not None:
                demonitor(ref, flush=True)

    async def handle_info(self, msg: Any, state: None) -> Any:
        if type(msg) is Down:
            t = self._t
            if t.monitors.get(msg.pid) is msg.ref:
                del t.monitors[msg.pid]
                for key in list(t.by_pid.get(msg.pid, ())):
                    t.remove(key, msg.pid)
            return state
        return await super().handle_info(msg, state)


def whereis_via(rt: Runtime, reg: Any, key: Hashable) -> Pid | None:
    """Resolve a ``("via", registry, key)`` name (used by the kernel's name resolution)."""
    proc = rt.resolve(reg)
    if proc is None or not isinstance(proc.server, Registry):
        return None
    by_key = proc.server._t.entries.get(key)
    if not by_key:
        return None
    for e in by_key.values():
        if e.pid._proc is not None:
            return e.pid
    return None


async def register_via(proc: Process, reg: Any, key: Hashable) -> None:
    """Register a starting process under a via name (runs inside that process)."""
    from foundation.errors import AlreadyStarted

    holder = whereis_via(proc.runtime, reg, key)
    if holder is not None:
        raise AlreadyStarted(
            f"('via', {reg!r}, {key!r}) is already registered to {holder!r}", pid=holder
        )
    await Registry.register(reg, key, None)
    proc.via = (reg, key)
