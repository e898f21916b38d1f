# ruff: noqa
"""FND002 safe: blocking work goes through the supervisor; look-alike names are not threads."""

import threading
from typing import Any


class Thread:
    """A chat thread, not an OS thread."""

    def __init__(self, title: str) -> None:
        self.title = title


def blocking() -> int:
    return 1


async def run(tasks: Any) -> int:
    result: int = await tasks.run_sync(blocking)
    Thread("general")
    lock = threading.Lock()
    with lock:
        return result + threading.active_count()
