# ruff: noqa
"""FND008 safe: telemetry handlers only record; completion is awaited on the operation."""

import asyncio
from typing import Any

telemetry: Any = None


async def observes(job: Any) -> None:
    seen: list[Any] = []
    counts = {"stop": 0}

    def count(*args: Any) -> None:
        counts["stop"] += 1

    telemetry.attach("record", ["job", "stop"], lambda *a: seen.append(a))
    telemetry.attach_many("count", [["job", "stop"]], count, None)
    await job.result()


async def waits_on_the_operation(job: Any) -> None:
    done = asyncio.Event()
    job.on_done(done.set)
    await done.wait()
