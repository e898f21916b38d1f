"""Delivery: messages to a receiver behind its circuit breaker, buffered while it is open.

``await Delivery.send(receiver, message)`` delivers by a call to the receiver (its reply is the
acknowledgement) through the circuit ``deliver:<receiver>``. While that circuit is not closed,
or messages for the receiver are already waiting, the message is buffered (FIFO, bounded by
``max_buffer``, default 100). A drainer process owned by the Delivery server delivers the
buffer in order, oldest first, whenever the circuit lets it: after a successful half-open
trial, a manual reset, any path that closes the circuit (the seed drained only on its own
timer and lost the buffer when a trial closed the circuit: Bug #2). A message leaves the buffer
only once delivered. A delivery that fails goes back to the front (the circuit counts the
failure) until it has failed ``max_attempts`` times, then to the dead-letter sink; overflow
sends the oldest message to the dead-letter sink; the receiver's death moves its whole buffer
there. Nothing is dropped silently. The sink is an async callable ``(recipient, message,
reason, metadata)`` (``DeadLetterQueue.put``); without one, dead letters are kept in memory
(``Delivery.dead_letters``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import CircuitOpen, FoundationError, InvalidArgument
from foundation.kernel.api import current_pid, monitor, spawn_link
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call
from foundation.kernel.messages import Down, Exit, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.services.circuit_breaker import BREAKER, BreakerConfig, CircuitBreaker
from foundation.services.signal_bus import DeadLetterSink

__all__ = [
    "DELIVERY",
    "Delivery",
]

DELIVERY = "delivery"
"""The default registered name of the delivery service."""


@dataclass
class _Buffer:
    items: deque[tuple[int, Any, int]] = field(default_factory=deque)  # (seq, message, fails)
    pid: Pid | None = None
    ref: Ref | None = None
    drainer: Pid | None = None


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
        timeout: float = 5.0,
        config: BreakerConfig | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> Pid:
        """Start the service (the circuit breaker service must already run)."""
        if not isinstance(max_buffer, int) or max_buffer < 1:
            raise InvalidArgument(f"invalid max_buffer: {max_buffer!r} (an int >= 1)")
        if dead_letters is not None and not callable(dead_letters):
            raise InvalidArgument(f"invalid dead_letters: {dead_letters!r} (an async callable)")
        args = (breaker, max_buffer, max_attempts, timeout, config or BreakerConfig(), dead_letters)
        return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

    # -- client API ----------------------------------------------------------------------------

    @staticmethod
    async def send(receiver: Any, message: Any, *, delivery: Any = DELIVERY) -> str:
        """Deliver ``message`` to ``receiver``: ``"delivered"``, ``"buffered"`` or ``"dead"``."""
        decision, circuit, breaker, timeout = await call(delivery, ("send", receiver, message))
        if decision != "direct":
            return str(decision)
        try:
            await CircuitBreaker.call(circuit, call, receiver, message, timeout, breaker=breaker)
        except FoundationError:
            return str(await call(delivery, ("buffer", receiver, message, 1)))
        return "delivered"

    @staticmethod
    async def buffered(receiver: Any, *, delivery: Any = DELIVERY) -> list[Any]:
        """The messages waiting for ``receiver``, oldest first."""
        return await call(delivery, ("peek_all", receiver))  # type: ignore[no-any-return]

    @staticmethod
    async def dead_letters(*, delivery: Any = DELIVERY) -> list[tuple[Any, Any, str]]:
        """The in-memory dead letters ``(receiver, message, reason)`` (no sink configured)."""
        return await call(delivery, ("dead",))  # type: ignore[no-any-return]

    # -- server --------------------------------------------------------------------------------

    async def init(self, args: tuple[Any, int, int, float, BreakerConfig, Any]) -> dict[Any, Any]:
        self.breaker, self.max_buffer, self.max_attempts, self.timeout, self.config, sink = args
        self.sink: DeadLetterSink | None = sink
        self.dead: list[tuple[Any, Any, str]] = []
        self.seq = 0
        self.circuits: dict[str, Any] = {}
        return {}

    async def _circuit(self, receiver: Any) -> str:
        circuit = f"deliver:{receiver}"
        if circuit not in self.circuits:
            await CircuitBreaker.configure(circuit, self.config, breaker=self.breaker)
            await CircuitBreaker.listen(circuit, breaker=self.breaker)
            self.circuits[circuit] = receiver
        return circuit

    async def handle_call(self, request: Any, caller: From, buffers: dict[Any, _Buffer]) -> Any:
        kind = request[0]
        if kind == "send":
            receiver, message = request[1], request[2]
            circuit = await self._circuit(receiver)
            state = await CircuitBreaker.state(circuit, breaker=self.breaker)
            if state == "closed" and not buffers.get(receiver):
                return Reply(("direct", circuit, self.breaker, self.timeout), buffers)
            outcome = await self._buffer(buffers, receiver, message, 0)
            return Reply((outcome, circuit, self.breaker, self.timeout), buffers)
        if kind == "buffer":
            return Reply(await self._buffer(buffers, request[1], request[2], request[3]), buffers)
        if kind == "peek":
            buf = buffers.get(request[1])
            return Reply(buf.items[0] if buf and buf.items else None, buffers)
        if kind == "peek_all":
            buf = buffers.get(request[1])
            return Reply([m for _, m, _ in buf.items] if buf else [], buffers)
        if kind == "ack":
            buf = buffers.get(request[1])
            if buf and buf.items and buf.items[0][0] == request[2]:
                buf.items.popleft()
            return Reply(None, buffers)
        if kind == "failed":
            await self._failed(buffers, request[1], request[2], request[3])
            return Reply(None, buffers)
        if kind == "dead":
            return Reply(list(self.dead), buffers)
        return await super().handle_call(request, caller, buffers)

    async def _buffer(
        self, buffers: dict[Any, _Buffer], receiver: Any, message: Any, fails: int
    ) -> str:
        buf = buffers.get(receiver)
        if buf is None:
            pid = receiver if isinstance(receiver, Pid) else current_runtime().whereis(receiver)
            if pid is None or not current_runtime().is_alive(pid):
                await self._dead_letter(receiver, message, "noproc")
                return "dead"
            buf = buffers[receiver] = _Buffer(pid=pid, ref=monitor(pid))
        self.seq += 1
        buf.items.append((self.seq, message, fails))
        while len(buf.items) > self.max_buffer:
            _, oldest, _ = buf.items.popleft()
            await self._dead_letter(receiver, oldest, "buffer_overflow")
        self._ensure_drainer(buffers, receiver)
        return "buffered"

    async def _failed(self, buffers: dict[Any, _Buffer], receiver: Any, seq: int, why: str) -> None:
        buf = buffers.get(receiver)
        if not buf or not buf.items or buf.items[0][0] != seq:
            return
        _, message, fails = buf.items[0]
        if fails + 1 >= self.max_attempts:
            buf.items.popleft()
            await self._dead_letter(receiver, message, f"delivery_failed:{why}")
        else:
            buf.items[0] = (seq, message, fails + 1)  # stays first, in order

    def _ensure_drainer(self, buffers: dict[Any, _Buffer], receiver: Any) -> None:
        buf = buffers.get(receiver)
        if buf is None or not buf.items or buf.drainer is not None:
            return
        circuit = f"deliver:{receiver}"
        buf.drainer = spawn_link(
            _drain, current_pid(), receiver, circuit, self.breaker, self.timeout
        )

    async def _dead_letter(self, receiver: Any, message: Any, reason: str) -> None:
        if self.sink is None:
            self.dead.append((receiver, message, reason))
            return
        await self.sink(receiver, message, reason, {"service": "delivery"})

    async def handle_info(self, msg: Any, buffers: dict[Any, _Buffer]) -> Any:
        if isinstance(msg, tuple) and msg[:1] == ("circuit",):
            receiver = self.circuits.get(msg[1])
            if msg[2] == "closed" and receiver is not None:
                self._ensure_drainer(buffers, receiver)  # whichever path closed it
            return buffers
        if type(msg) is Exit:
            for receiver, buf in buffers.items():
                if buf.drainer == msg.pid:
                    buf.drainer = None
                    if msg.reason != "normal":
                        self._ensure_drainer(buffers, receiver)
            return buffers
        if type(msg) is Down:
            for receiver, buf in list(buffers.items()):
                if buf.ref == msg.ref:
                    del buffers[receiver]  # its drainer finds nothing more and ends
                    for _, message, _ in buf.items:
                        await self._dead_letter(receiver, message, "receiver_down")
            return buffers
        return await super().handle_info(msg, buffers)


async def _drain(delivery: Pid, receiver: Any, circuit: str, breaker: Any, timeout: float) -> None:
    """Deliver a receiver's buffer in order while the circuit lets it; wait when it is open."""
    clock = current_runtime().clock
    while True:
        head = await call(delivery, ("peek", receiver))
        if head is None:
            return
        seq, message, _ = head
        try:
            await CircuitBreaker.call(circuit, call, receiver, message, timeout, breaker=breaker)
        except CircuitOpen as exc:
            await clock.sleep(exc.retry_after or 0.01)  # the message stays first; try later
            continue
        except FoundationError as exc:
            await call(delivery, ("failed", receiver, seq, exc.code))
            continue
        await call(delivery, ("ack", receiver, seq))
