"""In memory: for tests and throwaway runs; nothing survives the process.

``memory://`` opens a new, empty database (``database.py``); its event store, message
storage and read models keep their state in it. The in-process broker is ``broker.py``.
"""

from __future__ import annotations

from chronik.adapters.port import Database, DatabaseOpener
from chronik.adapters.url import redact
from chronik.errors import ConfigurationError, StoreNotFoundError

__all__ = ["opener"]


def opener(url: str) -> DatabaseOpener:
    """How to open ``memory://`` (it takes no path and no option)."""
    if url.split("://", 1)[1] not in ("", "/"):
        raise ConfigurationError(f"event store URL {redact(url)!r}: memory:// takes no path")
    return _open


async def _open(create: bool, migrate: bool) -> Database:
    del migrate  # nothing to migrate: a memory database is made whole, and dies with us
    from chronik.adapters.memory.database import MemoryDatabase

    if not create:
        raise StoreNotFoundError(
            "memory:// keeps its events in the process that wrote them: there is no "
            "store here to read"
        )
    return MemoryDatabase()
