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

from collections.abc import Callable, Hashable, Iterable
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
from foundation.kernel.pid import Pid
from foundation.kernel.process import From, Process
from foundation.kernel.registry_tables import Indexed, RegistryTables, check_hashable
from foundation.kernel.supervision import Failed, unwrap

if TYPE_CHECKING:
    from foundation.kernel.child_spec import ChildSpec
    from foundation.kernel.runtime import Runtime

__all__ = ["Registry", "register_via", "whereis_via"]

Keys = Literal["unique", "duplicate"]


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


def _tables(reg: Any) -> RegistryTables:
    t: RegistryTables | None = getattr(_server(current_runtime(), reg), "_t", None)
    if t is None:  # not running, or still starting
        raise NoProcess(f"registry {reg!r} is not running", context={"registry": reg})
    return t


class Registry(GenServer):
    """A key/process table with metadata and indexes; see the module docstring."""

    _t: RegistryTables

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
        check_hashable(key, "a registry key")
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
        check_hashable(key, "a registry key")
        return [(e.pid, e.meta) for e in t.lookup(key)]

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
        return [(e.key, e.pid, e.meta) for e in _tables(reg).select(filters)]

    @staticmethod
    def count(reg: Any, /, **filters: Any) -> int:
        """How many live entries the registry holds (matching ``filters``, as for ``select``)."""
        if filters:
            return len(Registry.select(reg, **filters))
        return _tables(reg).count()

    @staticmethod
    def keys(reg: Any, pid: Pid) -> list[Hashable]:
        """The keys ``pid`` is registered under, in register order (``[]`` once it exited)."""
        t = _tables(reg)
        if type(pid) is not Pid:
            raise InvalidArgument(f"Registry.keys takes a Pid, not {pid!r}")
        return t.keys(pid)

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
        self._t = RegistryTables(*args)

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
        check_hashable(key, "a registry key")
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
        t.update(entry, meta, indexed)
        return None

    def _register(self, owner: Pid, key: Hashable, meta: Any, indexed: Indexed) -> None:
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
        t: RegistryTables | None = getattr(_server(rt, reg), "_t", None)
        hash(key)
    except (InvalidArgument, TypeError):
        return None
    if t is None:
        return None
    live = t.lookup(key)
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
