"""Child process of the history test: list-append registers served by persistent servers.

``python _history_child.py STORE_URL INCARNATION SEED CLIENTS OPS`` runs a ``Runtime`` on the
shared store with one supervised ``Register`` (a persistent server) per key of ``KEYS``. Other
processes run servers on the same keys at the same time: the store's version check fences
them (a server whose save is stale crashes, its caller gets ``StaleVersion``, the supervisor
restarts it from the current record). ``CLIENTS`` client processes make ``OPS`` operations
each, on random keys (seeded): an append of a value unique to the whole run
(``"INCARNATION.CLIENT.N"``), answered with the list the server holds after it, or a read.

Every operation is printed as JSON lines (flushed one by one, so that a SIGKILL loses none
that was printed): ``{"type": "invoke", ...}`` before the call, then ``"ok"`` with the list,
or ``"fail"`` with the error's code when the error means "not applied" (the server's save
failed, or the server exited / was not running before taking the call), or ``"info"`` when
the outcome is unknown (a call timeout). The parent adds ``info`` for any invoke left open by
a killed process. Each line carries ``time.monotonic_ns()`` (one clock for all processes of
the machine), so the parent can order operations of different processes in real time.
Prints ``ready`` once the servers are up and ``done`` at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from pydantic import BaseModel

from foundation import Reply, Runtime, Supervisor, call, spawn
from foundation.errors import (
    CallTimeout,
    FoundationError,
    NoProcess,
    PersistenceError,
    ProcessExited,
)
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.persistence import PersistentServer

KEYS = ("hist/r0", "hist/r1", "hist/r2", "hist/r3")
NOT_APPLIED = (PersistenceError, ProcessExited, NoProcess)
"""Errors after which the call was not applied: the save failed (acknowledging nothing), or
the server exited or was not running before it took the call."""


class Register(PersistentServer):
    """``call(("append", v))`` appends v and answers the list; ``call(("read", None))`` reads."""

    class State(BaseModel):
        items: list[str] = []

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        op, value = request
        if op == "append":
            new = self.State(items=[*state.items, value])
            return Reply(list(new.items), new)
        return Reply(list(state.items), state)


def emit(event: dict[str, Any]) -> None:
    event["ts"] = time.monotonic_ns()
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(url: str, incarnation: int, seed: int, clients: int, ops: int) -> None:
    async with Runtime(store=url):
        await Supervisor.start(
            [Register.child_spec(key=key, name=key) for key in KEYS],
            max_restarts=1_000_000,
            max_seconds=1.0,
        )
        print("ready", flush=True)

        async def client(c: int) -> None:
            rng = random.Random(seed * 1000 + c)
            for n in range(ops):
                key = rng.choice(KEYS)
                f = "append" if rng.random() < 0.8 else "read"
                value = f"{incarnation}.{c}.{n}" if f == "append" else None
                op = {"p": incarnation, "c": c, "f": f, "k": key, "v": value}
                emit({**op, "type": "invoke"})
                try:
                    seen = await call(key, (f, value), timeout=10.0)
                except NOT_APPLIED as exc:
                    emit({**op, "type": "fail", "e": exc.code})
                except (CallTimeout, FoundationError) as exc:
                    emit({**op, "type": "info", "e": exc.code})
                else:
                    emit({**op, "type": "ok", "l": seen})

        pids = [spawn(client, c) for c in range(clients)]
        for pid in pids:
            await wait_exit(pid)
        print("done", flush=True)


if __name__ == "__main__":
    url, incarnation, seed, clients, ops = sys.argv[1:6]
    asyncio.run(main(url, int(incarnation), int(seed), int(clients), int(ops)))
