"""Durable state: versioned state stores and persistent servers that lose nothing acknowledged.

``StateStore`` is the contract; ``MemoryStore`` keeps it in memory (tests), ``SQLiteStore`` is
the embedded default and ``PostgresStore`` serves several machines. ``open_store(url)`` builds
one from ``memory://``, ``sqlite:///path.db`` or ``postgresql://...``.
"""

from foundation.errors import PersistenceError as PersistenceError
from foundation.errors import StaleVersion as StaleVersion
from foundation.errors import StateCorrupt as StateCorrupt
from foundation.persistence.memory import MemoryStore as MemoryStore
from foundation.persistence.postgres import PostgresStore as PostgresStore
from foundation.persistence.server import PersistentServer as PersistentServer
from foundation.persistence.sqlite import SQLiteStore as SQLiteStore
from foundation.persistence.sqlite import StoreStats as StoreStats
from foundation.persistence.store import StateStore as StateStore
from foundation.persistence.store import Stored as Stored
from foundation.persistence.urls import open_store as open_store

__all__ = [
    "MemoryStore",
    "PersistenceError",
    "PersistentServer",
    "PostgresStore",
    "SQLiteStore",
    "StaleVersion",
    "StateCorrupt",
    "StateStore",
    "StoreStats",
    "Stored",
    "open_store",
]
