"""A tiny supervision tree for ``foundation run examples.counter_tree:children``."""

from __future__ import annotations

from typing import Any

from foundation import GenServer, Reply


class Counter(GenServer):
    """Counts casts; answers ``get``."""

    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: Any, caller: Any, state: int) -> Any:
        return Reply(state, state)

    async def handle_cast(self, request: int, state: int) -> int:
        return state + request


children = [Counter.child_spec(0, name="counter")]
