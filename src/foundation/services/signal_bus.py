"""SignalBus: publish/subscribe of CloudEvents-style signals by topic pattern.

A ``Signal`` is an envelope (``id``, ``source``, ``type``, ``subject``, ``time``, ``data``). A
subscriber (any process) subscribes a pattern: a dotted type where ``*`` matches exactly one
segment and ``**`` one or more (``task.*`` matches ``task.done``; ``task.**`` also matches
``task.step.done``). ``publish`` is synchronous: it returns how many subscribers the signal was
put in front of, each of them once however many of its patterns match. Signals arrive as
ordinary messages (``handle_info(signal, state)``), in publish order per publisher.

The bus monitors each subscriber once, however many patterns it has, and forgets all of them
when it dies or unsubscribes the last (no monitor is leaked). A subscriber whose mailbox holds
``max_pending`` messages or more is overloaded: the signal goes to the dead-letter sink instead,
as does one for a subscriber found dead; nothing is dropped silently. The bus is a process of
its own and never built on telemetry.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from foundation.errors import FoundationError, InvalidArgument, NotInProcess
from foundation.kernel.api import demonitor, is_alive, message_queue_len, monitor, send
from foundation.kernel.context import current_process
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap

__all__ = [
    "DeadLetterSink",
    "Signal",
    "SignalBus",
    "SignalBusStats",
    "compile_pattern",
]

DeadLetterSink = Callable[[Any, Any, str, dict[str, Any]], Awaitable[None]]
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")  # the whole segment: used with fullmatch


class Signal(BaseModel):
    """A CloudEvents-style envelope; ``type`` is dotted (``task.completed``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    source: str = "foundation"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    data: Any = None
    specversion: str = "1.0"

    @field_validator("type")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not value or not all(_SEGMENT.fullmatch(seg) for seg in value.split(".")):
            raise ValueError(f"signal type must be dotted words (a.b.c), got {value!r}")
        return value


def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """The regex of a wildcard pattern, None for an exact type; ``InvalidArgument`` if malformed."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidArgument(f"invalid signal pattern: {pattern!r} (a dotted str)")
    segments = pattern.split(".")
    if not any(seg in ("*", "**") for seg in segments):
        if not all(_SEGMENT.fullmatch(seg) for seg in segments):
            raise InvalidArgument(f"invalid signal pattern: {pattern!r}")
        return None
    parts = []
    for seg in segments:
        if seg == "*":
            parts.append(r"[^.]+")
        elif seg == "**":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        elif _SEGMENT.fullmatch(seg):
            parts.append(re.escape(seg))
        else:
            raise InvalidArgument(f"invalid signal pattern: {pattern!r} (bad segment {seg!r})")
    return re.compile(r"\.".join(parts) + r"\Z")


@dataclass(frozen=True, slots=True)
class SignalBusStats:
    """Counters of one bus, as ``SignalBus.stats`` reports them."""

    subscribers: int
    subscriptions: int
    published: int
    delivered: int
    dead_lettered: int


class _Sub:
    __slots__ = ("id", "pattern", "pid", "regex")

    def __init__(self, id: str, pattern: str, pid: Pid, regex: re.Pattern[str] | None) -> None:
        self.id = id
        self.pattern = pattern
        self.pid = pid
        self.regex = regex


class _State:
    def __init__(self, max_pending: int, dead_letters: DeadLetterSink | None) -> None:
        self.max_pending = max_pending
        self.dead_letters = dead_letters
        self.subs: dict[str, _Sub] = {}
        self.exact: dict[str, set[str]] = {}
        self.wild: dict[str, _Sub] = {}
        self.by_pid: dict[Pid, set[str]] = {}
        self.monitors: dict[Pid, Ref] = {}
        self.cache: dict[str, list[Pid]] = {}
        self.published = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.undelivered: list[tuple[Any, Signal, str]] = []

    def targets(self, type_: str) -> list[Pid]:
        cached = self.cache.get(type_)
        if cached is not None:
            return cached
        pids: dict[Pid, None] = {}
        for sid in sorted(self.exact.get(type_, ())):
            pids[self.subs[sid].pid] = None
        for sub in self.wild.values():
            if sub.regex is not None and sub.regex.match(type_):
                pids[sub.pid] = None
        result = list(pids)
        self.cache[type_] = result
        return result

    def remove(self, sid: str) -> Pid | None:
        sub = self.subs.pop(sid, None)
        if sub is None:
            return None
        self.cache.clear()
        if sub.regex is None:
            bucket = self.exact.get(sub.pattern)
            if bucket is not None:
                bucket.discard(sid)
                if not bucket:
                    del self.exact[sub.pattern]
        else:
            self.wild.pop(sid, None)
        sids = self.by_pid.get(sub.pid)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.by_pid[sub.pid]
        return sub.pid


class SignalBus(GenServer):
    """A topic-pattern publish/subscribe process; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: Any = "signal_bus",
        max_pending: int = 10_000,
        dead_letters: DeadLetterSink | None = None,
    ) -> Pid:
        """Start a bus linked to the caller (named ``signal_bus`` by default)."""
        return await cls._start(
            cls._check(max_pending, dead_letters),
            name=name,
            timeout=5.0,
            max_mailbox=None,
            link=True,
        )

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        *,
        name: Any = "signal_bus",
        max_pending: int = 10_000,
        dead_letters: DeadLetterSink | None = None,
        id: Any = None,
    ) -> Any:
        """A child spec for a supervisor."""
        from foundation.kernel.child_spec import ChildSpec

        args = cls._check(max_pending, dead_letters)

        async def start() -> Pid:
            return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

        return ChildSpec(id=id or (name if isinstance(name, str) else "SignalBus"), start=start)

    @staticmethod
    def _check(max_pending: Any, dead_letters: Any) -> tuple[int, DeadLetterSink | None]:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise InvalidArgument(f"invalid max_pending: {max_pending!r} (an int >= 1)")
        if dead_letters is not None and not callable(dead_letters):
            raise InvalidArgument(f"invalid dead_letters: {dead_letters!r} (an async callable)")
        return max_pending, dead_letters

    # -- API ------------------------------------------------------------------------------------

    @staticmethod
    async def subscribe(bus: Any, pattern: str, *, subscriber: Pid | None = None) -> str:
        """Subscribe ``subscriber`` (default: the calling process) to ``pattern``; its id."""
        if subscriber is None:
            me = current_process()
            if me is None:
                raise NotInProcess(
                    "subscribe needs a subscriber: call it from a process or pass one"
                )
            subscriber = me.pid
        compile_pattern(pattern)
        return unwrap(await call(bus, ("subscribe", pattern, subscriber)))  # type: ignore[no-any-return]

    @staticmethod
    async def unsubscribe(bus: Any, subscription: str) -> bool:
        """Cancel a subscription; False if it was not active."""
        return unwrap(await call(bus, ("unsubscribe", subscription)))  # type: ignore[no-any-return]

    @staticmethod
    async def publish(bus: Any, signal: Signal | str, data: Any = None, **fields: Any) -> int:
        """Publish a signal (or build one from a type, data and fields); subscribers reached."""
        if not isinstance(signal, Signal):
            if "type" in fields:
                raise InvalidArgument(
                    f"publish({signal!r}, ...): the type is the second argument, not a field"
                )
            try:
                signal = Signal(type=signal, data=data, **fields)
            except ValidationError as err:
                raise InvalidArgument(f"invalid signal: {err}") from None
        return unwrap(await call(bus, ("publish", signal)))  # type: ignore[no-any-return]

    @staticmethod
    async def subscriptions(bus: Any, subscriber: Pid | None = None) -> list[tuple[str, str, Pid]]:
        """``[(subscription id, pattern, pid)]``, optionally for one subscriber."""
        return unwrap(await call(bus, ("subscriptions", subscriber)))  # type: ignore[no-any-return]

    @staticmethod
    async def stats(bus: Any) -> SignalBusStats:
        """Subscribers, subscriptions and delivery counters."""
        return unwrap(await call(bus, ("stats",)))  # type: ignore[no-any-return]

    # -- server -----------------------------------------------------------------------------------

    async def init(self, args: tuple[int, DeadLetterSink | None]) -> _State:
        return _State(*args)

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        op = request[0] if isinstance(request, tuple) and request else None
        if op == "publish":
            return Reply(await self._publish(state, request[1]), state)
        if op == "subscribe":
            return Reply(self._subscribe(state, request[1], request[2]), state)
        if op == "unsubscribe":
            pid = state.remove(request[1])
            if pid is not None:
                self._maybe_demonitor(state, pid)
            return Reply(pid is not None, state)
        if op == "subscriptions":
            who = request[1]
            rows = [(s.id, s.pattern, s.pid) for s in state.subs.values() if who in (None, s.pid)]
            return Reply(rows, state)
        if op == "stats":
            stats = SignalBusStats(
                subscribers=len(state.by_pid),
                subscriptions=len(state.subs),
                published=state.published,
                delivered=state.delivered,
                dead_lettered=state.dead_lettered,
            )
            return Reply(stats, state)
        return Reply(Failed(InvalidArgument(f"signal bus: unknown request {request!r}")), state)

    def _subscribe(self, state: _State, pattern: str, pid: Any) -> Any:
        if type(pid) is not Pid:
            return Failed(InvalidArgument(f"subscriber must be a Pid, not {pid!r}"))
        try:
            regex = compile_pattern(pattern)
        except InvalidArgument as err:
            return Failed(err)
        if not is_alive(pid):
            return Failed(InvalidArgument(f"subscriber {pid!r} is not alive"))
        sid = uuid.uuid4().hex
        state.subs[sid] = _Sub(sid, pattern, pid, regex)
        if regex is None:
            state.exact.setdefault(pattern, set()).add(sid)
        else:
            state.wild[sid] = state.subs[sid]
        state.by_pid.setdefault(pid, set()).add(sid)
        if pid not in state.monitors:
            state.monitors[pid] = monitor(pid)
        state.cache.clear()
        return sid

    def _maybe_demonitor(self, state: _State, pid: Pid) -> None:
        if pid not in state.by_pid:
            ref = state.monitors.pop(pid, None)
            if ref is not None:
                demonitor(ref, flush=True)

    async def _publish(self, state: _State, signal: Any) -> Any:
        if not isinstance(signal, Signal):
            return Failed(InvalidArgument(f"publish takes a Signal, not {signal!r}"))
        state.published += 1
        delivered = 0
        for pid in state.targets(signal.type):
            try:
                if message_queue_len(pid) >= state.max_pending:
                    await self._dead_letter(state, pid, signal, "subscriber_overloaded")
                    continue
                send(pid, signal)
            except FoundationError as err:  # dead (noproc) or a full bounded mailbox
                await self._dead_letter(state, pid, signal, err.code)
                continue
            delivered += 1
        state.delivered += delivered
        return delivered

    async def _dead_letter(self, state: _State, pid: Pid, signal: Signal, reason: str) -> None:
        state.dead_lettered += 1
        if state.dead_letters is None:
            state.undelivered.append((pid, signal, reason))
            return
        await state.dead_letters(pid, signal, reason, {"bus": self.pid})

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is Down:
            if state.monitors.get(msg.pid) is msg.ref:
                del state.monitors[msg.pid]
                for sid in list(state.by_pid.get(msg.pid, ())):
                    state.remove(sid)
            return state
        return await super().handle_info(msg, state)
