"""SystemCommands: OS commands from an allow-list, without a shell, never blocking the loop.

``await SystemCommands.run("uptime")`` asks the service for a slot (allow-list, concurrency cap,
optional result cache), then runs the command in the *caller* as an asyncio subprocess, so a
slow command never stalls the service or anyone else. The command runs in its own session
(process group): on timeout, on an output-cap overflow, or if the caller is killed, the whole
group is killed, and the run returns only once every process of it has exited, so nothing is
left behind (``foundation.services.command_group``). Failures are errors, never ``ok``
values: ``CommandNotAllowed``, ``Overloaded`` (at ``max_concurrent``), ``CommandTimeout``,
``OutputTooLarge`` and, for a non-zero exit with ``check=True``, ``CommandFailed``.

The service monitors each caller holding a slot and frees it if the caller dies. Timeouts run
on the runtime clock; while a command runs, a virtual clock holds still (it is outside work).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from foundation.errors import (
    CommandFailed,
    CommandNotAllowed,
    InvalidArgument,
    Overloaded,
)
from foundation.kernel.api import demonitor, monitor
from foundation.kernel.context import current_runtime
from foundation.kernel.gen_server import GenServer, call, cast
from foundation.kernel.messages import Down, Reply
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import From
from foundation.kernel.supervision import Failed, unwrap
from foundation.services.command_group import run_group

__all__ = [
    "CommandResult",
    "CommandStats",
    "DEFAULT_ALLOW",
    "SystemCommands",
]

DEFAULT_ALLOW = ("uptime", "ps", "free", "df", "iostat", "vmstat")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished command produced."""

    command: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    cached: bool = False


@dataclass(frozen=True, slots=True)
class CommandStats:
    """Counters of the service, as ``SystemCommands.stats`` reports them."""

    running: int
    started: int
    succeeded: int
    failed: int
    rejected: int
    cache_hits: int


@dataclass(frozen=True, slots=True)
class _Ticket:
    id: int
    path: str
    timeout: float
    max_output: int


class _State:
    def __init__(self, allow: frozenset[str], max_concurrent: int, timeout: float,
                 max_output: int, cache_ttl: float) -> None:  # fmt: skip
        self.allow = allow
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.max_output = max_output
        self.cache_ttl = cache_ttl
        self.running: dict[int, Pid | None] = {}
        self.monitors: dict[Pid, Ref] = {}
        self.cache: dict[tuple[str, ...], tuple[float, CommandResult]] = {}
        self.next_id = 0
        self.counts = {"started": 0, "succeeded": 0, "failed": 0, "rejected": 0, "cache_hits": 0}


class SystemCommands(GenServer):
    """The command service; see the module docstring."""

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        *,
        name: Any = "system_commands",
        allow: Iterable[str] = DEFAULT_ALLOW,
        max_concurrent: int = 5,
        timeout: float = 10.0,
        max_output: int = 1_000_000,
        cache_ttl: float = 30.0,
    ) -> Pid:
        """Start the service linked to the caller."""
        args = cls._check(allow, max_concurrent, timeout, max_output, cache_ttl)
        return await cls._start(args, name=name, timeout=5.0, max_mailbox=None, link=True)

    @staticmethod
    def _check(allow: Iterable[str], max_concurrent: Any, timeout: Any, max_output: Any,
               cache_ttl: Any) -> tuple[Any, ...]:  # fmt: skip
        names = frozenset(allow)
        for n in names:
            if not isinstance(n, str) or not n or "/" in n:
                raise InvalidArgument(f"invalid allowed command: {n!r} (a bare program name)")
        for field, value, low in (
            ("max_concurrent", max_concurrent, 1),
            ("max_output", max_output, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgument(f"invalid {field}: {value!r} (an int >= {low})")
        for field, value in (("timeout", timeout), ("cache_ttl", cache_ttl)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidArgument(f"invalid {field}: {value!r} (seconds >= 0)")
        return names, max_concurrent, float(timeout), max_output, float(cache_ttl)

    # -- API ---------------------------------------------------------------------------------

    @staticmethod
    async def run(
        command: str,
        *args: str,
        server: Any = "system_commands",
        timeout: float | None = None,
        use_cache: bool = False,
        check: bool = True,
    ) -> CommandResult:
        """Run an allowed command with ``args`` (no shell); see the module docstring."""
        if not all(isinstance(a, str) for a in (command, *args)):
            raise InvalidArgument(f"command and arguments must be str: {(command, *args)!r}")
        argv = (command, *args)
        answer = unwrap(await call(server, ("acquire", argv, use_cache)))
        if isinstance(answer, CommandResult):
            return _checked(answer, check)
        ticket: _Ticket = answer
        if timeout is not None:
            ticket = replace(ticket, timeout=timeout)
        result: CommandResult | None = None
        try:
            result = await _execute(ticket, argv)
        finally:
            cast(server, ("release", ticket.id, argv, result if use_cache else None))
        return _checked(result, check)

    @staticmethod
    async def stats(server: Any = "system_commands") -> CommandStats:
        """Running commands and counters."""
        return unwrap(await call(server, ("stats",)))  # type: ignore[no-any-return]

    # -- server ---------------------------------------------------------------------------------

    async def init(self, args: tuple[Any, ...]) -> _State:
        return _State(*args)

    async def handle_call(self, request: Any, caller: From, state: _State) -> Any:
        if request == ("stats",):
            return Reply(CommandStats(running=len(state.running), **state.counts), state)
        if not (isinstance(request, tuple) and len(request) == 3 and request[0] == "acquire"):
            return Reply(
                Failed(InvalidArgument(f"system commands: bad request {request!r}")), state
            )
        _, argv, use_cache = request
        if argv[0] not in state.allow:
            state.counts["rejected"] += 1
            err = CommandNotAllowed(
                f"command {argv[0]!r} is not allowed (allowed: {sorted(state.allow)})",
                context={"command": argv[0]},
            )
            return Reply(Failed(err), state)
        if use_cache:
            hit = state.cache.get(argv)
            if hit is not None and hit[0] > current_runtime().clock.now():
                state.counts["cache_hits"] += 1
                return Reply(replace(hit[1], cached=True), state)
        path = shutil.which(argv[0])
        if path is None:
            state.counts["rejected"] += 1
            err = CommandNotAllowed(f"command {argv[0]!r} is allowed but not installed")
            return Reply(Failed(err), state)
        if len(state.running) >= state.max_concurrent:
            state.counts["rejected"] += 1
            err2 = Overloaded(
                f"system commands: {state.max_concurrent} already running; try again later",
                context={"max_concurrent": state.max_concurrent},
            )
            return Reply(Failed(err2), state)
        state.next_id += 1
        owner = caller.pid
        state.running[state.next_id] = owner
        if owner is not None and owner not in state.monitors:
            state.monitors[owner] = monitor(owner)
        state.counts["started"] += 1
        return Reply(_Ticket(state.next_id, path, state.timeout, state.max_output), state)

    async def handle_cast(self, request: Any, state: _State) -> Any:
        _, ticket_id, argv, result = request
        owner = state.running.pop(ticket_id, None)
        if result is not None:
            state.counts["succeeded" if result.exit_code == 0 else "failed"] += 1
            if state.cache_ttl > 0 and result.exit_code == 0:
                expires = current_runtime().clock.now() + state.cache_ttl
                state.cache[argv] = (expires, result)
        else:
            state.counts["failed"] += 1
        if owner is not None and owner not in state.running.values():
            ref = state.monitors.pop(owner, None)
            if ref is not None:
                demonitor(ref, flush=True)
        return state

    async def handle_info(self, msg: Any, state: _State) -> Any:
        if type(msg) is Down and state.monitors.get(msg.pid) is msg.ref:
            del state.monitors[msg.pid]
            for tid in [t for t, pid in state.running.items() if pid is msg.pid]:
                del state.running[tid]
                state.counts["failed"] += 1
            return state
        return await super().handle_info(msg, state)


def _checked(result: CommandResult, check: bool) -> CommandResult:
    if check and result.exit_code != 0:
        raise CommandFailed(
            f"command {' '.join(result.command)!r} exited with {result.exit_code}",
            context={
                "command": list(result.command),
                "exit_code": result.exit_code,
                "stderr_tail": result.stderr[-2000:],
                "stdout_tail": result.stdout[-2000:],
            },
        )
    return result


async def _execute(ticket: _Ticket, argv: tuple[str, ...]) -> CommandResult:
    clock = current_runtime().clock
    started = clock.now()
    code, out, err = await run_group(
        ticket.path, argv, timeout=ticket.timeout, max_output=ticket.max_output
    )
    return CommandResult(
        command=argv,
        exit_code=code,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        duration=clock.now() - started,
    )
