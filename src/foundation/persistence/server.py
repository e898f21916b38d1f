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
``StateCorrupt`` and is never overwritten. A changed state whose JSON would not load back equal
to it (a tuple, set, bytes, NaN, a field of the wrong type) is refused the same way, before it
is saved (``verify_saves``): what a restart serves is exactly what was acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, ClassVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticSerializationError

from foundation.errors import FoundationError, InvalidArgument, PersistenceError, StateCorrupt
from foundation.kernel.child_spec import ChildSpec, Restart, Shutdown
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, answer
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.persistence.codec import loads_back_unlike, state_json
from foundation.persistence.handlers import (
    HANDLERS,
    WRAPPED,
    loading,
    not_saved,
    persisting,
)
from foundation.persistence.store import StateStore, Stored

__all__ = ["PersistentServer"]


class PersistentServer(GenServer):
    """Subclass with a ``State`` model; start with ``start(args, key=..., name=...)``."""

    State: ClassVar[type[BaseModel]]
    schema_version: ClassVar[int] = 1
    state_store: StateStore | None = None
    """The store to use; ``None`` (the default) takes the runtime's ``store``."""

    verify_saves: ClassVar[bool] = True
    """Check that a changed state loads back from its JSON equal to itself before saving it
    (JSON has no tuple, set, bytes or NaN, and ``model_copy(update=...)`` validates nothing):
    what a restart serves is then exactly what was acknowledged. It costs one validation per
    changed save (about 2 us); ``False`` skips it, still refusing a field of the wrong type."""

    key: str
    version: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in HANDLERS:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, WRAPPED, False):
                setattr(cls, name, persisting(fn, with_caller=name == "handle_call"))
        fn = cls.__dict__.get("init")
        if fn is not None and not getattr(fn, WRAPPED, False):
            cls.init = loading(fn)  # type: ignore[method-assign]

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
        self._saved = self._encode(state)
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
        """Make ``state`` durable (if it changed since the last save)."""
        pending = self._save_soon(state)
        if pending is not None:
            await self._saved_as(pending)

    def _encode(self, state: Any) -> str:
        """The state as JSON text; a state that would not load back as it is (not the ``State``
        model, a field of the wrong type, a value JSON cannot hold) is a ``PersistenceError``:
        never saved, so never acknowledged and never a record that no longer loads."""
        if not isinstance(state, self.State):
            raise PersistenceError(
                f"{type(self).__name__} {self.key!r}: a handler returned {type(state).__name__} "
                f"as state, not {self.State.__name__}; nothing was saved",
                retryable=False,
            )
        try:
            return state_json(state, strict=not self.verify_saves)
        except (PydanticSerializationError, RecursionError) as exc:
            raise self._unsaved(f"it cannot be saved as it is ({exc})") from exc

    def _to_save(self, state: Any) -> str | None:
        """The JSON text to save for ``state``, checked (``verify_saves``); ``None`` when it is
        the text saved last (nothing to save)."""
        text = self._encode(state)
        if text == self._saved:
            return None
        if self.verify_saves:
            why = loads_back_unlike(self.State, state, text)
            if why is not None:
                raise self._unsaved(why)
        return text

    def _unsaved(self, why: str) -> PersistenceError:
        return PersistenceError(
            f"{type(self).__name__} {self.key!r}: the state was not saved: {why}",
            context={"key": self.key},
            retryable=False,
        )

    def _save_behind(
        self, state: Any, held: list[tuple[From, Any]], caller: From | None, value: Any
    ) -> bool:
        """Hand ``state`` to the store and return at once, holding the mailbox, ``caller`` and
        ``held`` replies until the store says it is durable; ``False`` if it is unchanged."""
        text = self._to_save(state)
        if text is None:
            return False
        hold = self.hold_mailbox()
        self._behind = (hold, text, held, caller, value)
        try:
            self._then(self.key, text, self.version, self.schema_version, self._saved_behind)
        except BaseException:
            self.release_mailbox(hold)
            raise
        return True

    def _saved_behind(self, version: int | None, error: BaseException | None) -> None:
        """The store's answer to ``_save_behind``: reply, or fail the callers and crash."""
        hold, text, held, caller, value = self._behind
        self._behind = None
        if error is None:
            assert version is not None
            self.version = version
            self._saved = text
            for c, v in held:
                answer(c, v)
            if caller is not None:
                answer(caller, value)
            self.release_mailbox(hold)
            return
        if not isinstance(error, FoundationError):
            error = not_saved(self, error)  # type: ignore[arg-type]
        for c in [c for c, _ in held] + ([caller] if caller is not None else []):
            if not c.fut.done():
                c.fut.set_exception(error)
        self.release_mailbox(hold, error)

    def _save_soon(self, state: Any) -> Awaitable[int] | None:
        """Hand ``state`` to the store; what to await until it is durable, or ``None`` when it
        is what was saved last. A plain function, so the handler awaits the store's own future
        (one coroutine frame less to suspend and resume on every save)."""
        text = self._to_save(state)
        if text is None:
            return None
        save = self._save_json or self._bind_save()
        self._saving = text
        return save(self.key, text, self.version, self.schema_version)  # type: ignore[no-any-return]

    def _bind_save(self) -> Any:
        """The store's fastest way to take JSON text: a future (``save_json_nowait``), else
        ``save_json``, else ``save`` of the decoded data."""
        store = self._store()
        self._then = getattr(store, "save_json_then", None)
        save = getattr(store, "save_json_nowait", None)
        if save is None:
            save = _via_save_json(getattr(store, "save_json", None)) or _via_save(store)
        self._save_json = save
        return save

    async def _saved_as(self, pending: Awaitable[int]) -> None:
        self._done_saving(await _durable(self, pending))

    def _done_saving(self, version: int) -> None:
        self.version = version
        self._saved = self._saving

    _saved: str | None = None
    _saving: str | None = None
    _save_json: Any = None
    _then: Any = None  # the store's ``save_json_then``, once bound
    _behind: Any = None  # what ``_saved_behind`` answers: (hold, text, held, caller, value)


async def _durable(server: PersistentServer, pending: Awaitable[int]) -> int:
    """Await a save; what is not already a ``FoundationError`` becomes a ``PersistenceError``."""
    try:
        return await pending
    except FoundationError:
        raise
    except Exception as exc:
        raise not_saved(server, exc) from exc


def _via_save_json(save_json: Any) -> Any:
    """Positional arguments for a store's ``save_json`` (``None`` if it has none)."""
    if save_json is None:
        return None

    def save(key: str, text: str, expected: int | None, schema_version: int) -> Any:
        return save_json(key, text, expected, schema_version=schema_version)

    return save


def _via_save(store: StateStore) -> Any:
    """``save_json`` for a store that only has ``save`` (it takes the data decoded)."""

    async def save_json(key: str, text: str, expected: int | None, schema_version: int) -> int:
        return await store.save(key, json.loads(text), expected, schema_version=schema_version)

    return save_json


class _Setup:
    """Sets the key on a new server instance before its process runs ``init``."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, server: PersistentServer) -> None:
        server.key = self.key


PersistentServer.init = loading(PersistentServer.__dict__["init"])  # type: ignore[method-assign]
