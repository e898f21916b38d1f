"""TaskPools: named, bounded pools of supervised tasks, owned by the callers that start them.

Each pool is a TaskSupervisor plus a concurrency bound and a default per-task timeout, of one
of three kinds: ``async`` (the function runs on the loop), ``thread`` (a blocking function runs
in the runtime's thread pool) or ``process`` (a CPU-bound function runs in the runtime's process
pool; its function and arguments must be importable and picklable, as multiprocessing needs).

The manager only hands out the supervisor and a slot (the seed's 3F item 7: its task pool
manager created tasks itself, so callers could not own or await them). ``await
TaskPools.run(pool, fn, *args)`` waits for a slot (a queued caller is answered exactly once,
never after it gave up), starts the task under the pool's supervisor as the caller's own
``async_nolink`` task and returns its ``Task`` to await. The manager monitors every task and
frees its slot when it ends, however it ends. ``map(pool, items, fn)`` runs a function over
items within the pool's bound, yielding results in order, with a per-item timeout.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from foundation.errors import AlreadyPresent, CallTimeout, InvalidArgument, NoProcess
from foundation.kernel.api import demonitor, monitor
from foundation.kernel.context import current_process, current_runtime
from foundation.kernel.gen_server import GenServer, call, cast, reply
from foundation.kernel.messages import Down, NoReply, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, shutdown_child, unwrap
from foundation.kernel.task_supervisor import Task, TaskSupervisor

__all__ = [
    "DEFAULT_POOLS",
    "PoolConfig",
    "PoolStats",
    "TaskPools",
]

Kind = Literal["async", "thread", "process"]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """A pool's kind, concurrency bound and default per-task timeout (seconds, or None)."""

    kind: Kind = "async"
    max_concurrency: int = 10
    timeout: float | None = 30.0

    def __post_init__(self) -> None:
        if self.kind not in ("async", "thread", "process"):
            raise InvalidArgument(f"invalid pool kind: {self.kind!r} (async, thread or process)")
        mc = self.max_concurrency
        if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
            raise InvalidArgument(f"invalid max_concurrency: {mc!r} (an int >= 1)")
        if self.timeout is not None and (
            not isinstance(self.timeout, int | float) or self.timeout <= 0
        ):
            raise InvalidArgument(f"invalid timeout: {self.timeout!r} (seconds > 0, or None)")


DEFAULT_POOLS: Mapping[str, PoolConfig] = MappingProxyType(
    {
        "general": PoolConfig("async", 10, 30.0),
        "agent_operations": PoolConfig("async", 20, 30.0),
        "coordination": PoolConfig("async", 15, 15.0),
        "monitoring": PoolConfig("async", 5, 10.0),
        "blocking_io": PoolConfig("thread", 8, 60.0),
    }
)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A pool's configuration and counters."""

    name: str
    kind: Kind
    max_concurrency: int
    running: int
    waiting: int
    started: int
    completed: int


class _Pool:
    __slots__ = ("completed", "config", "running", "started", "sup", "waiters")

    def __init__(self, config: PoolConfig, sup: Pid) -> None:
        self.config = config
        self.sup = sup
        self.running: dict[int, Pid | None] = {}
        self.waiters: deque[From] = deque()
        self.started = 0
        self.completed = 0


class _State:
    def __init__(self) -> None:
        self.pools: dict[str, _Pool] = {}
        self.next_slot = 0
        self.slots: dict[int, str] = {}
        self.watch: dict[Pid, tuple[Ref, int]] = {}


def _wrap(kind: Kind, fn: Callable[..., Any]) -> Callable[..., Any]:
    if kind == "async":
        return fn
    rt = current_runtime()
    runner = rt.run_in_thread if kind == "thread" else rt.run_in_process

    @functools.wraps(fn)
    async def off_loop(*args: Any) -> Any:
        return await runner(fn, *args)

    return off_loop


class TaskPools(GenServer):
    """The pool manager; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: Any = "task_pools", pools: dict[str, PoolConfig] | None = None
    ) -> Pid:
        """Start the manager with ``pools`` (default: ``DEFAULT_POOLS``)."""
        configs = dict(DEFAULT_POOLS if pools is None else pools)
        for cfg in configs.values():
            if not isinstance(cfg, PoolConfig):
                raise InvalidArgument(f"invalid pool config: {cfg!r} (a PoolConfig)")
        return await cls._start(configs, name=name, timeout=5.0, max_mailbox=None, link=True)

    # -- API ------------------------------------------------------------------------------------

    @staticmethod
    async def create_pool(name: str, config: PoolConfig, *, manager: Any = "task_pools") -> None:
        """Add a pool; ``AlreadyPresent`` if one has that name."""
        unwrap(await call(manager, ("create", name, config)))

    @staticmethod
    async def shutdown_pool(name: str, *, manager: Any = "task_pools") -> None:
        """Stop a pool and its tasks."""
        unwrap(await call(manager, ("shutdown", name)))

    @staticmethod
    async def run(
        pool: str, fn: Callable[..., Any], *args: Any, manager: Any = "task_pools",
        wait: float | None = None,
    ) -> Task:  # fmt: skip
        """Start ``fn(*args)`` in ``pool`` once it has a free slot (``wait``: how long to wait
        for one, default forever); the caller owns the returned Task and awaits it."""
        try:
            slot, sup, kind = unwrap(await call(manager, ("acquire", pool), timeout=wait))
        except CallTimeout:
            raise CallTimeout(f"pool {pool!r} had no free slot within {wait}s") from None
        try:
            task = await TaskSupervisor.async_nolink(sup, _wrap(kind, fn), *args)
        except BaseException:
            cast(manager, ("started", slot, None))
            raise
        cast(manager, ("started", slot, task.pid))
        return task

    @staticmethod
    async def map(
        pool: str,
        items: Iterable[Any],
        fn: Callable[[Any], Any],
        *,
        timeout: float | None = None,
        manager: Any = "task_pools",
    ) -> AsyncIterator[Any]:
        """Yield ``fn(item)`` for each item, in order, within the pool's bound.

        ``timeout`` (default: the pool's) limits each item; a timed-out task is killed and
        ``CallTimeout`` raised. Leaving the loop early kills the tasks still running.
        """
        stats = await TaskPools.stats(pool, manager=manager)
        limit = stats.max_concurrency
        window: deque[Task] = deque()
        per_item = timeout if timeout is not None else await _pool_timeout(manager, pool)
        it = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(window) < limit:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    window.append(await TaskPools.run(pool, fn, item, manager=manager))
                if not window:
                    return
                yield await window.popleft().result(per_item)
        finally:
            for task in window:
                task.kill()

    @staticmethod
    async def stats(pool: str, *, manager: Any = "task_pools") -> PoolStats:
        """The pool's configuration and counters."""
        return unwrap(await call(manager, ("stats", pool)))  # type: ignore[no-any-return]

    # -- server -----------------------------------------------------------------------------------

    async def init(self, configs: dict[str, PoolConfig]) -> _State:
        state = _State()
        for name, cfg in configs.items():
            await self._create(state, name, cfg)
        return state

    async def _create(self, state: _State, name: str, cfg: PoolConfig) -> None:
        sup = await TaskSupervisor.start_link(name=None)
        state.pools[name] = _Pool(cfg, sup)

    def _pool(self, state: _State, name: Any) -> _Pool:
        pool = state.pools.get(name)
        if pool is None:
            raise NoProcess(f"no task pool named {name!r}", context={"pool": name})
        return pool

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        op = request[0] if isinstance(request, tuple) and request else None
        try:
            if op == "acquire":
                return self._acquire(state, self._pool(state, request[1]), request[1], caller)
            if op == "stats":
                pool = self._pool(state, request[1])
                c = pool.config
                return Reply(
                    PoolStats(
                        request[1],
                        c.kind,
                        c.max_concurrency,
                        len(pool.running),
                        len(pool.waiters),
                        pool.started,
                        pool.completed,
                    ),
                    state,
                )
            if op == "timeout":
                return Reply(self._pool(state, request[1]).config.timeout, state)
            if op == "create":
                if request[1] in state.pools:
                    raise AlreadyPresent(f"a task pool named {request[1]!r} exists")
                if not isinstance(request[2], PoolConfig):
                    raise InvalidArgument(f"invalid pool config: {request[2]!r}")
                await self._create(state, request[1], request[2])
                return Reply(None, state)
            if op == "shutdown":
                pool = self._pool(state, request[1])
                del state.pools[request[1]]
                await shutdown_child(self._proc(), pool.sup, "infinity")
                return Reply(None, state)
        except (NoProcess, AlreadyPresent, InvalidArgument) as err:
            return Reply(Failed(err), state)
        return Reply(Failed(InvalidArgument(f"task pools: unknown request {request!r}")), state)

    def _proc(self) -> Any:
        proc = current_process()  # the pools' own process: this runs in its handlers
        assert proc is not None
        return proc

    def _acquire(self, state: _State, pool: _Pool, name: str, caller: From) -> Any:
        if len(pool.running) < pool.config.max_concurrency:
            return Reply(self._grant(state, pool, name, caller.pid), state)
        pool.waiters.append(caller)
        return NoReply(state)

    def _grant(self, state: _State, pool: _Pool, name: str, owner: Pid | None) -> tuple[Any, ...]:
        state.next_slot += 1
        slot = state.next_slot
        pool.running[slot] = owner  # until the task starts, the slot is its caller's
        state.slots[slot] = name
        pool.started += 1
        if owner is not None:
            self._watch(state, owner)
        return slot, pool.sup, pool.config.kind

    def _watch(self, state: _State, pid: Pid) -> None:
        ref, n = state.watch.get(pid, (None, 0))
        state.watch[pid] = (ref if ref is not None else monitor(pid), n + 1)

    def _unwatch(self, state: _State, pid: Pid) -> None:
        entry = state.watch.get(pid)
        if entry is not None:
            if entry[1] <= 1:
                del state.watch[pid]
                demonitor(entry[0], flush=True)
            else:
                state.watch[pid] = (entry[0], entry[1] - 1)

    def _release(self, state: _State, slot: int) -> None:
        name = state.slots.pop(slot, None)
        pool = state.pools.get(name) if name is not None else None
        if pool is None:
            return
        owner = pool.running.pop(slot, None)
        if owner is not None:
            self._unwatch(state, owner)
        pool.completed += 1
        while pool.waiters and len(pool.running) < pool.config.max_concurrency:
            caller = pool.waiters.popleft()
            if caller.fut.done():
                continue  # it stopped waiting: never hand it a slot
            reply(caller, self._grant(state, pool, name, caller.pid))  # type: ignore[arg-type]

    async def handle_cast(self, request: Any, state: _State) -> Any:
        _, slot, task_pid = request
        name = state.slots.get(slot)
        pool = state.pools.get(name) if name is not None else None
        if pool is None or slot not in pool.running:
            return state
        if task_pid is None:  # the caller failed to start its task
            self._release(state, slot)
            return state
        owner = pool.running[slot]
        pool.running[slot] = task_pid  # from now on the slot follows the task
        self._watch(state, task_pid)
        if owner is not None:
            self._unwatch(state, owner)
        return state

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is Down:
            state.watch.pop(msg.pid, None)
            for slot, name in list(state.slots.items()):
                pool = state.pools.get(name)
                if pool is not None and pool.running.get(slot) is msg.pid:
                    pool.running[slot] = None
                    self._release(state, slot)
            return state
        return await super().handle_info(msg, state)


async def _pool_timeout(manager: Any, pool: str) -> float | None:
    return unwrap(await call(manager, ("timeout", pool)))  # type: ignore[no-any-return]
