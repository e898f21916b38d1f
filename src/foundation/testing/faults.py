"""FaultyStore: a StateStore wrapper that fails chosen operations, as a sick database would.

``FaultyStore(inner, fail={"save": {3, 7}, "load": {1}}, error="busy")`` behaves as ``inner``
except that the 3rd and 7th save and the 1st load (counted per operation from 1, over the
store's whole life) raise ``PersistenceError`` with the message SQLite gives for the condition:

- ``"busy"``: SQLITE_BUSY, "database is locked";
- ``"full"``: SQLITE_FULL, "database or disk is full";
- ``"ioerr"``: SQLITE_IOERR, "disk I/O error".

Each is ``retryable=True``, as from ``SQLiteStore`` (a failed commit is a retryable
``PersistenceError`` whatever SQLite's reason). A number may map to its own condition:
``fail={"save": {2: "full", 5: "ioerr"}}``. The operations are ``save``, ``load``, ``delete``
and ``list``; every way of saving (``save``, ``save_json``, ``save_json_then``) counts as a
``save``, and a save is its commit, so "the n-th commit fails" is ``fail={"save": {n}}``.

**A failed save never reaches the inner store**: the change was not made, so what ``inner``
holds is exactly the acknowledged saves, and a test reads the truth from ``inner`` directly.

``fail_after_write={n}`` makes the n-th save land in ``inner`` and *then* answer with the
error: the commit happened, the answer was lost (a connection dropped after COMMIT). The caller
must see an error, never a success it cannot trust; for a persistent server the correct
observable behaviour is: the caller gets the ``PersistenceError``, the server crashes, and its
supervisor restarts it from the store, which holds the new state; the next call goes on from
it. (A caller that retries such a call applies it twice: idempotence is the caller's affair.)

**Save paths.** ``FaultyStore`` offers the same fast paths as its inner store, so a persistent
server takes the path it takes in production: ``save_json`` always (encoded text, falling back
to the inner ``save``), and ``save_json_then`` (answer by callback, the SQLite and PostgreSQL
path) when ``inner`` has it; an injected failure is then answered in a later loop pass, as a
failed commit is. ``save_json_nowait`` is never offered: servers use ``save_json`` instead.
Faults are injected in every path.

``calls`` and ``failures`` count the operations made and failed (``store.calls["save"]``);
``fail`` (operation to ``{n: condition}``, e.g. ``store.fail["load"] = {2: "busy"}``) and
``fail_after_write`` (a set) may be changed between steps of a test.
"""

from __future__ import annotations

import asyncio
import json
import types
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from foundation.errors import InvalidArgument, PersistenceError

if TYPE_CHECKING:  # importing foundation.persistence would load every backend
    from foundation.persistence.store import StateStore, Stored

__all__ = ["FAULTS", "Fault", "FaultyStore"]

Fault = Literal["busy", "full", "ioerr"]

FAULTS: Mapping[str, tuple[str, str]] = types.MappingProxyType(
    {
        "busy": ("SQLITE_BUSY", "database is locked"),
        "full": ("SQLITE_FULL", "database or disk is full"),
        "ioerr": ("SQLITE_IOERR", "disk I/O error"),
    }
)
"""Each simulated condition: SQLite's result code and its message."""

_OPERATIONS = ("save", "load", "delete", "list")
_Then = Callable[[int | None, BaseException | None], None]


class FaultyStore:
    """A StateStore failing the n-th call of chosen operations; see the module docstring."""

    def __new__(cls, inner: StateStore, *args: Any, **kwargs: Any) -> FaultyStore:
        # Offer the inner store's callback path when it has one (see "Save paths" above).
        if cls is FaultyStore and callable(getattr(inner, "save_json_then", None)):
            return super().__new__(_FaultyCallbackStore)
        return super().__new__(cls)

    def __init__(
        self,
        inner: StateStore,
        fail: Mapping[str, Iterable[int] | Mapping[int, Fault]] | None = None,
        *,
        error: Fault = "busy",
        fail_after_write: Iterable[int] = (),
    ) -> None:
        if error not in FAULTS:
            raise InvalidArgument(f"unknown fault {error!r}: one of {sorted(FAULTS)}")
        self.inner = inner
        self.error: Fault = error
        self.fail: dict[str, dict[int, Fault]] = {}
        for op, which in (fail or {}).items():
            if op not in _OPERATIONS:
                raise InvalidArgument(f"unknown operation {op!r}: one of {list(_OPERATIONS)}")
            if isinstance(which, Mapping):
                for kind in which.values():
                    if kind not in FAULTS:
                        raise InvalidArgument(f"unknown fault {kind!r}: one of {sorted(FAULTS)}")
                self.fail[op] = dict(which)
            else:
                self.fail[op] = dict.fromkeys(which, error)
        self.fail_after_write: set[int] = set(fail_after_write)
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<FaultyStore over {self.inner!r}>"

    # -- injection -----------------------------------------------------------------------------

    def _fault(self, op: str, key: str | None) -> PersistenceError | None:
        """Count one ``op``; the error to raise *instead of* it, or ``None``."""
        self.calls[op] += 1
        n = self.calls[op]
        kind = self.fail.get(op, {}).get(n)
        if kind is None:
            return None
        self.failures[op] += 1
        return self._error(op, n, kind, key, landed=False)

    def _after_write(self, n: int, key: str) -> PersistenceError | None:
        """The error to answer save #n with now that it landed (``fail_after_write``), or
        ``None``."""
        if n not in self.fail_after_write:
            return None
        self.failures["save"] += 1
        return self._error("save", n, self.error, key, landed=True)

    def _error(
        self, op: str, n: int, kind: Fault, key: str | None, *, landed: bool
    ) -> PersistenceError:
        code, message = FAULTS[kind]
        what = f"{op} #{n}" + (f" of {key!r}" if key is not None else "")
        outcome = "the write was made, its answer lost" if landed else "nothing was changed"
        return PersistenceError(
            f"{self!r}: {what} failed: {code}: {message} (injected; {outcome})",
            context={"fault": kind, "code": code, "operation": op, "n": n, "landed": landed},
            retryable=True,
        )

    # -- the StateStore protocol ---------------------------------------------------------------

    async def load(self, key: str) -> Stored | None:
        err = self._fault("load", key)
        if err is not None:
            raise err
        return await self.inner.load(key)

    async def save(
        self,
        key: str,
        data: dict[str, Any],
        expected_version: int | None,
        *,
        schema_version: int = 1,
    ) -> int:
        err = self._fault("save", key)
        if err is not None:
            raise err
        n = self.calls["save"]
        version = await self.inner.save(key, data, expected_version, schema_version=schema_version)
        err = self._after_write(n, key)
        if err is not None:
            raise err
        return version

    async def save_json(
        self, key: str, text: str, expected_version: int | None, *, schema_version: int = 1
    ) -> int:
        """``save`` of encoded data (through the inner ``save_json``, else its ``save``)."""
        err = self._fault("save", key)
        if err is not None:
            raise err
        n = self.calls["save"]
        inner_json = getattr(self.inner, "save_json", None)
        if inner_json is not None:
            version: int = await inner_json(
                key, text, expected_version, schema_version=schema_version
            )
        else:
            version = await self.inner.save(
                key, json.loads(text), expected_version, schema_version=schema_version
            )
        err = self._after_write(n, key)
        if err is not None:
            raise err
        return version

    async def delete(self, key: str, expected_version: int | None) -> None:
        err = self._fault("delete", key)
        if err is not None:
            raise err
        await self.inner.delete(key, expected_version)

    async def list(self, prefix: str = "") -> list[str]:
        err = self._fault("list", None)
        if err is not None:
            raise err
        return await self.inner.list(prefix)

    async def close(self) -> None:
        await self.inner.close()

    def attach(self, runtime: Any) -> None:
        """Hand the runtime to the inner store, if it takes one (kernel-owned threads)."""
        attach = getattr(self.inner, "attach", None)
        if attach is not None:
            attach(runtime)


class _FaultyCallbackStore(FaultyStore):
    """A FaultyStore over a store with ``save_json_then``: offers that path too."""

    def save_json_then(
        self, key: str, text: str, expected_version: int | None, schema_version: int, then: _Then
    ) -> None:
        """``save_json`` answered by ``then(version, error)``; faults answer in a later pass."""
        err = self._fault("save", key)
        if err is not None:
            asyncio.get_running_loop().call_soon(then, None, err)
            return
        n = self.calls["save"]

        def answered(version: int | None, error: BaseException | None) -> None:
            lost = self._after_write(n, key) if error is None else None
            if lost is not None:
                then(None, lost)
                return
            then(version, error)

        self.inner.save_json_then(  # type: ignore[attr-defined]
            key, text, expected_version, schema_version, answered
        )
