"""``foundation.run``: a fresh event loop, a Runtime that stops in order on SIGINT/SIGTERM, and
the program's main coroutine or root supervision tree under it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from foundation.errors import InvalidArgument
from foundation.kernel.runtime import Runtime

if TYPE_CHECKING:
    from foundation.kernel.child_spec import ChildSpec

__all__ = ["run"]

T = TypeVar("T")


async def _run_main(rt: Runtime, main: Any) -> Any:
    if isinstance(main, Sequence) and not isinstance(main, str):
        from foundation.kernel.supervisor import Supervisor

        children: list[ChildSpec] = list(main)
        root = await Supervisor.start_link(children, strategy="one_for_one")
        root_proc = root._proc
        assert root_proc is not None
        stopped = asyncio.ensure_future(rt.wait_stopped())
        try:
            await asyncio.wait({stopped, root_proc.exit_future()}, return_when="FIRST_COMPLETED")
        finally:
            stopped.cancel()
        return None
    if asyncio.iscoroutine(main):
        return await main
    if callable(main):
        result = main()
        if asyncio.iscoroutine(result):
            return await result
        return result
    raise InvalidArgument(
        f"run() takes a coroutine, an async function or a list of child specs, not {main!r}"
    )


def run(
    main: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]] | Iterable[ChildSpec],
    *,
    use_uvloop: bool = False,
    **options: Any,
) -> T | None:
    """Run ``main`` on a fresh event loop under a Runtime that stops in order on SIGINT/SIGTERM.

    ``main`` is a coroutine, an async function, or a list of child specs (started under a root
    one_for_one supervisor that runs until a signal or ``request_stop``).
    """
    options.setdefault("handle_signals", True)

    async def amain() -> Any:
        rt = Runtime(**options)
        try:
            async with rt:
                return await _run_main(rt, main)
        except asyncio.CancelledError:
            if rt.stop_signal is None:
                raise
            return None

    if use_uvloop:
        import uvloop

        return uvloop.run(amain())  # type: ignore[no-any-return]
    return asyncio.run(amain())  # type: ignore[no-any-return]
