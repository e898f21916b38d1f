"""How a persistent server's handlers are wrapped: the state a handler returns is durable
before its result is used (a call answered, the next message taken).

``persisting`` wraps ``handle_call``/``cast``/``info``/``continue``: in the usual case it hands
the state to the store and returns at once (the store's answer replies to the caller, a
``Handed`` call), else it awaits the save. A failed save fails the callers it held (the
handler's own and any ``reply()`` made in it) with the ``PersistenceError`` and crashes the
server. ``loading`` wraps ``init``: a key with a record is served from it; a new key's first
state is saved before ``start`` returns.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from foundation.errors import FoundationError, PersistenceError
from foundation.kernel.gen_server import answer
from foundation.kernel.messages import UNSET, Continue, Handed, NoReply, Reply, Stop
from foundation.kernel.process import From

if TYPE_CHECKING:
    from foundation.persistence.server import PersistentServer

__all__ = ["HANDLERS", "WRAPPED", "loading", "not_saved", "persisting", "state_of"]

HANDLERS = ("handle_call", "handle_cast", "handle_info", "handle_continue")
WRAPPED = "__foundation_persistent__"


def not_saved(server: PersistentServer, exc: Exception) -> PersistenceError:
    """A store's own error (not a ``FoundationError``) as the ``PersistenceError`` callers get."""
    return PersistenceError(
        f"could not save the state of {server.key!r}: {exc!r}", context={"key": server.key}
    )


def state_of(result: Any) -> Any:
    t = type(result)
    if t is Reply or t is NoReply or t is Stop or t is Continue:
        return result.state
    return result


def persisting(fn: Callable[..., Awaitable[Any]], *, with_caller: bool) -> Any:
    """Wrap a handler so that the state it returns is durable before its result is used."""

    @functools.wraps(fn)
    async def handler(self: PersistentServer, *args: Any) -> Any:
        held: list[tuple[From, Any]] = []
        outer = self._held_replies  # a subclass handler calling its base's: both are wrapped
        self._held_replies = held
        try:
            result = await fn(self, *args)
        finally:
            self._held_replies = outer
        t = type(result)
        unchanged = False
        try:
            if outer is None and self._then is not None:
                # The usual case: reply (or take the next message) once the store says the
                # save is durable, without a round trip through this handler.
                if with_caller:
                    if t is Reply and result.continue_with is UNSET:
                        if self._save_behind(result.state, held, args[1], result.value):
                            return Handed(result.state)  # the store answers the caller
                        unchanged = True  # answered below
                elif t is not Stop and t is not Continue and t is not NoReply:
                    if self._save_behind(result, held, None, None):
                        return result
                    unchanged = True
            if not unchanged and (t is not Stop or result.state is not None):
                pending = self._save_soon(state_of(result))
                if pending is not None:
                    try:
                        version = await pending
                    except FoundationError:
                        raise
                    except Exception as exc:  # a store outside this package
                        raise not_saved(self, exc) from exc
                    self._done_saving(version)
        except PersistenceError as err:
            callers = [c for c, _ in held]
            if with_caller:
                callers.append(args[1])
            for caller in callers:
                if not caller.fut.done():
                    caller.fut.set_exception(err)
            raise
        for caller, value in held:
            answer(caller, value)
        return result

    setattr(handler, WRAPPED, True)
    return handler


def loading(fn: Callable[..., Awaitable[Any]]) -> Any:
    """Wrap ``init``: serve the stored state when there is one, else save ``init``'s first."""

    @functools.wraps(fn)
    async def init(self: PersistentServer, args: Any) -> Any:
        self._bind_save()
        loaded = await self._load()
        if loaded is not None:
            if type(loaded) is not Stop:
                await self._save(state_of(loaded))  # what on_after_load changed is kept
            return loaded
        result = await fn(self, args)
        if type(result) is not Stop:
            await self._save(state_of(result))
        return result

    setattr(init, WRAPPED, True)
    return init
