"""open_store: a state store from a URL.

``memory://``; ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the path is
what follows the third slash, as in SQLAlchemy), with ``?synchronous=normal|full``;
``postgresql://user@host:port/db`` (or ``postgres://``), with ``?table=name`` (default
``foundation_state``); other query parameters go to the driver.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from foundation.errors import InvalidArgument
from foundation.persistence.memory import MemoryStore
from foundation.persistence.sqlite import SQLiteStore
from foundation.persistence.store import StateStore

__all__ = ["open_store"]


def open_store(url: str) -> StateStore:
    """The store a URL names; an unknown scheme or option is a clear ``InvalidArgument``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidArgument(
            f"invalid store URL {url!r}: expected memory://, sqlite:///path or postgresql://..."
        )
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise InvalidArgument(f"invalid SQLite URL {url!r}: expected sqlite:///path/to/file.db")
        options = dict(parse_qsl(query))
        synchronous = options.pop("synchronous", "normal")
        if options:
            raise InvalidArgument(f"unknown SQLite URL options {sorted(options)} in {url!r}")
        return SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    if scheme in ("postgresql", "postgres"):
        from foundation.persistence.postgres import PostgresStore

        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        table = options.pop("table", "foundation_state")
        dsn = urlunsplit(parts._replace(query=urlencode(options)))
        return PostgresStore(dsn, table=table)
    raise InvalidArgument(
        f"unknown store URL scheme {scheme!r} in {url!r}: use memory://, sqlite:/// or postgresql://"
    )
