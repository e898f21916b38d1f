# ruff: noqa
"""FND008: telemetry handlers used to signal a waiter."""

import asyncio
from typing import Any

telemetry: Any = None


def attach(*args: Any) -> None: ...


async def waits_with_a_lambda() -> None:
    done = asyncio.Event()
    telemetry.attach("wait", ["job", "stop"], lambda *a: done.set())  # expect: FND008
    await done.wait()


async def waits_with_a_local_handler() -> None:
    finished: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_stop(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        finished.set_result(metadata)

    telemetry.attach_many("wait", [["job", "stop"]], on_stop, None)  # expect: FND008
    await finished


async def waits_with_a_queue() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def on_event(*args: Any) -> None:
        if args:
            queue.put_nowait(args)

    attach("wait", ["job", "stop"], handler=on_event)  # expect: FND008
    await queue.get()


async def waits_with_a_bound_method() -> None:
    done = asyncio.Event()
    telemetry.attach("wait", ["job", "stop"], done.set)  # expect: FND008
    await done.wait()


async def waits_with_a_semaphore() -> None:
    gate = asyncio.Semaphore(0)
    attach("wait", ["job"], lambda *a: gate.release())  # expect: FND008
    await gate.acquire()
