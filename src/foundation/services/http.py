"""HttpPools: one ``httpx.AsyncClient`` per configured service, requests owned by their callers.

``HttpPools`` is a supervised server that owns one connection pool (an ``httpx.AsyncClient``
with a base URL, connection limits and default headers) per configured service, and counts
what goes through each. It never performs a request itself, so a slow service never stalls it
or anyone else. Needs the ``http`` extra (``httpx``).

``await HttpPools.request(service, method, url, ...)`` checks the pool out of the server, then
runs the request as the caller's own task (``async_nolink`` under the pools' task supervisor)
and awaits it with the pool's ``timeout`` on the runtime clock. The answer comes from that task,
so it comes exactly once, however things end (the seed's G2-#7: its ConnectionManager deferred
the reply to a worker task, and when the worker died the caller hung until its own timeout and
``active_requests`` was never decremented):

- the response, or ``HttpStatusError`` for an error status if ``raise_for_status``;
- ``HttpRequestFailed`` (retryable) if the request failed in transport (connect, read, ...);
- ``CallTimeout`` if it took longer than ``timeout`` (the task is killed);
- ``ProcessExited`` if the worker task died (killed, or its pools server stopped).

The server monitors every request's caller and task: a request is counted once, as succeeded
or failed when its task reports, as failed when its task dies first, and as cancelled (its task
killed) when its caller dies first, so ``active`` always returns to zero.

While a request is on the wire it is outside work for the runtime clock, so a virtual clock
holds still rather than jumping past a real server's answer. The clients are closed when the
server stops; a small linked guard process closes them even if the server is killed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from foundation.errors import (
    AlreadyPresent,
    HttpRequestFailed,
    HttpStatusError,
    InvalidArgument,
    NoProcess,
    PoolNotFound,
    format_reason,
)
from foundation.kernel.api import demonitor, monitor, receive, spawn_link
from foundation.kernel.api import exit as exit_signal
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call, cast
from foundation.kernel.messages import Down, Exit, Reply, Stop
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.kernel.task_supervisor import TaskSupervisor

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HttpPoolConfig",
    "HttpPoolStats",
    "HttpPools",
]


@dataclass(frozen=True, slots=True)
class HttpPoolConfig:
    """A service's base URL, connection limits, timeouts (seconds) and default headers.

    ``timeout`` bounds a whole request on the runtime clock; ``connect_timeout`` bounds opening
    a connection. Defaults from the seed's ConnectionManager (size 10, at most 50, 30 s, 5 s).
    """

    base_url: str
    max_connections: int = 50
    max_keepalive: int = 10
    timeout: float = 30.0
    connect_timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or "://" not in self.base_url:
            raise InvalidArgument(f"invalid base_url: {self.base_url!r} (http://host[:port])")
        for what in ("max_connections", "max_keepalive"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"invalid {what}: {value!r} (an int >= 1)")
        for what in ("timeout", "connect_timeout"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument(f"invalid {what}: {value!r} (seconds > 0)")


@dataclass(frozen=True, slots=True)
class HttpPoolStats:
    """What went through one pool; ``statuses`` counts responses by class (2, 3, 4, 5)."""

    service: str
    base_url: str
    max_connections: int
    active: int
    requests: int
    succeeded: int
    failed: int
    cancelled: int
    statuses: Mapping[int, int]


class _Pool:
    __slots__ = ("active", "client", "config", "counts", "removed", "statuses")

    def __init__(self, config: HttpPoolConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client
        self.active = 0
        self.removed = False
        self.counts = {"requests": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
        self.statuses: dict[int, int] = {}


class _Request:
    __slots__ = ("caller", "caller_ref", "pool", "task", "task_ref")

    def __init__(self, pool: _Pool, caller: Pid | None, caller_ref: Ref | None) -> None:
        self.pool = pool
        self.caller = caller
        self.caller_ref = caller_ref
        self.task: Pid | None = None
        self.task_ref: Ref | None = None


class _Failure:
    """A transport error, returned (not raised) by a worker: it is an answer, not a crash."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _client(config: HttpPoolConfig) -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(
        base_url=config.base_url,
        headers=dict(config.headers),
        limits=httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_keepalive,
        ),
        # The whole request is bounded on the runtime clock; httpx only bounds the connect.
        timeout=httpx.Timeout(None, connect=config.connect_timeout),
    )


async def _perform(
    client: httpx.AsyncClient, method: str, url: str, options: dict[str, Any], server: Pid, rid: int
) -> Any:
    """The worker: one request; reports its outcome to the server, answers its caller."""
    import httpx

    try:
        with current_runtime().clock.external():
            response = await client.request(method, url, **options)
    except httpx.HTTPError as exc:
        with contextlib.suppress(NoProcess):
            cast(server, ("done", rid, None))
        return _Failure(exc)
    with contextlib.suppress(NoProcess):
        cast(server, ("done", rid, response.status_code))
    return response


async def _close_when_owner_exits(close: Callable[[], Awaitable[None]]) -> None:
    """Linked to the server and trapping exits: closes the clients once the server exits, even
    when it was killed (and ``terminate`` did not run)."""
    try:
        await receive(match=lambda m: type(m) is Exit)
    finally:
        await close()


class _State:
    def __init__(self, sup: Pid) -> None:
        self.sup = sup
        self.pools: dict[str, _Pool] = {}
        self.clients: set[httpx.AsyncClient] = set()  # every client not closed yet
        self.requests: dict[int, _Request] = {}
        self.refs: dict[Ref, int] = {}
        self.next_id = 0

    async def close_all(self) -> None:
        while self.clients:
            await self.clients.pop().aclose()


class HttpPools(GenServer):
    """The HTTP pool manager; see the module docstring."""

    trap_exit = True

    @classmethod
    async def start_link(  # type: ignore[override]
        cls, *, name: Any = "http_pools", pools: Mapping[str, HttpPoolConfig] | None = None
    ) -> Pid:
        """Start the manager with one pool per ``pools`` entry, linked to the caller."""
        configs = dict(pools or {})
        for cfg in configs.values():
            if not isinstance(cfg, HttpPoolConfig):
                raise InvalidArgument(f"invalid pool config: {cfg!r} (an HttpPoolConfig)")
        return await cls._start(configs, name=name, timeout=5.0, max_mailbox=None, link=True)

    @classmethod
    def child_spec(  # type: ignore[override]
        cls, *, name: Any = "http_pools", pools: Mapping[str, HttpPoolConfig] | None = None
    ) -> ChildSpec:
        """A supervisor child spec for the manager."""

        async def start() -> Pid:
            return await cls.start_link(name=name, pools=pools)

        return ChildSpec(id=name, start=start, restart="permanent", shutdown=5.0, type="worker")

    # -- API ------------------------------------------------------------------------------------

    @staticmethod
    async def configure(
        service: str, config: HttpPoolConfig, *, server: Any = "http_pools"
    ) -> None:
        """Add a pool for ``service``; ``AlreadyPresent`` if it has one (remove it first)."""
        unwrap(await call(server, ("configure", service, config)))

    @staticmethod
    async def remove(service: str, *, server: Any = "http_pools") -> None:
        """Remove a pool; its client closes once the requests in flight on it have ended."""
        unwrap(await call(server, ("remove", service)))

    @staticmethod
    async def stats(service: str, *, server: Any = "http_pools") -> HttpPoolStats:
        """What went through ``service``'s pool."""
        return unwrap(await call(server, ("stats", service)))  # type: ignore[no-any-return]

    @staticmethod
    async def all_stats(*, server: Any = "http_pools") -> list[HttpPoolStats]:
        """Stats of every pool, by service name."""
        return unwrap(await call(server, ("all_stats", None)))  # type: ignore[no-any-return]

    @staticmethod
    async def request(
        service: str,
        method: str,
        url: str,
        *,
        timeout: float | None = None,
        raise_for_status: bool = False,
        server: Any = "http_pools",
        **options: Any,
    ) -> httpx.Response:
        """Send ``method url`` through ``service``'s pool; the response, read in full.

        ``options`` go to ``httpx.AsyncClient.request`` (``params``, ``headers``, ``json``,
        ``content``, ...). ``timeout`` (default: the pool's) bounds it on the runtime clock.
        """
        rid, client, sup, pool_timeout, me = unwrap(await call(server, ("checkout", service)))
        try:
            task = await TaskSupervisor.async_nolink(
                sup, _perform, client, method.upper(), url, options, me, rid
            )
        except BaseException:
            with contextlib.suppress(NoProcess):
                cast(me, ("started", rid, None))
            raise
        with contextlib.suppress(NoProcess):
            cast(me, ("started", rid, task.pid))
        result = await task.result(pool_timeout if timeout is None else timeout)
        what = f"{method.upper()} {url} to service {service!r}"
        if isinstance(result, _Failure):
            raise HttpRequestFailed(
                f"{what} failed: {format_reason(result.error)}",
                context={"service": service, "method": method.upper(), "url": url},
            ) from result.error
        if raise_for_status and result.status_code >= 400:
            raise HttpStatusError(
                f"{what} answered {result.status_code}",
                status=result.status_code,
                context={"service": service, "url": url},
            )
        return result  # type: ignore[no-any-return]

    @staticmethod
    async def get(service: str, url: str, **options: Any) -> httpx.Response:
        """``request(service, "GET", url, ...)``."""
        return await HttpPools.request(service, "GET", url, **options)

    @staticmethod
    async def post(service: str, url: str, **options: Any) -> httpx.Response:
        """``request(service, "POST", url, ...)``."""
        return await HttpPools.request(service, "POST", url, **options)

    # -- server -----------------------------------------------------------------------------------

    async def init(self, configs: dict[str, HttpPoolConfig]) -> _State:
        state = _State(await TaskSupervisor.start_link())
        for service, cfg in configs.items():
            self._add(state, service, cfg)
        spawn_link(_close_when_owner_exits, state.close_all, trap_exit=True)
        return state

    def _add(self, state: _State, service: str, cfg: HttpPoolConfig) -> None:
        pool = state.pools[service] = _Pool(cfg, _client(cfg))
        state.clients.add(pool.client)

    def _pool(self, state: _State, service: Any) -> _Pool:
        pool = state.pools.get(service)
        if pool is None:
            raise PoolNotFound(
                f"no HTTP pool for service {service!r}", context={"service": service}
            )
        return pool

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        op, arg = request[0], request[1]
        try:
            if op == "checkout":
                pool = self._pool(state, arg)
                state.next_id += 1
                rid = state.next_id
                ref = monitor(caller.pid) if caller.pid is not None else None
                state.requests[rid] = _Request(pool, caller.pid, ref)
                if ref is not None:
                    state.refs[ref] = rid
                pool.active += 1
                pool.counts["requests"] += 1
                return Reply((rid, pool.client, state.sup, pool.config.timeout, self.pid), state)
            if op == "stats":
                return Reply(self._stats(arg, self._pool(state, arg)), state)
            if op == "all_stats":
                return Reply([self._stats(s, p) for s, p in sorted(state.pools.items())], state)
            if op == "configure":
                if arg in state.pools:
                    raise AlreadyPresent(f"an HTTP pool for service {arg!r} exists")
                if not isinstance(request[2], HttpPoolConfig):
                    raise InvalidArgument(f"invalid pool config: {request[2]!r}")
                self._add(state, arg, request[2])
                return Reply(None, state)
            if op == "remove":
                pool = self._pool(state, arg)
                del state.pools[arg]
                pool.removed = True
                await self._maybe_close(state, pool)
                return Reply(None, state)
        except (PoolNotFound, AlreadyPresent, InvalidArgument) as err:
            return Reply(Failed(err), state)
        return Reply(Failed(InvalidArgument(f"http pools: unknown request {request!r}")), state)

    @staticmethod
    def _stats(service: str, pool: _Pool) -> HttpPoolStats:
        c = pool.counts
        return HttpPoolStats(
            service, pool.config.base_url, pool.config.max_connections, pool.active,
            c["requests"], c["succeeded"], c["failed"], c["cancelled"], dict(pool.statuses),
        )  # fmt: skip

    async def _maybe_close(self, state: _State, pool: _Pool) -> None:
        if pool.removed and pool.active == 0 and pool.client in state.clients:
            state.clients.discard(pool.client)
            await pool.client.aclose()

    async def _finish(self, state: _State, rid: int, outcome: str, status: int | None) -> None:
        req = state.requests.pop(rid, None)
        if req is None:
            return
        for ref in (req.caller_ref, req.task_ref):
            if ref is not None:
                state.refs.pop(ref, None)
                demonitor(ref, flush=True)
        pool = req.pool
        pool.active -= 1
        pool.counts[outcome] += 1
        if status is not None:
            pool.statuses[status // 100] = pool.statuses.get(status // 100, 0) + 1
        await self._maybe_close(state, pool)

    async def handle_cast(self, request: Any, state: _State) -> Any:
        op, rid, arg = request
        req = state.requests.get(rid)
        if req is None:
            return state
        if op == "started":
            if arg is None:  # the caller could not start its task
                await self._finish(state, rid, "failed", None)
            else:
                req.task = arg
                req.task_ref = monitor(arg)
                state.refs[req.task_ref] = rid
        elif op == "done":
            await self._finish(state, rid, "failed" if arg is None else "succeeded", arg)
        return state

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is Down:
            rid = state.refs.pop(msg.ref, None)
            req = state.requests.get(rid) if rid is not None else None
            if rid is None or req is None:
                return state
            if msg.ref is req.task_ref:  # the worker died before it reported
                await self._finish(state, rid, "failed", None)
            else:  # the caller died: its request dies with it
                if req.task is not None:
                    exit_signal(req.task, "kill")
                await self._finish(state, rid, "cancelled", None)
            return state
        if type(msg) is Exit and msg.reason not in ("normal", "shutdown"):
            return Stop(msg.reason, state)  # the task supervisor or the guard died: restart
        return state

    async def terminate(self, reason: Any, state: _State) -> None:
        await state.close_all()
