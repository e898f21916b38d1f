"""Registry: processes registered under keys, with metadata, found without a message round trip.

``await Registry.start_link(keys="unique"|"duplicate", name=..., index=[...])``. A process
registers itself (``await Registry.register(reg, key, metadata)``, a call from inside it, else
``NotInProcess``), so the registry can monitor it: one monitor per registered process, removed
with its last key. Its entries and their index entries disappear when it exits. A unique key
held by a live process raises ``AlreadyRegistered``; a duplicate key holds each process once.

Reads are plain synchronous functions served from the registry's tables on the same event loop,
and only ever report live processes: ``lookup``, ``whereis_name``, ``select`` (answered from
indexes on the metadata fields declared in ``index``, intersected when several are given; a
list, tuple or set value is indexed per element; an unindexed field raises ``InvalidArgument``
naming it), ``count``, ``dispatch``, ``keys``. A registry that is not running gives
``NoProcess``; an unhashable key or indexed value gives ``InvalidArgument`` (the registry keeps
running). ``("via", registry, key)`` names a process through a registry: ``GenServer.start(args,
name=("via", reg, key))`` registers the server before its ``init``; a taken name raises
``AlreadyStarted``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from foundation.errors import (
    AlreadyRegistered,
    AlreadyStarted,
    InvalidArgument,
    NoProcess,
    NotInProcess,
)
from foundation.kernel.api import demonitor, monitor
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From, Process
from foundation.kernel.supervision import Failed, unwrap

if TYPE_CHECKING:
    from foundation.kernel.child_spec import ChildSpec
    from foundation.kernel.runtime import Runtime

__all__ = ["Registry", "register_via", "whereis_via"]

Keys = Literal["unique", "duplicate"]
_Indexed = tuple[tuple[str, tuple[Hashable, ...]], ...]


@dataclass(eq=False, slots=True)
class _Entry:
    key: Hashable
    pid: Pid
    meta: Any
    indexed: _Indexed  # the values as indexed: dropping them ignores later mutation of meta
    seq: int


def _check_hashable(value: Any, what: str) -> None:
    try:
        hash(value)
    except TypeError:
        raise InvalidArgument(
            f"{what} must be hashable, got {value!r}", context={"value": repr(value)}
        ) from None


class _Tables:
    """The registry's data, read directly by the synchronous functions."""

    __slots__ = ("by_pid", "entries", "index", "indexed", "mode", "monitors", "seq")

    def __init__(self, mode: str, indexed: tuple[str, ...]) -> None:
        self.mode = mode
        self.indexed = indexed
        self.entries: dict[Hashable, dict[Pid, _Entry]] = {}
        self.by_pid: dict[Pid, dict[Hashable, None]] = {}  # ordered set of keys per pid
        self.monitors: dict[Pid, Ref] = {}
        self.index: dict[str, dict[Hashable, set[_Entry]]] = {f: {} for f in indexed}
        self.seq = itertools.count()

    def index_values(self, meta: Any) -> _Indexed:
        """The indexed values of ``meta`` per field; ``InvalidArgument`` if one is unhashable."""
        if not self.indexed or not isinstance(meta, Mapping):
            return ()
        out = []
        for field in self.indexed:
            if field not in meta:
                continue
            value = meta[field]
            values = tuple(value) if isinstance(value, list | tuple | set | frozenset) else (value,)
            for v in values:
                _check_hashable(v, f"the indexed metadata field {field!r}")
            out.append((field, values))
        return tuple(out)

    def add(self, key: Hashable, pid: Pid, meta: Any, indexed: _Indexed) -> None:
        entry = _Entry(key, pid, meta, indexed, next(self.seq))
        self.entries.setdefault(key, {})[pid] = entry
        self.by_pid.setdefault(pid, {})[key] = None
        self.add_index(entry)

    def add_index(self, entry: _Entry) -> None:
        for field, values in entry.indexed:
            table = self.index[field]
            for value in values:
                table.setdefault(value, set()).add(entry)

    def drop_index(self, entry: _Entry) -> None:
        for field, values in entry.indexed:
            table = self.index[field]
            for value in values:
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
            keys.pop(key, None)
            if not keys:
                del self.by_pid[pid]
        return True

    def remove_pid(self, pid: Pid) -> None:
        """Forget every entry of ``pid`` (its monitor is the caller's business)."""
        for key in list(self.by_pid.get(pid, ())):
            self.remove(key, pid)


def _server(rt: Runtime, reg: Any) -> Registry | None:
    proc = rt.resolve(reg)
    if proc is None:
        return None
    server = proc.server
    if not isinstance(server, Registry):
        raise InvalidArgument(
            f"{reg!r} is not a Registry (it is a {proc.behaviour})", context={"registry": reg}
        )
    return server


def _tables(reg: Any) -> _Tables:
    t: _Tables | None = getattr(_server(current_runtime(), reg), "_t", None)
    if t is None:  # not running, or still starting
        raise NoProcess(f"registry {reg!r} is not running", context={"registry": reg})
    return t


def _live(by_key: dict[Pid, _Entry] | None) -> list[_Entry]:
    if not by_key:
        return []
    return [e for e in by_key.values() if e.pid._proc is not None]


class Registry(GenServer):
    """A key/process table with metadata and indexes; see the module docstring."""

    _t: _Tables

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
    ) -> ChildSpec:
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
        fields = tuple(dict.fromkeys(index))
        if isinstance(index, str) or not all(isinstance(f, str) and f for f in fields):
            raise InvalidArgument(
                f"invalid index: {index!r} (a list of non-empty field names)",
                context={"field": "index", "value": repr(index)},
            )
        return keys, fields

    # -- writes (calls from the owning process) ------------------------------------------------

    @staticmethod
    async def _write(reg: Any, what: str, key: Hashable, request: tuple[Any, ...]) -> None:
        if current_process() is None:
            raise NotInProcess(
                f"Registry.{what} must be called from inside the process that owns the entry "
                "(spawn a process, or do it in a GenServer's init)"
            )
        _check_hashable(key, "a registry key")
        _tables(reg)  # NoProcess / InvalidArgument before sending anything
        unwrap(await call(reg, request))

    @staticmethod
    async def register(reg: Any, key: Hashable, metadata: Any = None) -> None:
        """Register the calling process under ``key``; removed when it exits or unregisters."""
        await Registry._write(reg, "register", key, ("register", key, metadata))

    @staticmethod
    async def unregister(reg: Any, key: Hashable) -> None:
        """Remove the calling process's entry under ``key`` (no-op if it has none)."""
        await Registry._write(reg, "unregister", key, ("unregister", key))

    @staticmethod
    async def update_metadata(reg: Any, key: Hashable, metadata: Any) -> None:
        """Replace the metadata of the calling process's entry under ``key`` (re-indexed)."""
        await Registry._write(reg, "update_metadata", key, ("update", key, metadata))

    # -- reads (synchronous, no round trip) ------------------------------------------------------

    @staticmethod
    def lookup(reg: Any, key: Hashable) -> list[tuple[Pid, Any]]:
        """``[(pid, metadata)]`` registered under ``key`` (live processes only)."""
        t = _tables(reg)
        _check_hashable(key, "a registry key")
        return [(e.pid, e.meta) for e in _live(t.entries.get(key))]

    @staticmethod
    def whereis_name(reg: Any, key: Hashable) -> Pid | None:
        """The (first) live pid under ``key``, or None."""
        live = Registry.lookup(reg, key)
        return live[0][0] if live else None

    @staticmethod
    def select(reg: Any, /, **filters: Any) -> list[tuple[Hashable, Pid, Any]]:
        """``[(key, pid, metadata)]`` matching every filter on indexed fields, in register order.

        A filter value matches an entry whose field equals it or, for a list-valued field,
        contains it. Only indexed fields can be filtered (``InvalidArgument`` otherwise); with
        no filters, every entry is returned.
        """
        t = _tables(reg)
        for field, value in filters.items():
            if field not in t.indexed:
                raise InvalidArgument(
                    f"select on {field!r}: the registry indexes only {list(t.indexed)}; "
                    "declare it in index=[...] at start",
                    context={"field": field, "indexed": list(t.indexed)},
                )
            _check_hashable(value, f"the select value for {field!r}")
        found: Iterable[_Entry]
        if filters:  # intersect the index buckets, smallest first
            buckets = sorted((t.index[f].get(v, set()) for f, v in filters.items()), key=len)
            found = buckets[0].intersection(*buckets[1:])
        else:
            found = (e for by_key in t.entries.values() for e in by_key.values())
        live = [e for e in found if e.pid._proc is not None]
        live.sort(key=lambda e: e.seq)
        return [(e.key, e.pid, e.meta) for e in live]

    @staticmethod
    def count(reg: Any, /, **filters: Any) -> int:
        """How many live entries the registry holds (matching ``filters``, as for ``select``)."""
        if filters:
            return len(Registry.select(reg, **filters))
        t = _tables(reg)
        return sum(len(_live(by_key)) for by_key in t.entries.values())

    @staticmethod
    def keys(reg: Any, pid: Pid) -> list[Hashable]:
        """The keys ``pid`` is registered under, in register order (``[]`` once it exited)."""
        t = _tables(reg)
        if type(pid) is not Pid:
            raise InvalidArgument(f"Registry.keys takes a Pid, not {pid!r}")
        return list(t.by_pid.get(pid, ())) if pid._proc is not None else []

    @staticmethod
    def dispatch(reg: Any, key: Hashable, fn: Callable[[list[tuple[Pid, Any]]], Any]) -> bool:
        """Call ``fn(entries)`` with the ``[(pid, metadata)]`` under ``key``; False if none."""
        if not callable(fn):
            raise InvalidArgument(f"Registry.dispatch needs a callable, got {fn!r}")
        entries = Registry.lookup(reg, key)
        if not entries:
            return False
        fn(entries)
        return True

    # -- the server ---------------------------------------------------------------------------

    async def init(self, args: tuple[str, tuple[str, ...]]) -> None:
        self._t = _Tables(*args)

    async def handle_call(self, request: Any, caller: From, state: None) -> Any:
        try:
            return Reply(self._write_op(request, caller.pid), state)
        except (InvalidArgument, NotInProcess, AlreadyRegistered) as err:
            return Reply(Failed(err), state)

    def _write_op(self, request: Any, owner: Pid | None) -> Any:
        t = self._t
        op = request[0] if isinstance(request, tuple) and request else None
        arity = 2 if op == "unregister" else 3 if op in ("register", "update") else None
        if arity is None or len(request) != arity:
            raise InvalidArgument(f"registry: unknown request {request!r}")
        if owner is None or owner._proc is None:
            raise NotInProcess("Registry writes must be called by the owning (live) process")
        key = request[1]
        _check_hashable(key, "a registry key")
        if op == "unregister":
            if t.remove(key, owner):
                self._demonitor_if_unused(owner)
            return None
        meta = request[2]
        indexed = t.index_values(meta)  # validated before anything changes
        if op == "register":
            return self._register(owner, key, meta, indexed)
        entry = t.entries.get(key, {}).get(owner)
        if entry is None:
            raise InvalidArgument(
                f"{owner!r} is not registered under {key!r}", context={"key": key, "pid": owner}
            )
        t.drop_index(entry)
        entry.meta = meta
        entry.indexed = indexed
        t.add_index(entry)
        return None

    def _register(self, owner: Pid, key: Hashable, meta: Any, indexed: _Indexed) -> None:
        t = self._t
        by_key = t.entries.get(key)
        if by_key and t.mode == "unique":
            holder = next(iter(by_key))
            if holder._proc is None:  # exited; its Down is still queued behind this call
                t.remove_pid(holder)
                self._demonitor_if_unused(holder)
            else:
                raise AlreadyRegistered(
                    f"key {key!r} is already registered to {holder!r}",
                    context={"key": key, "pid": holder},
                )
        elif by_key and owner in by_key:
            raise AlreadyRegistered(
                f"{owner!r} is already registered under {key!r}",
                context={"key": key, "pid": owner},
            )
        t.add(key, owner, meta, indexed)
        if owner not in t.monitors:
            t.monitors[owner] = monitor(owner)

    def _demonitor_if_unused(self, pid: Pid) -> None:
        t = self._t
        if pid not in t.by_pid:
            ref = t.monitors.pop(pid, None)
            if ref is not None:
                demonitor(ref, flush=True)

    async def handle_info(self, msg: Any, state: None) -> Any:
        if type(msg) is Down:
            t = self._t
            if t.monitors.get(msg.pid) is msg.ref:
                del t.monitors[msg.pid]
                t.remove_pid(msg.pid)
            return state
        return await super().handle_info(msg, state)


def whereis_via(rt: Runtime, reg: Any, key: Hashable) -> Pid | None:
    """Resolve a ``("via", registry, key)`` name (used by the kernel's name resolution)."""
    try:
        t: _Tables | None = getattr(_server(rt, reg), "_t", None)
        hash(key)
    except (InvalidArgument, TypeError):
        return None
    if t is None:
        return None
    live = _live(t.entries.get(key))
    return live[0].pid if live else None


async def register_via(proc: Process, reg: Any, key: Hashable) -> None:
    """Register a starting process under a via name (runs inside that process)."""
    holder = whereis_via(proc.runtime, reg, key)
    if holder is None:
        try:
            await Registry.register(reg, key, None)
        except AlreadyRegistered as err:
            holder = err.context.get("pid")
        else:
            proc.via = (reg, key)
            return
    raise AlreadyStarted(
        f"('via', {reg!r}, {key!r}) is already registered to {holder!r}", pid=holder
    )
