"""What the persistent-server tests share: an account that adds what it is called with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from foundation import Reply
from foundation.kernel.process import From
from foundation.persistence import PersistentServer


class Account(PersistentServer):
    """``call(n)`` adds n and answers the balance; ``call("get")`` reads; ``cast(n)`` adds."""

    class State(BaseModel):
        balance: int = 0
        history: list[int] = []

    async def handle_call(self, request: Any, caller: From, state: State) -> Any:
        if request == "get":
            return Reply(state.balance, state)
        new = state.model_copy(
            update={"balance": state.balance + request, "history": [*state.history, request]}
        )
        return Reply(new.balance, new)

    async def handle_cast(self, request: Any, state: State) -> Any:
        return state.model_copy(update={"balance": state.balance + request})
