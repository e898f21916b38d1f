"""Trees for ``foundation run`` in the CLI tests: each stops the run itself once it has worked.

``persistent_tree`` starts a PersistentServer (which needs the runtime's state store), adds 5 to
its count and asks the runtime to stop; ``plain_tree`` does the same with a plain GenServer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from foundation import ChildSpec, GenServer, Pid, Reply, call, spawn_link
from foundation.kernel.context import current_runtime
from foundation.kernel.process import From
from foundation.persistence import PersistentServer

__all__ = ["Counter", "Tally", "persistent_tree", "plain_tree"]


class Tally(PersistentServer):
    """A durable count: a call adds to it and answers the new count."""

    class State(BaseModel):
        count: int = 0

    async def handle_call(self, request: int, caller: From, state: State) -> Any:
        new = state.model_copy(update={"count": state.count + request})
        return Reply(new.count, new)


class Counter(GenServer):
    """The same count, kept in memory only."""

    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: int, caller: From, state: int) -> Any:
        return Reply(state + request, state + request)


def _add_then_stop(name: str) -> ChildSpec:
    async def work() -> None:
        await call(name, 5)
        current_runtime().request_stop("done")

    async def start() -> Pid:
        return spawn_link(work)

    return ChildSpec(id="add-then-stop", start=start, restart="temporary")


def persistent_tree() -> list[ChildSpec]:
    return [Tally.child_spec(key="cli/tally", name="tally"), _add_then_stop("tally")]


def plain_tree() -> list[ChildSpec]:
    return [Counter.child_spec(0, name="counter"), _add_then_stop("counter")]
