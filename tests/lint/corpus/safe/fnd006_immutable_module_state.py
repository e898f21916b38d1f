# ruff: noqa
"""FND006 safe: module-level constants are immutable or declared Final; state lives in objects."""

import contextvars
from types import MappingProxyType
from typing import Final

__all__ = ["Registry", "lookup"]

LIMITS = (1, 2, 3)
NAMES = frozenset({"a", "b"})
DEFAULTS = MappingProxyType({"timeout": 5})
ALLOWED: Final = ["ls", "cat"]
ROUTES: Final[dict[str, int]] = {"home": 1}
CURRENT: contextvars.ContextVar[int] = contextvars.ContextVar("current", default=0)
pytest_plugins = ["pytester"]


class Registry:
    entries: dict[str, int] = {}

    def __init__(self) -> None:
        self.items: list[int] = []


def lookup(key: str) -> int:
    cache: dict[str, int] = {}
    return cache.get(key, DEFAULTS["timeout"])
