"""HttpPools against a real HTTP/1.1 server on 127.0.0.1 that each test starts (no mocks).

``LocalHttp`` is a tiny keep-alive responder on ``asyncio.start_server`` in the test's own loop.
Paths: ``/ok``, ``/echo`` (method, body and the ``x-test`` header back), ``/status/<code>``,
``/flaky`` (503 for the first ``failures`` requests, then 200), ``/close`` (drops the connection
without answering) and ``/hang`` (answers only when the test ends). It counts connections and
the requests it has seen; every handler is awaited on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

import httpx
import pytest

from foundation import Runtime, Supervisor, current_pid, spawn
from foundation.errors import (
    AlreadyPresent,
    CallTimeout,
    HttpRequestFailed,
    HttpStatusError,
    PoolNotFound,
    ProcessExited,
)
from foundation.kernel.api import message_queue_len, wait_exit
from foundation.services.http import HttpPoolConfig, HttpPools
from foundation.testing import crash, get_state, restarted, sync, wait_until

real_clock = pytest.mark.foundation(clock="real")


class LocalHttp:
    """A real HTTP/1.1 server on an ephemeral loopback port, owned by one test."""

    def __init__(self) -> None:
        self.connections = 0
        self.seen: list[str] = []
        self.hanging = 0
        self.failures = 2
        self.arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LocalHttp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release.set()
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await self._one(reader, writer):
                pass
        writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.seen.append(f"{method} {path}")
        self.arrived.set()
        status, payload = 200, b"hello"
        if path == "/echo":
            payload = f"{method} {body.decode()} {headers.get('x-test', '-')}".encode()
        elif path.startswith("/status/"):
            status, payload = int(path.rsplit("/", 1)[1]), b"status"
        elif path == "/flaky" and self.failures > 0:
            self.failures -= 1
            status, payload = 503, b"not yet"
        elif path == "/close":
            return False
        elif path == "/hang":
            self.hanging += 1
            await self._release.wait()
            return False
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: {len(payload)}\r\n\r\n".encode() + payload
        )
        await writer.drain()
        return True


async def _stop_pools() -> None:
    """Stop the pools (closing their connections) while the test server still runs."""
    from foundation import GenServer

    await GenServer.stop("http_pools")


@real_clock
async def test_request_through_a_pool_returns_the_full_response_and_counts_it(
    runtime: Runtime,
) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url)})
        response = await HttpPools.get("svc", "/ok")
        assert (response.status_code, response.text) == (200, "hello")
        echo = await HttpPools.post("svc", "/echo", content=b"ping", headers={"x-test": "7"})
        assert echo.text == "POST ping 7"
        stats = await HttpPools.stats("svc")
        assert (stats.requests, stats.succeeded, stats.failed, stats.active) == (2, 2, 0, 0)
        assert stats.statuses == {2: 2}
        await _stop_pools()


@real_clock
async def test_a_pool_reuses_its_connections(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url, max_keepalive=2)})
        for _ in range(5):
            assert (await HttpPools.get("svc", "/ok")).status_code == 200
        assert srv.connections == 1
        await _stop_pools()


@real_clock
async def test_connection_manager_caller_answered_exactly_once_when_worker_dies(
    runtime: Runtime,
) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url)})
        answers: list[Any] = []

        async def caller() -> None:
            try:
                answers.append(await HttpPools.get("svc", "/hang"))
            except ProcessExited as exc:
                answers.append(exc)
            answers.append(message_queue_len(current_pid()))  # nothing else came for it

        c = spawn(caller)
        await srv.arrived.wait()
        workers = [p.pid for p in runtime.processes() if p.behaviour == "Task(_perform)"]
        assert len(workers) == 1
        await crash(workers[0])
        await wait_exit(c)  # answered, not left hanging
        await sync("http_pools")
        assert len(answers) == 2 and isinstance(answers[0], ProcessExited)
        assert answers[0].retryable
        assert answers[1] == 0
        stats = await HttpPools.stats("svc")
        assert (stats.active, stats.failed, stats.succeeded, stats.requests) == (0, 1, 0, 1)
        await _stop_pools()


@real_clock
async def test_callers_are_answered_once_when_the_pools_server_is_killed(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        sup = await Supervisor.start_link(
            [HttpPools.child_spec(pools={"svc": HttpPoolConfig(srv.url)})]
        )
        old_state = await get_state("http_pools")
        old_client = old_state.pools["svc"].client
        outcome: list[BaseException] = []

        async def caller() -> None:
            try:
                await HttpPools.get("svc", "/hang")
            except ProcessExited as exc:
                outcome.append(exc)

        c = spawn(caller)
        await srv.arrived.wait()
        old = runtime.whereis("http_pools")
        await crash("http_pools")
        await wait_exit(c)
        assert len(outcome) == 1
        await restarted("http_pools", old)
        assert (await HttpPools.get("svc", "/ok")).status_code == 200
        await wait_until(lambda: old_client.is_closed)  # closed by its guard, though killed
        await Supervisor.stop(sup)


@real_clock
async def test_a_caller_that_dies_cancels_its_request(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url)})
        c = spawn(HttpPools.get, "svc", "/hang")
        await srv.arrived.wait()
        await crash(c)
        await sync("http_pools")
        stats = await HttpPools.stats("svc")
        assert (stats.active, stats.cancelled) == (0, 1)
        await wait_until(lambda: not [p for p in runtime.processes() if "_perform" in p.behaviour])
        await _stop_pools()


@real_clock
async def test_transport_failures_raise_retryable_http_request_failed(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(
            pools={"svc": HttpPoolConfig(srv.url), "down": HttpPoolConfig("http://127.0.0.1:1")}
        )
        with pytest.raises(HttpRequestFailed, match="GET /close to service 'svc'") as err:
            await HttpPools.get("svc", "/close")
        assert err.value.retryable
        assert isinstance(err.value.__cause__, httpx.RemoteProtocolError)
        with pytest.raises(HttpRequestFailed) as err:
            await HttpPools.get("down", "/ok")
        assert isinstance(err.value.__cause__, httpx.ConnectError)
        assert (await HttpPools.stats("svc")).failed == 1
        await _stop_pools()


@real_clock
async def test_error_statuses_raise_only_when_asked(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url)})
        assert (await HttpPools.get("svc", "/status/503")).status_code == 503
        with pytest.raises(HttpStatusError) as err:
            await HttpPools.get("svc", "/status/503", raise_for_status=True)
        assert (err.value.status, err.value.retryable) == (503, True)
        with pytest.raises(HttpStatusError) as err:
            await HttpPools.get("svc", "/status/404", raise_for_status=True)
        assert (err.value.status, err.value.retryable) == (404, False)
        assert (await HttpPools.stats("svc")).statuses == {5: 2, 4: 1}
        await _stop_pools()


@real_clock
async def test_a_request_past_its_timeout_is_killed_and_counted(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url, timeout=0.05)})
        with pytest.raises(CallTimeout):
            await HttpPools.get("svc", "/hang")
        await sync("http_pools")
        stats = await HttpPools.stats("svc")
        assert (stats.active, stats.failed) == (0, 1)
        await _stop_pools()


async def test_a_request_on_the_wire_holds_a_virtual_clock_still(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link(pools={"svc": HttpPoolConfig(srv.url, timeout=1.0)})
        assert (await HttpPools.get("svc", "/ok")).text == "hello"
        assert runtime.clock.now() < 1.0  # the timeout never fired in virtual time
        await _stop_pools()


@real_clock
async def test_pools_are_configured_and_removed_at_run_time(runtime: Runtime) -> None:
    async with LocalHttp() as srv:
        await HttpPools.start_link()
        with pytest.raises(PoolNotFound, match="'svc'"):
            await HttpPools.get("svc", "/ok")
        await HttpPools.configure("svc", HttpPoolConfig(srv.url))
        with pytest.raises(AlreadyPresent):
            await HttpPools.configure("svc", HttpPoolConfig(srv.url))
        pending = spawn(HttpPools.get, "svc", "/hang")
        await srv.arrived.wait()
        client = (await get_state("http_pools")).pools["svc"].client
        await HttpPools.remove("svc")
        assert not client.is_closed  # a request is still in flight on it
        assert [s.service for s in await HttpPools.all_stats()] == []
        await crash(pending)
        await sync("http_pools")
        assert client.is_closed
        await _stop_pools()
