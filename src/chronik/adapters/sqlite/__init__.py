"""SQLite: one file in WAL mode, for the embedded mode.

``database.py`` owns the connections, the write lock, the migrations (``schema.py``) and
hands out the event store (``eventstore.py``), the outbox, inbox and dead letters
(``messages.py``) and the read models (``readmodels.py``), which share its transactions.
"""

from __future__ import annotations

from chronik.adapters.port import Database, DatabaseOpener
from chronik.adapters.url import number, query_options
from chronik.errors import ConfigurationError

__all__ = ["opener"]

_OPTIONS = {"synchronous", "lock_timeout"}


def opener(url: str) -> DatabaseOpener:
    """How to open ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

    Options: ``synchronous=full|normal`` and ``lock_timeout=SECONDS``; anything else is
    refused, as is a URL with a host part or without a file name.
    """
    options, _ = query_options(url, _OPTIONS, passthrough=False)
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"sqlite URL {url!r} has a host part; write sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ConfigurationError(f"sqlite URL {url!r} names no database file")
    synchronous = options.get("synchronous", "full")
    lock_timeout = number(options, "lock_timeout", 10.0, float)

    async def open_sqlite(create: bool, migrate: bool) -> Database:
        from chronik.adapters.sqlite.database import SQLiteDatabase

        return await SQLiteDatabase.open(
            path,
            synchronous=synchronous,
            lock_timeout=lock_timeout,
            create=create,
            migrate=migrate,
        )

    return open_sqlite
