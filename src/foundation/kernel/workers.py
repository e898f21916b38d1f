"""ThreadWorker: one kernel-owned thread for a component that must keep one (a database
connection); jobs run one at a time, in submission order, and the runtime closes it at
shutdown after the jobs in flight. ``Runtime.worker(name)`` gives them out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from foundation.errors import InvalidArgument

if TYPE_CHECKING:
    from foundation.kernel.runtime import Runtime

__all__ = ["ThreadWorker"]

T = TypeVar("T")


class ThreadWorker:
    """One kernel-owned thread; ``await worker.run(fn, *args)`` runs jobs in order on it."""

    def __init__(self, rt: Runtime, name: str) -> None:
        self.name = name
        self._rt = rt
        self._executor: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"foundation-{name}")
        )
        self._pending: set[asyncio.Future[Any]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker's thread; the loop keeps serving meanwhile."""
        return await asyncio.shield(self.submit(fn, *args))

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)`` on the worker's thread; a future of its result, owned by the
        worker (shutdown waits for it). The clock counts it as external work until it ends."""
        if self._executor is None:
            raise InvalidArgument(f"worker thread {self.name!r} is closed")
        rt = self._rt
        external = rt.clock.external()
        external.__enter__()
        try:
            fut = rt.loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except BaseException:  # not submitted (a closed executor): nothing runs outside
            external.__exit__(None, None, None)
            raise
        self._pending.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(f)
            external.__exit__(None, None, None)

        fut.add_done_callback(done)
        return fut

    async def close(self) -> None:
        """Wait for the jobs in flight, then stop the thread."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
