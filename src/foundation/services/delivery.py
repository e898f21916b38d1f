"""Delivery: messages to a receiver behind its circuit breaker, buffered while it is open.

``await Delivery.send(receiver, message)`` (a pid or a registered name) delivers by a call to
the receiver, whose reply is the acknowledgement, through the circuit ``deliver:<receiver>``,
from the sender's own process. While that circuit is not closed, or messages for the receiver
are already waiting, the message is buffered instead (FIFO, at most ``max_buffer``, default 100,
per receiver). A drainer process owned by the Delivery server delivers each buffer in order,
oldest first, whenever the circuit lets it: after a successful half-open trial, a manual reset,
a restart of the breaker: whichever path closes it (the seed lost the buffer when a trial closed
the circuit: Bug #2). A message leaves the buffer only once delivered. A delivery that fails
stays at the front and is tried again after ``retry_delay`` (the circuit counts the failure)
until it has failed ``max_attempts`` times, then goes to the dead letters; overflow sends the
oldest message there; the receiver's death sends its whole buffer there, and so does an orderly
stop of the service. Nothing is dropped silently. The buffers outlive a crash of the Delivery
server (kept in the runtime under its name; the successor takes them over).

Order: one sender's messages to one receiver arrive in the order sent; buffered messages are
delivered in the order the service accepted them. Delivery is exactly once, except that a call
that timed out may still have reached the receiver, and a drainer killed mid-call (a crash of
the service) leaves its message to be delivered again: at least once in those two cases.

Dead letters go to ``dead_letters``, an async callable ``(recipient, message, reason,
metadata)`` (``DeadLetterQueue.put``); without one, or if it fails (logged), they are kept in
memory (``Delivery.dead_letters``).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import CircuitOpen, FoundationError, InvalidArgument, ReceiveTimeout
from foundation.kernel.api import current_pid, demonitor, monitor, receive, send, spawn_link
from foundation.kernel.api import exit as exit_signal
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Down, Exit, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import unwrap
from foundation.services.circuit_breaker import BREAKER, BreakerConfig, CircuitBreaker
from foundation.services.signal_bus import DeadLetterSink

__all__ = [
    "DELIVERY",
    "Delivery",
]

DELIVERY = "delivery"
"""The default registered name of the delivery service."""

log = logging.getLogger("foundation.services.delivery")
_WAKE = "delivery:wake"
_NOT_TRIED = "circuit_open"  # a drainer's verdict: refused by the circuit, so not attempted


@dataclass
class _Buffer:
    items: deque[tuple[int, Any, int]] = field(default_factory=deque)  # (seq, message, fails)
    ref: Ref | None = None  # the monitor on a named receiver's process
    drainer: Pid | None = None
    inflight: int | None = None  # the seq its drainer is delivering now


@dataclass
class _Kept:
    """What outlives a crash of the server, in the runtime under its name."""

    buffers: dict[Any, _Buffer] = field(default_factory=dict)
    dead: list[tuple[Any, Any, str]] = field(default_factory=list)
    seq: int = 0
    # (receiver, seq) -> (message, drainer): in flight when its receiver died; the drainer's
    # verdict decides (delivered: done; failed or drainer gone: dead letter)
    orphans: dict[tuple[Any, int], tuple[Any, Pid | None]] = field(default_factory=dict)


class Delivery(GenServer):
    """Buffered delivery behind circuit breakers; see the module docstring."""

    trap_exit = True

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: str = DELIVERY,
        breaker: Any = BREAKER,
        max_buffer: int = 100,
        max_attempts: int = 3,
        retry_delay: float = 1.0,
        timeout: float = 5.0,
        config: BreakerConfig | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> Pid:
        """Start the service (the circuit breaker service should already run). ``config`` is
        each receiver's circuit (default: the seed's 5 failures, a trial after 30 s)."""
        for what, count in (("max_buffer", max_buffer), ("max_attempts", max_attempts)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidArgument(f"invalid {what}: {count!r} (an int >= 1)")
        for what, seconds in (("retry_delay", retry_delay), ("timeout", timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise InvalidArgument(f"invalid {what}: {seconds!r} (seconds > 0)")
        if dead_letters is not None and not callable(dead_letters):
            raise InvalidArgument(f"invalid dead_letters: {dead_letters!r} (an async callable)")
        cfg = config or BreakerConfig(failure_threshold=5, reset_timeout=30.0, success_threshold=1)
        args = (name, breaker, max_buffer, max_attempts, retry_delay, timeout, cfg, dead_letters)
        return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(cls, **kw: Any) -> ChildSpec:  # type: ignore[override]
        """A child spec for the service, started with ``start_link``'s keywords."""

        async def start() -> Pid:
            return await cls.start_link(**kw)

        return ChildSpec(id=kw.get("name", DELIVERY), start=start)

    # -- client API ----------------------------------------------------------------------------

    @staticmethod
    async def send(receiver: Pid | str, message: Any, *, delivery: Any = DELIVERY) -> str:
        """Deliver ``message`` to ``receiver``: ``"delivered"``, ``"buffered"`` or ``"dead"``
        (no such receiver: handed to the dead letters)."""
        if not isinstance(receiver, Pid | str):
            raise InvalidArgument(f"invalid receiver: {receiver!r} (a Pid or a registered name)")
        decision, circuit, breaker, timeout = unwrap(
            await call(delivery, ("send", receiver, message))
        )
        if decision != "direct":
            return str(decision)
        try:
            await _deliver(receiver, message, circuit, breaker, timeout)
        except CircuitOpen:  # opened since the service looked: not a failed attempt
            return str(unwrap(await call(delivery, ("buffer", receiver, message, None))))
        except FoundationError as exc:
            return str(unwrap(await call(delivery, ("buffer", receiver, message, exc.code))))
        return "delivered"

    @staticmethod
    async def buffered(receiver: Pid | str, *, delivery: Any = DELIVERY) -> list[Any]:
        """The messages waiting for ``receiver``, oldest first."""
        return await call(delivery, ("peek_all", receiver))  # type: ignore[no-any-return]

    @staticmethod
    async def dead_letters(*, delivery: Any = DELIVERY) -> list[tuple[Any, Any, str]]:
        """The dead letters kept in memory, ``(receiver, message, reason)``, oldest first."""
        return await call(delivery, ("dead",))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: tuple[Any, ...]) -> dict[Any, _Buffer]:
        name, self.breaker, self.max_buffer, self.max_attempts, self.retry_delay = args[:5]
        self.timeout, self.config, self.sink = args[5:]
        rt = current_runtime()
        self.kept: _Kept = rt.extensions.setdefault(f"delivery:{name}", _Kept())
        self.key = f"delivery:{name}"
        self.circuits: dict[str, Any] = {}  # circuit -> receiver
        self.refs: dict[Ref, Any] = {}  # monitor -> receiver
        self.pid_refs: dict[Pid, Ref] = {}  # pid receivers, watched while their circuit lives
        buffers: dict[Any, _Buffer] = self.kept.buffers
        await self._orphans_to_dead_letters()  # a predecessor's drainers died with it
        for receiver, buf in list(buffers.items()):  # a predecessor's buffers: take them over
            buf.drainer, buf.ref, buf.inflight = None, None, None
            await self._circuit(receiver)
            if self._watch(receiver, buf):
                self._ensure_drainer(buffers, receiver)
            else:
                await self._gone(buffers, receiver, buf, "receiver_down")
        return buffers

    async def _orphans_to_dead_letters(self, drainer: Pid | None = None) -> None:
        """Messages in flight to a dead receiver whose drainer (any, if None) is gone too."""
        for key, (message, owner) in list(self.kept.orphans.items()):
            if drainer is None or owner == drainer:  # no verdict will come: at least once
                del self.kept.orphans[key]
                await self._dead_letter(key[0], message, "receiver_down")

    async def terminate(self, reason: Any, buffers: dict[Any, _Buffer]) -> None:
        for buf in buffers.values():
            if buf.drainer is not None:
                exit_signal(buf.drainer, "shutdown")
                buf.drainer = None
        if reason not in ("normal", "shutdown"):
            return  # a crash: the successor takes the buffers over
        await self._orphans_to_dead_letters()
        for receiver, buf in list(buffers.items()):
            await self._gone(buffers, receiver, buf, "delivery_stopped")
        current_runtime().extensions.pop(self.key, None)

    async def handle_call(self, request: Any, caller: From, buffers: dict[Any, _Buffer]) -> Any:
        kind = request[0]
        if kind == "send":
            receiver, message = request[1], request[2]
            circuit = await self._circuit(receiver)
            state = CircuitBreaker.peek(circuit, breaker=self.breaker)
            if state in ("closed", None) and receiver not in buffers:
                return Reply(("direct", circuit, self.breaker, self.timeout), buffers)
            outcome = await self._buffer(buffers, receiver, message, None)
            return Reply((outcome, circuit, self.breaker, self.timeout), buffers)
        if kind == "buffer":
            return Reply(await self._buffer(buffers, request[1], request[2], request[3]), buffers)
        if kind == "peek":  # a drainer asks for its receiver's oldest message
            buf = buffers.get(request[1])
            if buf is None or buf.drainer != request[2] or not buf.items:
                return Reply(None, buffers)
            buf.inflight = buf.items[0][0]
            return Reply(buf.items[0][:2], buffers)
        if kind == "done":  # a drainer's outcome for the message it was given
            await self._done(buffers, request[1], request[2], request[3])
            return Reply(None, buffers)
        if kind == "peek_all":
            buf = buffers.get(request[1])
            return Reply([m for _, m, _ in buf.items] if buf else [], buffers)
        if kind == "dead":
            return Reply(list(self.kept.dead), buffers)
        return await super().handle_call(request, caller, buffers)

    async def _circuit(self, receiver: Any) -> str:
        circuit = f"deliver:{receiver}"
        if isinstance(receiver, Pid):
            self._watch_pid(receiver)
        if circuit not in self.circuits:
            try:
                await CircuitBreaker.configure(circuit, self.config, breaker=self.breaker)
                await CircuitBreaker.listen(circuit, breaker=self.breaker)
            except FoundationError as exc:  # no breaker: delivered unprotected until it is back
                log.warning("delivery to %r without a circuit breaker: %s", receiver, exc)
                return circuit
            self.circuits[circuit] = receiver
        return circuit

    def _watch_pid(self, pid: Pid) -> None:
        """One monitor per pid receiver while the service knows it (its circuit, its buffer)."""
        if pid not in self.pid_refs:
            ref = self.pid_refs[pid] = monitor(pid)
            self.refs[ref] = pid

    def _watch(self, receiver: Any, buf: _Buffer) -> bool:
        """Watch a receiver that gets a buffer; False if it is not there."""
        rt = current_runtime()
        pid = receiver if isinstance(receiver, Pid) else rt.whereis(receiver)
        if pid is None or not rt.is_alive(pid):
            return False
        if isinstance(receiver, Pid):
            self._watch_pid(receiver)
        else:
            buf.ref = monitor(pid)
            self.refs[buf.ref] = receiver
        return True

    async def _buffer(
        self, buffers: dict[Any, _Buffer], receiver: Any, message: Any, failed: str | None
    ) -> str:
        """Queue a message; ``failed``: the error code of a direct attempt that failed."""
        if failed is not None and self.max_attempts <= 1:
            await self._dead_letter(receiver, message, f"delivery_failed:{failed}")
            return "dead"
        buf = buffers.get(receiver)
        if buf is None:
            buf = _Buffer()
            if not self._watch(receiver, buf):
                await self._dead_letter(receiver, message, "noproc")
                return "dead"
            buffers[receiver] = buf
        self.kept.seq += 1
        buf.items.append((self.kept.seq, message, 0 if failed is None else 1))
        while len(buf.items) > self.max_buffer:  # the oldest not being delivered right now
            at = 1 if buf.items[0][0] == buf.inflight else 0
            _, oldest, _ = buf.items[at]
            del buf.items[at]
            await self._dead_letter(receiver, oldest, "buffer_overflow")
        self._ensure_drainer(buffers, receiver)
        return "buffered"

    async def _done(self, buffers: dict[Any, _Buffer], receiver: Any, seq: int, why: Any) -> None:
        """``why`` is None for a delivered message, else the code of the failed attempt."""
        orphan = self.kept.orphans.pop((receiver, seq), None)
        if orphan is not None:
            if why is not None:
                await self._dead_letter(receiver, orphan[0], "receiver_down")
            return
        buf = buffers.get(receiver)
        if buf is None:
            return
        if buf.inflight == seq:
            buf.inflight = None
        index = next((i for i, item in enumerate(buf.items) if item[0] == seq), None)
        if index is None or why == _NOT_TRIED:
            return
        _, message, fails = buf.items[index]
        if why is not None and fails + 1 < self.max_attempts:
            buf.items[index] = (seq, message, fails + 1)  # stays where it was, in order
            return
        del buf.items[index]
        if why is not None:
            await self._dead_letter(receiver, message, f"delivery_failed:{why}")
        if not buf.items:
            del buffers[receiver]  # the drainer finds nothing more and ends
            if buf.ref is not None:
                self.refs.pop(buf.ref, None)
                demonitor(buf.ref, flush=True)

    async def _gone(
        self, buffers: dict[Any, _Buffer], receiver: Any, buf: _Buffer, reason: str
    ) -> None:
        """A receiver's buffer to the dead letters, but for a message in flight, whose
        drainer's verdict decides (it may have been delivered)."""
        del buffers[receiver]  # its drainer finds nothing more and ends
        for seq, message, _ in buf.items:
            if seq == buf.inflight and buf.drainer is not None:
                self.kept.orphans[(receiver, seq)] = (message, buf.drainer)
            else:
                await self._dead_letter(receiver, message, reason)

    def _ensure_drainer(self, buffers: dict[Any, _Buffer], receiver: Any) -> None:
        buf = buffers.get(receiver)
        if buf is None or not buf.items or buf.drainer is not None:
            return
        buf.drainer = spawn_link(
            _drain, current_pid(), receiver, f"deliver:{receiver}", self.breaker,
            self.timeout, self.retry_delay,
        )  # fmt: skip

    async def _dead_letter(self, receiver: Any, message: Any, reason: str) -> None:
        if self.sink is not None:
            try:
                await self.sink(receiver, message, reason, {"service": "delivery"})
                return
            except Exception as exc:  # kept in memory instead, never lost silently
                log.error("dead-letter sink failed for %r (%s); kept in memory", receiver, exc)
        self.kept.dead.append((receiver, message, reason))

    async def handle_info(self, msg: Any, buffers: dict[Any, _Buffer]) -> Any:
        if isinstance(msg, tuple) and msg[:1] == ("circuit",):
            receiver = self.circuits.get(msg[1])
            buf = buffers.get(receiver) if receiver is not None else None
            if msg[2] == "closed" and buf is not None:  # whichever path closed it
                if buf.drainer is not None:
                    send(buf.drainer, _WAKE)  # it may be waiting out an open circuit
                self._ensure_drainer(buffers, receiver)
            return buffers
        if type(msg) is Exit:
            for receiver, buf in buffers.items():
                if buf.drainer == msg.pid:
                    buf.drainer, buf.inflight = None, None
                    self._ensure_drainer(buffers, receiver)  # if anything is left
            await self._orphans_to_dead_letters(msg.pid)
            return buffers
        if type(msg) is Down:
            receiver = self.refs.pop(msg.ref, None)
            if isinstance(receiver, Pid):  # its circuit goes with it
                del self.pid_refs[receiver]
                self.circuits.pop(f"deliver:{receiver}", None)
                with contextlib.suppress(FoundationError):  # no breaker: nothing to remove
                    await CircuitBreaker.remove(f"deliver:{receiver}", breaker=self.breaker)
            gone = buffers.get(receiver) if receiver is not None else None
            if gone is not None and (gone.ref is None or gone.ref is msg.ref):
                await self._gone(buffers, receiver, gone, "receiver_down")
            return buffers
        return await super().handle_info(msg, buffers)


async def _pause(seconds: float) -> None:
    """A drainer waits ``seconds``, or less if the service wakes it (its circuit closed)."""
    with contextlib.suppress(ReceiveTimeout):
        await receive(seconds, _is_wake)
        while True:  # wake-ups that came meanwhile are spent too
            await receive(0, _is_wake)


def _is_wake(msg: Any) -> bool:
    return msg is _WAKE


async def _deliver(receiver: Any, message: Any, circuit: str, breaker: Any, timeout: float) -> Any:
    """One delivery: through the circuit, or unprotected while no breaker knows the circuit."""
    if CircuitBreaker.peek(circuit, breaker=breaker) is None:
        return await call(receiver, message, timeout)
    return await CircuitBreaker.call(circuit, call, receiver, message, timeout, breaker=breaker)


async def _drain(
    delivery: Pid, receiver: Any, circuit: str, breaker: Any, timeout: float, delay: float
) -> None:
    """Deliver a receiver's buffer in order while the circuit lets it; wait when it is open."""
    me = current_pid()
    while True:
        wait = CircuitBreaker.open_for(circuit, breaker=breaker)
        if wait > 0:
            await _pause(wait)  # not even a try while it is open
            continue
        head = await call(delivery, ("peek", receiver, me))
        if head is None:
            return
        seq, message = head
        try:
            await _deliver(receiver, message, circuit, breaker, timeout)
        except CircuitOpen as exc:  # not an attempt: the message stays first; try later
            await call(delivery, ("done", receiver, seq, _NOT_TRIED))
            await _pause(exc.retry_after or delay)
            continue
        except FoundationError as exc:
            await call(delivery, ("done", receiver, seq, exc.code))
            await _pause(delay)
            continue
        await call(delivery, ("done", receiver, seq, None))
