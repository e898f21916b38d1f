"""PersistentServer: a GenServer whose state is durable before anyone hears of a change.

A subclass declares ``State`` (a pydantic model), ``schema_version`` and, for older stored
data, ``migrate(from_version, data)``; each instance has a ``key`` in the runtime's state store.
On start the server loads its record, migrates it, fills fields missing from it with the model's
defaults, validates, then runs ``on_after_load``; ``init(args)`` runs only for a key with no
record, and its state is saved before ``start`` returns. After any handler returns a changed
state, the state is saved **before** the call is answered (and before the next message is taken,
for casts and info), so acknowledged means durable. A failed save crashes the server (its
supervisor restarts it from the last durable state) and the caller gets the
``PersistenceError``, never a success. Stored data that no longer validates raises
``StateCorrupt`` and is never overwritten.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from foundation.errors import FoundationError, InvalidArgument, PersistenceError, StateCorrupt
from foundation.kernel.child_spec import ChildSpec, Restart, Shutdown
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, answer
from foundation.kernel.messages import Continue, NoReply, Reply, Stop
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.persistence.store import StateStore, Stored

__all__ = ["PersistentServer"]

_HANDLERS = ("handle_call", "handle_cast", "handle_info", "handle_continue")
_WRAPPED = "__foundation_persistent__"


class PersistentServer(GenServer):
    """Subclass with a ``State`` model; start with ``start(args, key=..., name=...)``."""

    State: ClassVar[type[BaseModel]]
    schema_version: ClassVar[int] = 1
    state_store: StateStore | None = None
    """The store to use; ``None`` (the default) takes the runtime's ``store``."""

    key: str
    version: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _HANDLERS:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, _WRAPPED, False):
                setattr(cls, name, _persisting(fn, with_caller=name == "handle_call"))
        fn = cls.__dict__.get("init")
        if fn is not None and not getattr(fn, _WRAPPED, False):
            cls.init = _loading(fn)  # type: ignore[method-assign]

    # -- hooks ---------------------------------------------------------------------------------

    def migrate(self, from_version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Turn data stored under an older ``schema_version`` into the current shape."""
        return data

    async def on_after_load(self, state: Any) -> Any:
        """Runs once the stored state is loaded and valid; returns the state to serve with."""
        return state

    async def init(self, args: Any) -> Any:
        """The state of a key with no stored record (default: the model's defaults)."""
        return self.State()

    # -- starting ------------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        args: Any = None,
        *,
        key: str | None = None,
        name: Any = None,
        timeout: float | None = 5.0,
        max_mailbox: int | None = None,
    ) -> Pid:
        """Start an unlinked server on ``key`` (default: ``name``); returns once loaded."""
        return await cls._start(
            args,
            name=name,
            timeout=timeout,
            max_mailbox=max_mailbox,
            link=False,
            setup=cls._setup(key, name),
        )

    @classmethod
    async def start_link(
        cls,
        args: Any = None,
        *,
        key: str | None = None,
        name: Any = None,
        timeout: float | None = 5.0,
        max_mailbox: int | None = None,
    ) -> Pid:
        """Start a server on ``key`` linked to the caller; returns once its state is loaded."""
        return await cls._start(
            args,
            name=name,
            timeout=timeout,
            max_mailbox=max_mailbox,
            link=True,
            setup=cls._setup(key, name),
        )

    @classmethod
    def child_spec(
        cls,
        args: Any = None,
        *,
        key: str | None = None,
        id: Any = None,
        restart: Restart = "permanent",
        shutdown: Shutdown = 5.0,
        name: Any = None,
        timeout: float | None = 5.0,
        max_mailbox: int | None = None,
    ) -> ChildSpec:
        """A child spec running ``start_link(args, key=..., name=...)``; ``id`` defaults to key."""
        setup = cls._setup(key, name)

        async def start() -> Pid:
            return await cls._start(
                args, name=name, timeout=timeout, max_mailbox=max_mailbox, link=True, setup=setup
            )

        return ChildSpec(
            id=id if id is not None else setup.key,
            start=start,
            restart=restart,
            shutdown=shutdown,
            type="worker",
        )

    @classmethod
    def _setup(cls, key: str | None, name: Any) -> _Setup:
        if not isinstance(getattr(cls, "State", None), type) or not issubclass(
            cls.State, BaseModel
        ):
            raise InvalidArgument(f"{cls.__name__} must declare State as a pydantic BaseModel")
        if key is None:
            key = name if isinstance(name, str) else None
        if not isinstance(key, str) or not key:
            raise InvalidArgument(
                f"{cls.__name__} needs a key (a non-empty str) for its stored state; got {key!r}"
            )
        return _Setup(key)

    # -- persistence ---------------------------------------------------------------------------

    def _store(self) -> StateStore:
        store = self.state_store if self.state_store is not None else current_runtime().store
        if store is None:
            raise PersistenceError(
                f"{type(self).__name__} {self.key!r} has no state store: "
                "give the runtime one (Runtime(store='sqlite:///state.db')) or set `state_store`",
                retryable=False,
            )
        return store

    async def _load(self) -> Any:
        """The validated stored state, or ``None`` when the key has no record."""
        stored = await self._store().load(self.key)
        if stored is None:
            return None
        data = self._upgrade(stored)
        try:
            state = self.State.model_validate(data)
        except PydanticValidationError as exc:
            fields = [".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()]
            raise StateCorrupt(
                f"stored state of {self.key!r} ({type(self).__name__}) no longer validates: "
                f"bad fields {fields}; the record is left as it is",
                context={"key": self.key, "fields": fields, "version": stored.version},
            ) from exc
        self.version = stored.version
        self._saved = state.model_dump_json()
        if stored.schema_version != self.schema_version or data != stored.data:
            self._saved = None
            await self._save(state)  # the migrated shape is the durable one from now on
        return await self.on_after_load(state)

    def _upgrade(self, stored: Stored) -> dict[str, Any]:
        if stored.schema_version > self.schema_version:
            raise StateCorrupt(
                f"stored state of {self.key!r} has schema version {stored.schema_version}, newer "
                f"than {type(self).__name__}'s {self.schema_version}; refusing to downgrade it",
                context={"key": self.key, "schema_version": stored.schema_version},
            )
        data = stored.data
        if stored.schema_version < self.schema_version:
            data = self.migrate(stored.schema_version, data)
            if not isinstance(data, dict):
                raise StateCorrupt(
                    f"{type(self).__name__}.migrate returned {type(data).__name__} for "
                    f"{self.key!r}, not a dict",
                    context={"key": self.key},
                )
        return data

    async def _save(self, state: Any) -> None:
        if not isinstance(state, self.State):
            raise PersistenceError(
                f"{type(self).__name__} {self.key!r}: a handler returned {type(state).__name__} "
                f"as state, not {self.State.__name__}; nothing was saved",
                retryable=False,
            )
        text = state.model_dump_json()  # one pass in pydantic-core; compared as text
        if text == self._saved:
            return
        save_json = self._save_json
        if save_json is None:  # the stores of this package take the JSON text as is
            store = self._store()
            save_json = getattr(store, "save_json", None) or _via_save(store)
            self._save_json = save_json
        try:
            self.version = await save_json(
                self.key, text, self.version, schema_version=self.schema_version
            )
        except FoundationError:
            raise
        except Exception as exc:
            raise PersistenceError(
                f"could not save the state of {self.key!r}: {exc!r}",
                context={"key": self.key},
            ) from exc
        self._saved = text

    _saved: str | None = None
    _save_json: Any = None


def _via_save(store: StateStore) -> Any:
    """``save_json`` for a store that only has ``save`` (it takes the data decoded)."""

    async def save_json(
        key: str, text: str, expected: int | None, *, schema_version: int = 1
    ) -> int:
        return await store.save(key, json.loads(text), expected, schema_version=schema_version)

    return save_json


class _Setup:
    """Sets the key on a new server instance before its process runs ``init``."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, server: PersistentServer) -> None:
        server.key = self.key


def _state_of(result: Any) -> Any:
    t = type(result)
    if t is Reply or t is NoReply or t is Stop or t is Continue:
        return result.state
    return result


def _persisting(fn: Callable[..., Awaitable[Any]], *, with_caller: bool) -> Any:
    """Wrap a handler so that the state it returns is durable before its result is used."""

    @functools.wraps(fn)
    async def handler(self: PersistentServer, *args: Any) -> Any:
        held: list[tuple[From, Any]] = []
        outer = self._held_replies  # a subclass handler calling its base's: both are wrapped
        self._held_replies = held
        try:
            result = await fn(self, *args)
        finally:
            self._held_replies = outer
        state = _state_of(result)
        if state is not None or type(result) is not Stop:
            try:
                await self._save(state)
            except PersistenceError as err:
                callers = [c for c, _ in held]
                if with_caller:
                    callers.append(args[1])
                for caller in callers:
                    if not caller.fut.done():
                        caller.fut.set_exception(err)
                raise
        for caller, value in held:
            answer(caller, value)
        return result

    setattr(handler, _WRAPPED, True)
    return handler


def _loading(fn: Callable[..., Awaitable[Any]]) -> Any:
    """Wrap ``init``: serve the stored state when there is one, else save ``init``'s first."""

    @functools.wraps(fn)
    async def init(self: PersistentServer, args: Any) -> Any:
        loaded = await self._load()
        if loaded is not None:
            if type(loaded) is not Stop:
                await self._save(_state_of(loaded))  # what on_after_load changed is kept
            return loaded
        result = await fn(self, args)
        if type(result) is not Stop:
            await self._save(_state_of(result))
        return result

    setattr(init, _WRAPPED, True)
    return init


PersistentServer.init = _loading(PersistentServer.__dict__["init"])  # type: ignore[method-assign]
