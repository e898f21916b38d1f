"""Actions: an agent's named operations, each with a pydantic model for its parameters.

``@action`` marks ``async def name(self, params: Model, state: State) -> tuple[result, State]``;
the parameter model is read from the ``params`` annotation (or given as ``@action(params=M)``),
so every request is validated before the action runs and a bad one is a clear
``ValidationError`` naming its fields.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from foundation.errors import InvalidArgument, ValidationError

__all__ = ["ActionSpec", "action", "collect_actions", "validation_error"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
_MARK = "__foundation_action__"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action: its name, parameter model and the method that runs it."""

    name: str
    params: type[BaseModel]
    fn: Callable[..., Awaitable[Any]]
    description: str
    takes_params: bool


class _NoParams(BaseModel):
    """The parameter model of an action that takes none."""


@overload
def action(fn: F, /) -> F: ...


@overload
def action(
    *, name: str | None = None, params: type[BaseModel] | None = None
) -> Callable[[F], F]: ...


def action(
    fn: F | None = None, /, *, name: str | None = None, params: type[BaseModel] | None = None
) -> Any:
    """Mark an agent method as an action (``@action`` or ``@action(name=..., params=...)``)."""

    def mark(f: F) -> F:
        is_async = inspect.iscoroutinefunction(f)
        if not is_async:
            raise InvalidArgument(f"action {f.__qualname__} must be an async def")
        setattr(f, _MARK, (name or f.__name__, params))
        return f

    return mark(fn) if fn is not None else mark


def collect_actions(cls: type) -> dict[str, ActionSpec]:
    """Every action of ``cls`` and its bases, by name (a subclass's action wins)."""
    found: dict[str, ActionSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, fn in list(vars(klass).items()):
            mark = getattr(fn, _MARK, None)
            if mark is None:
                continue
            name, model = mark
            found[name] = ActionSpec(
                name=name,
                params=model or _params_model(cls, fn, attr),
                fn=fn,
                description=(inspect.getdoc(fn) or "").split("\n", 1)[0],
                takes_params="params" in inspect.signature(fn).parameters,
            )
    return found


def _params_model(cls: type, fn: Callable[..., Any], attr: str) -> type[BaseModel]:
    sig = inspect.signature(fn)
    if "params" not in sig.parameters:
        return _NoParams
    try:
        hints = typing.get_type_hints(fn, localns={k: getattr(cls, k) for k in dir(cls)})
    except Exception as exc:  # an unresolvable annotation is a definition error, said clearly
        raise InvalidArgument(
            f"action {cls.__name__}.{attr}: cannot resolve the type of `params` ({exc}); "
            "give it with @action(params=Model)"
        ) from exc
    model = hints.get("params")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise InvalidArgument(
            f"action {cls.__name__}.{attr}: `params` must be annotated with a pydantic model "
            f"(got {model!r}), or give one with @action(params=Model)"
        )
    return model


def validation_error(where: str, exc: PydanticValidationError) -> ValidationError:
    """A FoundationError naming each bad field of a pydantic validation failure."""
    errors = [
        {
            "field": ".".join(str(p) for p in e["loc"]) or "<root>",
            "message": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors()
    ]
    fields = ", ".join(f"{e['field']} ({e['message']})" for e in errors)
    return ValidationError(f"invalid {where}: {fields}", errors=errors)
