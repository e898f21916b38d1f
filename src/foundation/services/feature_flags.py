"""FeatureFlags: boolean flags and percentage rollouts, durable, read without a round trip.

``define(name, enabled=False)`` makes a boolean flag, ``define(name, percentage=10)`` a rollout
(``enable``/``disable``/``set_percentage`` change a flag that exists, so a typo never creates
one). ``enabled(name)`` is strictly boolean: a boolean flag's value, and for a rollout ``True``
only at 100 % (any smaller rollout, 10 % or 99.9 %, reads as off: the seed returned the raw
percentage, a truthy value, so a 10 % rollout read as fully on). ``enabled_for(name, id)``
answers a rollout per id by a stable hash (SHA-256 of ``"<name>:<str(id)>"``, never Python's
per-process ``hash``), so one id always gets the same answer, on every machine and after every
restart, and raising the percentage only adds ids; for a boolean flag it is the flag's value.
Unknown flags raise ``UnknownFlag``. Flags are stored under ``flag/<name>`` in the state store
(``runtime.store``; without one, a private ``MemoryStore`` that lives as long as the service)
before a change is acknowledged, and every change emits ``("foundation", "feature_flags",
"changed")`` and, when a signal bus runs, the signal ``feature_flag.changed``. Reads are plain
functions served from the table the server publishes in the runtime.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from pydantic import BaseModel, Field

from foundation.errors import FoundationError, InvalidArgument, UnknownFlag
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Reply
from foundation.kernel.pid import Pid
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.persistence.memory import MemoryStore
from foundation.persistence.store import StateStore

__all__ = [
    "FEATURE_FLAGS",
    "FeatureFlags",
    "Flag",
]

FEATURE_FLAGS = "feature_flags"
"""The default registered name of the feature-flag service."""


class Flag(BaseModel):
    """A flag: on or off, or a rollout to a percentage of ids."""

    name: str
    enabled: bool = False
    percentage: float | None = Field(default=None, ge=0, le=100)


def _bucket(name: str, key: Any) -> float:
    digest = hashlib.sha256(f"{name}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


class FeatureFlags(GenServer):
    """The flag table; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: str = FEATURE_FLAGS, signal_bus: str = "signal_bus"
    ) -> Pid:
        """Start the service, loading the stored flags."""
        return await cls._start(signal_bus, name=name, timeout=30.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(cls, *, name: str = FEATURE_FLAGS, **kw: Any) -> Any:  # type: ignore[override]
        """A child spec for the service under ``name``."""
        from foundation.kernel.child_spec import ChildSpec

        async def start() -> Pid:
            return await cls.start_link(name=name, **kw)

        return ChildSpec(id=name, start=start)

    # -- reads (no round trip) -----------------------------------------------------------------

    @staticmethod
    def _flag(name: str, server: str) -> Flag:
        table: dict[str, Flag] | None = current_runtime().extensions.get(f"flags:{server}")
        if table is None:
            raise UnknownFlag(f"no feature-flag service {server!r} is running")
        flag = table.get(name)
        if flag is None:
            raise UnknownFlag(
                f"unknown feature flag {name!r}; define it first (known: {sorted(table)})",
                context={"flag": name},
            )
        return flag

    @staticmethod
    def enabled(name: str, *, server: str = FEATURE_FLAGS) -> bool:
        """Strictly boolean: the flag's value, or True for a rollout only at 100 %."""
        flag = FeatureFlags._flag(name, server)
        if flag.percentage is not None:
            return flag.percentage >= 100
        return flag.enabled

    @staticmethod
    def enabled_for(name: str, key: Any, *, server: str = FEATURE_FLAGS) -> bool:
        """Whether ``key`` is in the flag's rollout (stable per flag and key)."""
        flag = FeatureFlags._flag(name, server)
        if flag.percentage is None:
            return flag.enabled
        return _bucket(name, key) < flag.percentage

    @staticmethod
    def all(*, server: str = FEATURE_FLAGS) -> dict[str, Flag]:
        """Every defined flag."""
        table: dict[str, Flag] = current_runtime().extensions.get(f"flags:{server}", {})
        return dict(table)

    # -- changes (durable before they are acknowledged) ----------------------------------------

    @staticmethod
    async def define(
        name: str,
        enabled: bool = False,
        *,
        percentage: float | None = None,
        server: str = FEATURE_FLAGS,
    ) -> Flag:
        """Create or change a flag: on/off, or a rollout percentage (0-100)."""
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidArgument(f"invalid flag name {name!r}: a non-empty str without /")
        if not isinstance(enabled, bool):
            raise InvalidArgument(f"flag {name!r}: enabled must be a bool, not {enabled!r}")
        if enabled and percentage is not None:
            raise InvalidArgument(f"flag {name!r}: give enabled=True or a percentage, not both")
        if isinstance(percentage, bool):
            raise InvalidArgument(f"flag {name!r}: invalid percentage {percentage!r} (0-100)")
        try:
            flag = Flag(name=name, enabled=enabled, percentage=percentage)
        except ValueError as exc:
            raise InvalidArgument(f"flag {name!r}: invalid percentage {percentage!r}") from exc
        return unwrap(await call(server, ("set", flag)))  # type: ignore[no-any-return]

    @staticmethod
    async def enable(name: str, *, server: str = FEATURE_FLAGS) -> Flag:
        """Turn a defined flag fully on (``UnknownFlag`` if it is not defined: no typo creates
        a flag)."""
        FeatureFlags._flag(name, server)
        return await FeatureFlags.define(name, True, server=server)

    @staticmethod
    async def disable(name: str, *, server: str = FEATURE_FLAGS) -> Flag:
        """Turn a defined flag fully off (``UnknownFlag`` if it is not defined)."""
        FeatureFlags._flag(name, server)
        return await FeatureFlags.define(name, False, server=server)

    @staticmethod
    async def set_percentage(name: str, percentage: float, *, server: str = FEATURE_FLAGS) -> Flag:
        """Roll a defined flag out to ``percentage`` % of ids (``UnknownFlag`` if undefined)."""
        FeatureFlags._flag(name, server)
        return await FeatureFlags.define(name, percentage=percentage, server=server)

    @staticmethod
    async def remove(name: str, *, server: str = FEATURE_FLAGS) -> None:
        """Delete a flag (later reads raise ``UnknownFlag``)."""
        FeatureFlags._flag(name, server)
        unwrap(await call(server, ("remove", name)))

    # -- server --------------------------------------------------------------------------------

    async def init(self, signal_bus: str) -> dict[str, tuple[Flag, int]]:
        rt = current_runtime()
        self.signal_bus = signal_bus
        self.store: StateStore = rt.store if rt.store is not None else MemoryStore()
        self.table: dict[str, Flag] = {}
        versions: dict[str, tuple[Flag, int]] = {}
        for key in await self.store.list("flag/"):
            rec = await self.store.load(key)
            if rec is not None:
                flag = Flag.model_validate(rec.data)
                versions[flag.name] = (flag, rec.version)
                self.table[flag.name] = flag
        names = [n for n, p in rt.names.items() if p.pid == self.pid]
        for name in names:
            rt.extensions[f"flags:{name}"] = self.table
        return versions

    async def terminate(self, reason: Any, state: Any) -> None:
        rt = current_runtime()
        for key in [k for k, v in rt.extensions.items() if v is self.table]:
            del rt.extensions[key]

    async def handle_call(self, request: Any, caller: From, flags: Any) -> Any:
        if request[0] == "set":
            flag: Flag = request[1]
            old = flags.get(flag.name)
            try:
                version = await self.store.save(
                    f"flag/{flag.name}", flag.model_dump(mode="json"), old[1] if old else None
                )
            except FoundationError as err:  # not stored: nothing changed, the caller is told
                return Reply(Failed(err), flags)
            flags[flag.name] = (flag, version)
            self.table[flag.name] = flag
            await self._changed(flag.name, flag, old[0] if old else None)
            return Reply(flag, flags)
        if request[0] == "remove":
            old = flags.get(request[1])
            if old is not None:
                try:
                    await self.store.delete(f"flag/{request[1]}", old[1])
                except FoundationError as err:
                    return Reply(Failed(err), flags)
                del flags[request[1]]
                self.table.pop(request[1], None)
                await self._changed(request[1], None, old[0])
            return Reply(None, flags)
        return await super().handle_call(request, caller, flags)

    async def _changed(self, name: str, new: Flag | None, old: Flag | None) -> None:
        rt = current_runtime()
        data = {
            "flag": name,
            "old": old.model_dump() if old else None,
            "new": new.model_dump() if new else None,
        }
        if rt.event_handlers:
            rt.emit(("foundation", "feature_flags", "changed"), {}, data)
        if rt.whereis(self.signal_bus) is not None:
            from foundation.services.signal_bus import SignalBus

            with contextlib.suppress(FoundationError):  # the bus is only told, never awaited on
                await SignalBus.publish(
                    self.signal_bus, "feature_flag.changed", data, source="feature_flags"
                )
