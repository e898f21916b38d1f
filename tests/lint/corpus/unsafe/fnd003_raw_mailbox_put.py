# ruff: noqa
"""FND003: messages put straight into another process's mailbox."""

from typing import Any


def poke(pid: Any, proc: Any, msg: object) -> None:
    proc.mailbox.append(msg)  # expect: FND003
    proc.mailbox.appendleft(msg)  # expect: FND003
    proc.mailbox.extend([msg])  # expect: FND003
    proc.mailbox.insert(0, msg)  # expect: FND003
    pid.process.mailbox.put_nowait(msg)  # expect: FND003
    proc.deliver(msg)  # expect: FND003
    proc.deliver_system(msg)  # expect: FND003
    if pid._proc is not None:  # expect: FND003
        pass


class Agent:
    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def nudge(self, msg: object) -> None:
        self.peer._proc.state = msg  # expect: FND003
