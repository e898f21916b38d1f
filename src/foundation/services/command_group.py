"""One OS command as a process group of its own, run so that nothing of it outlives the run.

``run_group`` starts the command in a new session (without a shell), reads both outputs
within a byte budget, and on a timeout, an overflow or the caller's death kills the whole
group, then waits until the command is reaped *and* every process it started has exited
(watched through pidfds on Linux), closes the subprocess transport, and on Python 3.11 joins
asyncio's reaper thread. While it runs, the runtime clock counts it as outside work (a
virtual clock holds still).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from foundation.errors import CommandTimeout, OutputTooLarge
from foundation.kernel.context import current_runtime

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime

__all__ = ["run_group"]

_CHUNK = 65536


def _release(proc: asyncio.subprocess.Process) -> None:
    """Close the subprocess transport now, whatever state the run ended in.

    asyncio closes it by itself only once the process has exited *and* both pipes were read to
    the end; a run cut short (cancelled twice, output cap) would otherwise leave it to the
    garbage collector, which warns about an unclosed transport.
    """
    transport = getattr(proc, "_transport", None)  # asyncio keeps no public handle on it
    if transport is not None:
        transport.close()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        # no group (yet): the command itself, at least, must die
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _stop_reading(proc: asyncio.subprocess.Process) -> None:
    """Close our ends of the command's pipes: both readers see the end at once, whoever else
    may still hold the other ends (a grandchild, a process forked meanwhile)."""
    transport = getattr(proc, "_transport", None)  # asyncio keeps no public handle on it
    if transport is None:
        return
    for fd in (1, 2):
        pipe = transport.get_pipe_transport(fd)
        if pipe is not None:
            pipe.close()


def _reaper_thread(pid: int) -> threading.Thread | None:
    """The thread that reaps child ``pid``, if asyncio runs one (Python 3.11).

    3.11's default child watcher waits for each child in a thread of its own, which reports the
    exit and ends a moment *later*; a run joins it so that no thread outlives the run that made
    it. 3.12+ (and uvloop) watch a pidfd or SIGCHLD on the loop instead: nothing to join.
    """
    if sys.version_info >= (3, 12):
        return None
    threads = getattr(asyncio.get_child_watcher(), "_threads", None)  # no public handle on it
    return threads.get(pid) if isinstance(threads, dict) else None


def _group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that have not exited yet (read from ``/proc``; ``[]``
    where there is none)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    members = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        state, _ppid, pgrp = stat[stat.rfind(b")") + 2 :].split()[:3]  # after "(comm)"
        if int(pgrp) == pgid and state not in (b"Z", b"X"):
            members.append(int(name))
    return members


async def _group_gone(rt: Runtime, pgid: int) -> None:
    """Wait until every process of the killed group ``pgid`` has exited.

    The command's own process is reaped by asyncio, but what it started is not our child: a
    grandchild that got the SIGKILL may still be on its way out. Each is watched through a
    pidfd (Linux), which becomes readable when it exits; elsewhere there is nothing to wait on.
    """
    if not hasattr(os, "pidfd_open"):
        return
    loop = asyncio.get_running_loop()
    watched: list[tuple[int, asyncio.Future[None]]] = []
    try:
        for pid in await rt.run_in_thread(_group_members, pgid):
            try:
                fd = os.pidfd_open(pid)
                if os.getpgid(pid) != pgid:  # exited and the pid reused meanwhile
                    os.close(fd)
                    continue
            except OSError:
                continue  # exited meanwhile (or pidfds are not allowed here)
            done: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _set_done, done)
            watched.append((fd, done))
        if watched:
            await asyncio.gather(*(done for _, done in watched))
    finally:
        for fd, _ in watched:
            loop.remove_reader(fd)
            os.close(fd)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _read_capped(stream: asyncio.StreamReader, budget: list[int], on_overflow: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        budget[0] -= len(chunk)
        if budget[0] < 0:
            on_overflow()
            return b"".join(chunks)
        chunks.append(chunk)


async def run_group(
    path: str, argv: tuple[str, ...], *, timeout: float, max_output: int
) -> tuple[int, bytes, bytes]:
    """Run ``path`` with ``argv[1:]`` in a session of its own; ``(exit code, stdout, stderr)``.

    ``CommandTimeout`` after ``timeout`` runtime-clock seconds and ``OutputTooLarge`` past
    ``max_output`` bytes (both outputs together), each once the whole group was killed and
    has exited; the same clean-up happens if the caller is killed meanwhile.
    """
    rt = current_runtime()
    clock = rt.clock
    outcome: dict[str, bool] = {"timeout": False, "overflow": False}
    with clock.external():
        proc = await asyncio.create_subprocess_exec(
            path,
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        reaper = _reaper_thread(proc.pid)

        def expire() -> None:
            outcome["timeout"] = True
            _kill_group(proc)
            _stop_reading(proc)

        def overflow() -> None:
            outcome["overflow"] = True
            _kill_group(proc)
            _stop_reading(proc)

        timer = clock.call_later(timeout, expire)
        budget = [max_output]
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            out, err = await asyncio.gather(
                _read_capped(proc.stdout, budget, overflow),
                _read_capped(proc.stderr, budget, overflow),
            )
            code = await proc.wait()
        finally:
            timer.cancel()
            try:
                if proc.returncode is None:  # cancelled (the caller was killed): no leftovers
                    _kill_group(proc)
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(proc.wait())
                    await _group_gone(rt, proc.pid)
                elif outcome["timeout"] or outcome["overflow"]:
                    await _group_gone(rt, proc.pid)
            finally:
                _release(proc)
                if reaper is not None and proc.returncode is not None:
                    reaper.join()  # it reported the exit already: only its last statement is left
    if outcome["timeout"]:
        raise CommandTimeout(
            f"command {' '.join(argv)!r} did not finish within {timeout}s; killed",
            context={"command": list(argv), "timeout": timeout},
        )
    if outcome["overflow"]:
        raise OutputTooLarge(
            f"command {' '.join(argv)!r} wrote more than {max_output} bytes; killed",
            context={"command": list(argv), "max_output": max_output},
        )
    return code, out, err
