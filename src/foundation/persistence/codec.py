"""The state codec: a persistent server's pydantic state as JSON text, and the proof that the
text loads back as the very state it came from.

JSON through pydantic (human-readable in the database, no pickle). JSON has no tuple, set,
bytes, NaN or infinity, and ``model_copy(update=...)`` validates nothing, so a state can hold
what its text will not give back; ``loads_back_unlike`` finds that before anything is saved.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

__all__ = ["loads_back_unlike", "state_json"]


def state_json(state: BaseModel, *, strict: bool = False) -> str:
    """``state.model_dump_json()`` straight from pydantic-core (without the keyword-forwarding
    wrapper); ``strict``: a value of the wrong type for its field raises
    ``PydanticSerializationError`` instead of a warning (the check left when ``loads_back_unlike``
    is skipped; it costs as much, in pydantic-core's argument handling). Compared as text."""
    serializer = state.__pydantic_serializer__
    if strict:
        return serializer.to_json(state, warnings="error").decode()
    return serializer.to_json(state, warnings=False).decode()


def loads_back_unlike(model: type[BaseModel], state: BaseModel, text: str) -> str | None:
    """Why ``text`` would not load back as ``state`` (``None``: it would, field for field)."""
    try:
        again = model.__pydantic_validator__.validate_json(text)
    except PydanticValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()]
        return f"fields {fields} would not load back (wrong type)"
    # The fields (and extras) as plain dicts: what is stored; private attributes are not.
    if again.__dict__ == state.__dict__ and again.__pydantic_extra__ == state.__pydantic_extra__:
        return None
    fields = [
        f
        for f, info in type(state).model_fields.items()
        if not info.exclude and getattr(again, f) != getattr(state, f)
    ]  # a field excluded from the JSON is not saved, so it cannot come back: not compared
    if not fields and again.__pydantic_extra__ == state.__pydantic_extra__:
        return None
    return (
        f"fields {fields or ['<extra>']} would load back different: JSON has no tuple, set, "
        "bytes or NaN (use lists, strs, numbers; or type the field so it converts)"
    )
