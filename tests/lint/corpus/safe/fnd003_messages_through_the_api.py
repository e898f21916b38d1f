# ruff: noqa
"""FND003 safe: messages go through send/cast/call; own private attributes are fine."""

from typing import Any


async def talk(api: Any, pid: Any, msg: object) -> int:
    api.send(pid, msg)
    api.cast(pid, msg)
    reply: int = await api.call(pid, msg)
    waiting = len(pid.mailbox)
    inbox: list[object] = []
    inbox.append(msg)
    return reply + waiting + int(api.is_alive(pid))


class Command:
    def __init__(self, proc: Any) -> None:
        self._proc = proc

    def pid(self) -> int:
        return int(self._proc.pid)
