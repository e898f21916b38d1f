"""Coordination: locks with leases and fencing tokens, barriers, and leader election.

The coordination process never waits inside a request (the seed's Critical Flaw #11: barrier
and lock calls that waited, polling, inside the server and deadlocked it). Every request is
answered at once, or its caller is queued and answered later, exactly once, by whichever event
completes it. Callers wait, the server does not: a caller's ``timeout`` is its call timeout, and
the server never grants a lock to (or releases a barrier for) a caller whose call has already
timed out; it checks before answering, on the loop thread, so the two cannot race.

- **Locks**: ``acquire(name, lease=..., timeout=...)`` returns a ``Lease`` with a *fencing
  token* that grows with every grant of that lock: a storage layer that rejects writes carrying
  an older token makes a paused, expired holder harmless. A lease ends by ``release``, by
  expiry on the runtime clock, or when the holder process exits.
- **Barriers**: ``create_barrier(name, parties)``; ``wait_barrier(name, timeout=...)`` returns
  once ``parties`` live callers are waiting; the barrier then resets for its next round.
- **Leaders**: ``elect(group, lease=...)`` makes the caller leader of ``group`` if it has none
  (or its lease expired, or its process exited) and returns the current ``Leadership`` with its
  term, a fencing token for the group; ``renew``/``resign`` with that term.

Tokens and terms grow across restarts of the coordination process too (a restarted server
knows no lease, so it may grant a lock whose old holder still believes it holds it: only a
larger token makes the old holder's writes refusable). Each incarnation counts from its own
base: with a state store in the runtime, an epoch saved durably at start (``(epoch - 1) << 32``,
so the first incarnation's tokens are 1, 2, 3, ...); without one, the wall clock in microseconds
at start (every older token is smaller while the clock does not go back, as one server cannot
grant a lock more than once per microsecond).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from foundation.errors import (
    BarrierTimeout,
    CallTimeout,
    InvalidArgument,
    LockTimeout,
    NotInProcess,
    NotLockHolder,
)
from foundation.kernel.api import demonitor, is_alive, monitor
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.gen_server import GenServer, call, reply
from foundation.kernel.messages import Down, NoReply, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.kernel.timers import send_after

__all__ = [
    "Coordination",
    "Leadership",
    "Lease",
]


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lock: who holds it, its fencing token and when it expires (runtime clock)."""

    name: str
    holder: Pid
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Leadership:
    """The leader of a group: its pid, its term (a fencing token) and its lease's end."""

    group: str
    leader: Pid
    term: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Expire:
    kind: str
    name: str
    token: int


class _Lock:
    __slots__ = ("holder", "lease", "token", "waiters")

    def __init__(self) -> None:
        self.lease: Lease | None = None
        self.token = 0
        self.waiters: deque[tuple[From, float]] = deque()


class _State:
    def __init__(self) -> None:
        self.locks: dict[str, _Lock] = {}
        self.barriers: dict[str, tuple[int, list[From]]] = {}
        self.leaders: dict[str, Leadership] = {}
        self.terms: dict[str, int] = {}
        self.monitors: dict[Pid, tuple[Ref, int]] = {}
        self.base = 0  # this incarnation's tokens and terms count from here (see the module)


async def _incarnation_base(name: Any) -> int:
    """Where this incarnation's tokens start: above every token an earlier one granted."""
    store = current_runtime().store
    if store is None:
        return time.time_ns() // 1000
    key = f"coordination/{name}/epoch"
    stored = await store.load(key)
    epoch = (int(stored.data.get("epoch", 0)) if stored is not None else 0) + 1
    await store.save(key, {"epoch": epoch}, stored.version if stored is not None else None)
    return (epoch - 1) << 32


def _caller_pid(what: str) -> Pid:
    me = current_process()
    if me is None:
        raise NotInProcess(f"{what} must be called from the process that will hold it")
    return me.pid


def _check_seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidArgument(f"invalid {field}: {value!r} (seconds > 0)")
    return float(value)


class Coordination(GenServer):
    """The coordination process; see the module docstring."""

    @classmethod
    async def start_link(cls, *, name: Any = "coordination") -> Pid:  # type: ignore[override]
        """Start the coordination process linked to the caller."""
        return await cls._start(name, name=name, timeout=5.0, max_mailbox=None, link=True)

    # -- locks -------------------------------------------------------------------------------

    @staticmethod
    async def acquire(
        name: str, *, lease: float = 30.0, timeout: float = 5.0, server: Any = "coordination"
    ) -> Lease:
        """Hold lock ``name`` for ``lease`` seconds; ``LockTimeout`` if not granted in time."""
        holder = _caller_pid("acquire")
        lease = _check_seconds("lease", lease)
        try:
            return unwrap(await call(server, ("acquire", name, holder, lease), timeout=timeout))  # type: ignore[no-any-return]
        except CallTimeout:
            raise LockTimeout(
                f"lock {name!r} was not granted within {timeout}s", context={"lock": name}
            ) from None

    @staticmethod
    async def release(lease: Lease, *, server: Any = "coordination") -> None:
        """Release a held lock; ``NotLockHolder`` if the lease is no longer current."""
        unwrap(await call(server, ("release", lease.name, lease.token)))

    @staticmethod
    async def renew(lease: Lease, *, seconds: float = 30.0, server: Any = "coordination") -> Lease:
        """Extend a held lease from now; ``NotLockHolder`` if it already ended."""
        seconds = _check_seconds("seconds", seconds)
        return unwrap(await call(server, ("renew", lease.name, lease.token, seconds)))  # type: ignore[no-any-return]

    @staticmethod
    async def lock_status(name: str, *, server: Any = "coordination") -> Lease | None:
        """The current lease of ``name``, or None if it is free."""
        return unwrap(await call(server, ("lock_status", name)))  # type: ignore[no-any-return]

    # -- barriers ------------------------------------------------------------------------------

    @staticmethod
    async def create_barrier(name: str, parties: int, *, server: Any = "coordination") -> None:
        """Create (or reset) a barrier that opens when ``parties`` callers wait on it."""
        if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
            raise InvalidArgument(f"invalid parties: {parties!r} (an int >= 1)")
        unwrap(await call(server, ("create_barrier", name, parties)))

    @staticmethod
    async def wait_barrier(
        name: str, *, timeout: float = 60.0, server: Any = "coordination"
    ) -> None:
        """Wait until ``parties`` live callers wait; ``BarrierTimeout`` if not in time."""
        try:
            unwrap(await call(server, ("wait_barrier", name), timeout=timeout))
        except CallTimeout:
            raise BarrierTimeout(
                f"barrier {name!r} did not fill within {timeout}s", context={"barrier": name}
            ) from None

    # -- leaders --------------------------------------------------------------------------------

    @staticmethod
    async def elect(group: str, *, lease: float = 10.0, server: Any = "coordination") -> Leadership:
        """Become leader of ``group`` if it has none; the group's current leadership."""
        candidate = _caller_pid("elect")
        lease = _check_seconds("lease", lease)
        return unwrap(await call(server, ("elect", group, candidate, lease)))  # type: ignore[no-any-return]

    @staticmethod
    async def renew_leadership(
        leadership: Leadership, *, lease: float = 10.0, server: Any = "coordination"
    ) -> Leadership:
        """Extend the caller's leadership; ``NotLockHolder`` if its term has ended."""
        lease = _check_seconds("lease", lease)
        request = ("renew_leader", leadership.group, leadership.term, lease)
        return unwrap(await call(server, request))  # type: ignore[no-any-return]

    @staticmethod
    async def resign(leadership: Leadership, *, server: Any = "coordination") -> None:
        """Give up leadership (no-op if the term has already ended)."""
        unwrap(await call(server, ("resign", leadership.group, leadership.term)))

    @staticmethod
    async def leader(group: str, *, server: Any = "coordination") -> Leadership | None:
        """The current leadership of ``group``, or None."""
        return unwrap(await call(server, ("leader", group)))  # type: ignore[no-any-return]

    # -- server -----------------------------------------------------------------------------------

    async def init(self, name: Any) -> _State:
        state = _State()
        state.base = await _incarnation_base(name)
        return state

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        op = request[0] if isinstance(request, tuple) and request else None
        handler = getattr(self, f"_do_{op}", None) if isinstance(op, str) else None
        if handler is None:
            return Reply(
                Failed(InvalidArgument(f"coordination: unknown request {request!r}")), state
            )
        if not isinstance(request[1], str) or not request[1]:
            return Reply(
                Failed(InvalidArgument(f"a name must be a non-empty str: {request[1]!r}")), state
            )
        result = handler(state, caller, *request[1:])
        return NoReply(state) if result is _DEFERRED else Reply(result, state)

    def _now(self) -> float:
        return current_runtime().clock.now()

    def _watch(self, state: _State, pid: Pid) -> None:
        ref, count = state.monitors.get(pid, (None, 0))
        state.monitors[pid] = (ref if ref is not None else monitor(pid), count + 1)

    def _unwatch(self, state: _State, pid: Pid) -> None:
        entry = state.monitors.get(pid)
        if entry is None:
            return
        ref, count = entry
        if count <= 1:
            del state.monitors[pid]
            demonitor(ref, flush=True)
        else:
            state.monitors[pid] = (ref, count - 1)

    # locks

    def _do_acquire(self, state: _State, caller: From, name: str, holder: Pid, lease: float) -> Any:
        lock = state.locks.setdefault(name, _Lock())
        if lock.lease is None:
            return self._grant(state, name, lock, holder, lease)
        if lock.lease.holder is holder:
            return Failed(InvalidArgument(f"{holder!r} already holds lock {name!r} (renew it)"))
        lock.waiters.append((caller, lease))
        return _DEFERRED

    def _grant(self, state: _State, name: str, lock: _Lock, holder: Pid, lease: float) -> Lease:
        # Fencing tokens only grow, even across the lock's table entry being dropped.
        key = f"lock:{name}"
        lock.token = state.terms[key] = state.terms.get(key, state.base) + 1
        granted = Lease(name, holder, lock.token, self._now() + lease)
        lock.lease = granted
        self._watch(state, holder)
        send_after(self.pid, _Expire("lock", name, lock.token), lease)
        return granted

    def _free(self, state: _State, name: str, lock: _Lock) -> None:
        """The lock is free: grant it to the first waiter still waiting (each answered once)."""
        if lock.lease is not None:
            self._unwatch(state, lock.lease.holder)
            lock.lease = None
        while lock.waiters:
            caller, lease = lock.waiters.popleft()
            if caller.fut.done() or caller.pid is None or not is_alive(caller.pid):
                continue  # it timed out or died: never grant to it
            reply(caller, self._grant(state, name, lock, caller.pid, lease))
            return
        if lock.lease is None and not lock.waiters:
            del state.locks[name]

    def _current(self, state: _State, name: str, token: int) -> _Lock | Failed:
        lock = state.locks.get(name)
        if lock is None or lock.lease is None or lock.lease.token != token:
            return Failed(
                NotLockHolder(
                    f"token {token} no longer holds lock {name!r}",
                    context={"lock": name, "token": token},
                )
            )
        return lock

    def _do_release(self, state: _State, caller: From, name: str, token: int) -> Any:
        lock = self._current(state, name, token)
        if isinstance(lock, Failed):
            return lock
        self._free(state, name, lock)
        return None

    def _do_renew(self, state: _State, caller: From, name: str, token: int, seconds: float) -> Any:
        lock = self._current(state, name, token)
        if isinstance(lock, Failed):
            return lock
        assert lock.lease is not None
        renewed = Lease(name, lock.lease.holder, token, self._now() + seconds)
        lock.lease = renewed
        send_after(self.pid, _Expire("lock", name, token), seconds)
        return renewed

    def _do_lock_status(self, state: _State, caller: From, name: str) -> Any:
        lock = state.locks.get(name)
        return lock.lease if lock is not None else None

    # barriers

    def _do_create_barrier(self, state: _State, caller: From, name: str, parties: int) -> Any:
        _, waiting = state.barriers.get(name, (parties, []))
        state.barriers[name] = (parties, waiting)
        return None

    def _do_wait_barrier(self, state: _State, caller: From, name: str) -> Any:
        barrier = state.barriers.get(name)
        if barrier is None:
            return Failed(InvalidArgument(f"no barrier named {name!r} (create_barrier first)"))
        parties, waiting = barrier
        waiting[:] = [c for c in waiting if not c.fut.done()]  # drop callers that timed out
        waiting.append(caller)
        if len(waiting) < parties:
            return _DEFERRED
        for c in waiting[:-1]:
            reply(c, None)
        waiting.clear()
        return None

    # leaders

    def _live_leader(self, state: _State, group: str) -> Leadership | None:
        current = state.leaders.get(group)
        if current is not None and (
            current.expires_at <= self._now() or not is_alive(current.leader)
        ):
            self._vacate(state, group)
            return None
        return current

    def _vacate(self, state: _State, group: str) -> None:
        old = state.leaders.pop(group, None)
        if old is not None:
            self._unwatch(state, old.leader)

    def _do_elect(
        self, state: _State, caller: From, group: str, candidate: Pid, lease: float
    ) -> Any:
        current = self._live_leader(state, group)
        if current is not None:
            return current
        key = f"leader:{group}"
        term = state.terms[key] = state.terms.get(key, state.base) + 1
        leadership = Leadership(group, candidate, term, self._now() + lease)
        state.leaders[group] = leadership
        self._watch(state, candidate)
        send_after(self.pid, _Expire("leader", group, term), lease)
        return leadership

    def _do_renew_leader(
        self, state: _State, caller: From, group: str, term: int, lease: float
    ) -> Any:
        current = self._live_leader(state, group)
        if current is None or current.term != term:
            return Failed(NotLockHolder(f"term {term} of group {group!r} has ended"))
        renewed = Leadership(group, current.leader, term, self._now() + lease)
        state.leaders[group] = renewed
        send_after(self.pid, _Expire("leader", group, term), lease)
        return renewed

    def _do_resign(self, state: _State, caller: From, group: str, term: int) -> Any:
        current = state.leaders.get(group)
        if current is not None and current.term == term:
            self._vacate(state, group)
        return None

    def _do_leader(self, state: _State, caller: From, group: str) -> Any:
        return self._live_leader(state, group)

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is _Expire:
            if msg.kind == "lock":
                lock = state.locks.get(msg.name)
                lease = lock.lease if lock is not None else None
                if (
                    lock is not None
                    and lease is not None
                    and lease.token == msg.token
                    and lease.expires_at <= self._now()
                ):
                    self._free(state, msg.name, lock)
            else:
                self._live_leader(state, msg.name)
            return state
        if type(msg) is Down:
            state.monitors.pop(msg.pid, None)
            for name, lock in list(state.locks.items()):
                if lock.lease is not None and lock.lease.holder is msg.pid:
                    lock.lease = None  # its monitor is gone already
                    self._free(state, name, lock)
            for group, lead in list(state.leaders.items()):
                if lead.leader is msg.pid:
                    del state.leaders[group]
            return state
        return await super().handle_info(msg, state)


_DEFERRED = object()
