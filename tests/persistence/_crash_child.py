"""Child process of the crash tests: acknowledged calls to persistent servers, printed as acked.

``python _crash_child.py STORE_URL calls`` starts 8 persistent counters on the store (each comes
back with its stored state) and has each add 1 in a loop; ``... saves`` has 8 writers save
counters straight to the store instead (load, then save after save with the version each
returned). Either way it prints ``key value`` after each acknowledgement, until the parent
SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pydantic import BaseModel

from foundation import Reply, Runtime, call, spawn
from foundation.kernel.api import wait_exit
from foundation.kernel.process import From
from foundation.persistence import PersistentServer


class Counter(PersistentServer):
    class State(BaseModel):
        count: int = 0
        check: int = 0  # always 7 * count: a torn write would break it

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        n = state.count + 1
        return Reply(n, self.State(count=n, check=7 * n))


async def main(url: str, mode: str) -> None:
    async with Runtime(store=url) as rt:
        keys = [f"crash/c{i}" for i in range(8)]
        if mode == "calls":
            for key in keys:
                await Counter.start(key=key, name=key)

        async def client(key: str) -> None:
            while True:
                value = await call(key, "add")
                sys.stdout.write(f"{key} {value}\n")
                sys.stdout.flush()

        async def saver(key: str) -> None:
            stored = await rt.store.load(key)
            n, version = (stored.data["count"], stored.version) if stored else (0, None)
            while True:
                n += 1
                version = await rt.store.save(key, {"count": n, "check": 7 * n}, version)
                sys.stdout.write(f"{key} {n}\n")
                sys.stdout.flush()

        print("ready", flush=True)
        pids = [spawn(client if mode == "calls" else saver, key) for key in keys]
        for pid in pids:
            await wait_exit(pid)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
