"""open_store: a state store from a URL (``memory://``, ``sqlite:///path``, ``postgresql://``)."""

from __future__ import annotations

from foundation.errors import InvalidArgument
from foundation.persistence.memory import MemoryStore
from foundation.persistence.store import StateStore

__all__ = ["open_store"]


def open_store(url: str) -> StateStore:
    """The store a URL names; an unknown scheme is a clear ``InvalidArgument``."""
    scheme, sep, _rest = url.partition("://")
    if not sep:
        raise InvalidArgument(
            f"invalid store URL {url!r}: expected memory://, sqlite:///path or postgresql://..."
        )
    if scheme == "memory":
        return MemoryStore()
    raise InvalidArgument(
        f"unknown store URL scheme {scheme!r} in {url!r}: use memory://, sqlite:/// or postgresql://"
    )
