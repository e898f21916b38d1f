"""The runtime: one node's process table, names, clock, timers and orderly shutdown.

``async with Runtime() as rt:`` runs inside an event loop someone else owns and never touches
global state, so several runtimes can share an OS process. ``foundation.run(main)`` owns a loop
and stops the tree in order on SIGINT/SIGTERM. On exit, top-level processes (those started
outside any process) are stopped in reverse start order, each with its shutdown timeout
(supervisors stop their own children by their specs); no process or kernel task outlives it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from foundation.errors import AlreadyStarted, InvalidArgument, format_reason
from foundation.kernel.clock import Clock, RealClock, wait_future
from foundation.kernel.context import RUNTIME
from foundation.kernel.messages import UNSET
from foundation.kernel.pid import Pid, Ref
from foundation.kernel.process import Process, ProcessInfo
from foundation.kernel.timers import CallDeadlines, TimerRef
from foundation.kernel.workers import ThreadWorker

if TYPE_CHECKING:
    pass

__all__ = ["EventHandler", "Runtime", "ThreadWorker"]

log = logging.getLogger("foundation.kernel")

T = TypeVar("T")
EventHandler = Callable[[tuple[str, ...], dict[str, Any], dict[str, Any]], None]


class Runtime:
    """One node: owns its processes, their names, the clock and an orderly shutdown."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        shutdown_timeout: float = 5.0,
        handle_signals: bool = False,
        max_threads: int = 16,
        node: str | None = None,
        store: Any = None,
    ) -> None:
        if shutdown_timeout < 0:
            raise InvalidArgument(f"invalid shutdown_timeout: {shutdown_timeout!r} (must be >= 0)")
        if max_threads < 1:
            raise InvalidArgument(f"invalid max_threads: {max_threads!r} (must be >= 1)")
        self.node = node or f"node-{uuid.uuid4().hex[:12]}"
        self.clock: Clock = clock if clock is not None else RealClock()
        self.shutdown_timeout = shutdown_timeout
        self.handle_signals = handle_signals
        self.max_threads = max_threads
        self.procs: dict[int, Process] = {}
        self.names: dict[str, Process] = {}
        self.top: dict[int, Process] = {}
        self.timers: dict[TimerRef, Any] = {}
        self.watchers: list[Callable[[], None]] = []
        self.event_handlers: list[EventHandler] = []
        self._ids = itertools.count(1)
        # Tasks of exited processes, until their coroutine returns (shutdown waits for them).
        # Pruned in bulk when the list doubles, not by a done callback per task: that callback
        # cost a loop callback on every process exit.
        self._dying: list[asyncio.Task[None]] = []
        self._dying_prune_at = 64
        self._threads: set[asyncio.Future[Any]] = set()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None
        # Both are set by start(); kernel hot paths read them as plain attributes.
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.deadlines: CallDeadlines = None  # type: ignore[assignment]
        self._token: Any = None
        self._state = "new"
        self._stop_event: asyncio.Event | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self.stop_signal: str | None = None
        self._workers: dict[str, ThreadWorker] = {}
        # Per-runtime state of higher layers (telemetry tables, service handles), by layer name:
        # the runtime, not a module global, is what owns it.
        self.extensions: dict[str, Any] = {}
        self.store: Any = _open_store(store) if isinstance(store, str) else store

    def __repr__(self) -> str:
        return f"<Runtime {self.node} {self._state} processes={len(self.procs)}>"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == "running"

    async def __aenter__(self) -> Runtime:
        self.start()
        self._token = RUNTIME.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.shutdown()
        finally:
            if self._token is not None:
                with contextlib.suppress(ValueError):
                    RUNTIME.reset(self._token)
                self._token = None

    def start(self) -> None:
        """Bind to the running loop (called by ``async with``; idempotent)."""
        if self._state != "new":
            if self._state == "running":
                return
            raise InvalidArgument(f"a runtime cannot be restarted (it is {self._state})")
        self.loop = asyncio.get_running_loop()
        self.clock.attach(self.loop)
        self.deadlines = CallDeadlines(self.clock)
        self._stop_event = asyncio.Event()
        self._main_task = asyncio.current_task()
        self._state = "running"
        attach = getattr(self.store, "attach", None)
        if attach is not None:
            attach(self)  # a store that needs kernel-owned threads takes them from its runtime
        if self.handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self.loop.add_signal_handler(sig, self._on_signal, sig.name)

    def _on_signal(self, name: str) -> None:
        log.info("runtime %s: %s received, shutting down", self.node, name)
        self.request_stop(name)

    def request_stop(self, why: str = "stop") -> None:
        """Ask the runtime's owner to shut down (what SIGINT/SIGTERM do)."""
        self.stop_signal = why
        if self._stop_event is not None:
            self._stop_event.set()
        task = self._main_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def wait_stopped(self) -> None:
        """Wait until ``request_stop`` (or a handled signal) asks the runtime to stop."""
        assert self._stop_event is not None
        await self._stop_event.wait()

    async def shutdown(self) -> None:
        """Stop every process in reverse start order, honouring shutdown timeouts; idempotent."""
        if self._state != "running":
            return
        self._state = "stopping"
        for proc in reversed(list(self.top.values())):
            await self._stop_top(proc)
        for proc in list(self.procs.values()):
            proc.kill_with("killed")
        tasks = [p.task for p in self.procs.values() if p.task is not None]
        tasks.extend(self._dying)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for proc in list(self.procs.values()):
            proc.finish("killed")  # never started: its task ended before running any code
        if self._threads:
            await asyncio.gather(*self._threads, return_exceptions=True)
        if self.store is not None and hasattr(self.store, "close"):
            closed = self.store.close()
            if asyncio.iscoroutine(closed):
                await closed
        for worker in self._workers.values():
            await worker.close()
        self._workers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._processes is not None:
            self._processes.shutdown(wait=True)
            self._processes = None
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        self.deadlines.close()
        if self.handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self.loop.remove_signal_handler(sig)
        self._state = "closed"

    async def _stop_top(self, proc: Process) -> None:
        if proc.status == "exited":
            return
        fut = proc.exit_future()
        proc.signal_exit(None, "shutdown", linked=False)
        timeout = None if proc.is_supervisor else self.shutdown_timeout
        if not await wait_future(self.clock, fut, timeout):
            log.warning("%s did not stop within %ss; killing it", proc.describe(), timeout)
            proc.kill_with("killed")
            await fut

    # -- processes ------------------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def make_ref(self) -> Ref:
        return Ref(self.node, next(self._ids))

    def spawn_process(
        self,
        body: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        *,
        behaviour: str,
        parent: Process | None,
        link: bool = False,
        name: str | None = None,
        trap_exit: bool = False,
        max_mailbox: int | None = None,
        server: Any = None,
        is_supervisor: bool = False,
    ) -> Process:
        """Create a process running ``body(*args)``; it starts on the next loop iteration."""
        if self._state != "running":
            raise InvalidArgument(f"cannot spawn: the runtime is {self._state}")
        if max_mailbox is not None and (not isinstance(max_mailbox, int) or max_mailbox < 1):
            raise InvalidArgument(f"invalid max_mailbox: {max_mailbox!r} (must be an int >= 1)")
        proc = Process(
            self,
            next(self._ids),
            behaviour=behaviour,
            trap_exit=trap_exit,
            max_mailbox=max_mailbox,
            parent=parent,
        )
        proc.server = server
        proc.is_supervisor = is_supervisor
        if name is not None:
            self.register_name(proc, name)
        self.procs[proc.pid.id] = proc
        if parent is None:
            self.top[proc.pid.id] = proc
        elif link:
            proc.link(parent)
        proc.task = self.loop.create_task(proc.main(body, args))
        if self.event_handlers:
            self.emit(("foundation", "process", "start"), {}, {"pid": proc.pid, "name": name})
        return proc

    def register_name(self, proc: Process, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"invalid process name: {name!r} (must be a non-empty str)")
        holder = self.names.get(name)
        if holder is not None:
            raise AlreadyStarted(
                f"the name {name!r} is already registered to {holder.pid!r}", pid=holder.pid
            )
        if proc.name is not None:
            raise InvalidArgument(f"{proc.pid!r} is already registered as {proc.name!r}")
        self.names[name] = proc
        proc.name = name

    def unregister_name(self, name: str) -> None:
        proc = self.names.pop(name, None)
        if proc is not None:
            proc.name = None

    def resolve(self, dest: Any) -> Process | None:
        """The live process behind a pid, a registered name or a ``("via", registry, key)``."""
        if type(dest) is Pid:
            return dest._proc
        if type(dest) is str:
            return self.names.get(dest)
        if isinstance(dest, tuple) and len(dest) == 3 and dest[0] == "via":
            from foundation.kernel.registry import whereis_via

            pid = whereis_via(self, dest[1], dest[2])
            return pid._proc if pid is not None else None
        raise InvalidArgument(
            f"not a process reference: {dest!r} (expected a Pid, a registered name "
            "or ('via', registry, key))"
        )

    def exited(self, proc: Process, reason: Any) -> None:
        """Bookkeeping after a process's exit processing (runs in its dying task)."""
        task = proc.task
        if task is not None and not task.done():
            dying = self._dying
            dying.append(task)
            if len(dying) >= self._dying_prune_at:
                dying[:] = [t for t in dying if not t.done()]
                self._dying_prune_at = max(64, 2 * len(dying))
        if isinstance(reason, BaseException) and not isinstance(reason, asyncio.CancelledError):
            state = proc.last_state
            extra = ""
            if state is not UNSET and proc.server is not None:
                try:
                    extra = f"; state: {proc.server.format_status(state)!r}"
                except Exception as exc:  # a broken format_status must not hide the crash
                    extra = f"; state unavailable (format_status raised {exc!r})"
            log.error(
                "process %s (%s) crashed: %s%s",
                proc.describe(),
                proc.behaviour,
                format_reason(reason),
                extra,
                exc_info=(type(reason), reason, reason.__traceback__),
            )
        if self.event_handlers:
            self.emit(
                ("foundation", "process", "exit"),
                {},
                {"pid": proc.pid, "name": proc.name, "reason": reason},
            )
        if self.watchers:
            self.notify_watchers()

    def notify_watchers(self) -> None:
        """Tell ``wait_until``-style watchers that the system's state may have changed."""
        for cb in list(self.watchers):
            cb()

    def emit(
        self, event: tuple[str, ...], measurements: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        """Hand a kernel event to observers (telemetry); a failing handler is detached."""
        for handler in list(self.event_handlers):
            try:
                handler(event, measurements, meta)
            except Exception:
                log.exception("event handler %r failed and was detached", handler)
                with contextlib.suppress(ValueError):
                    self.event_handlers.remove(handler)

    # -- threads --------------------------------------------------------------------------------

    async def run_in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in the bounded thread pool; shutdown waits for it."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_threads, thread_name_prefix=f"foundation-{self.node}"
            )
        return await asyncio.shield(self._external_job(self._executor, fn, args))

    def _external_job(
        self, executor: concurrent.futures.Executor, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> asyncio.Future[T]:
        """Submit ``fn(*args)`` to ``executor``; the clock counts it as external work until it
        ends (even if whoever awaits it is killed first), and shutdown waits for it."""
        external = self.clock.external()
        external.__enter__()
        try:
            fut = self.loop.run_in_executor(executor, functools.partial(fn, *args))
        except BaseException:  # not submitted (a closed executor): nothing runs outside
            external.__exit__(None, None, None)
            raise
        self._threads.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._threads.discard(f)
            external.__exit__(None, None, None)

        fut.add_done_callback(done)
        return fut

    async def run_in_process(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound ``fn(*args)`` in the runtime's process pool (``fn`` and ``args`` must be
        picklable: they cross to another OS process); shutdown waits for it."""
        if self._processes is None:
            import multiprocessing

            self._processes = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(self.max_threads, os.cpu_count() or 1),
                mp_context=multiprocessing.get_context("spawn"),
            )
        return await asyncio.shield(self._external_job(self._processes, fn, args))

    def worker(self, name: str) -> ThreadWorker:
        """A dedicated, kernel-owned thread for a component that must keep one (a database
        connection); jobs run one at a time in submission order; closed at shutdown."""
        w = self._workers.get(name)
        if w is None:
            if self._state != "running":
                raise InvalidArgument(f"cannot open a worker thread: the runtime is {self._state}")
            w = self._workers[name] = ThreadWorker(self, name)
        return w

    # -- introspection ----------------------------------------------------------------------------

    def processes(self) -> list[ProcessInfo]:
        """A snapshot of every live process, in start order."""
        return [p.info() for p in list(self.procs.values())]

    def whereis(self, name: str) -> Pid | None:
        proc = self.names.get(name)
        return proc.pid if proc is not None else None

    def is_alive(self, pid: Pid) -> bool:
        return pid._proc is not None and pid._proc.runtime is self


def _open_store(url: str) -> Any:
    # The kernel never imports a higher layer statically; a store URL is the one place where
    # the runtime hands a string to the persistence layer to build the store it names.
    import importlib

    return importlib.import_module("foundation.persistence").open_store(url)
