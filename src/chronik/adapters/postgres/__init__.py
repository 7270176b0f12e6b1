"""PostgreSQL (psycopg 3, async, with a connection pool), one schema per database.

``database.py`` owns the pool, the schema's migrations (``schema.py``) and the
notifications between processes, and hands out the event store (``eventstore.py``,
reads; ``append.py``, the append path), the outbox, inbox and dead letters
(``messages.py``) and the read models (``readmodels.py``). This module reads the URL
only: checking one needs no driver installed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from chronik._extras import needing
from chronik.adapters.port import Database, DatabaseOpener
from chronik.adapters.url import number, query_options, redact
from chronik.errors import ConfigurationError

__all__ = ["opener"]

_OPTIONS = {"schema", "pool_min", "pool_max", "connect_timeout", "writers"}


def opener(url: str) -> DatabaseOpener:
    """How to open ``postgresql://user:password@host:port/database``.

    Options ``schema=NAME`` (default ``public``), ``pool_min``, ``pool_max``,
    ``connect_timeout``, ``writers`` (the event store's writer connections, 4); other
    query parameters go to libpq (``sslmode=require``, say).
    """
    options, conninfo = query_options(url, _OPTIONS, passthrough=True)
    parts = urlsplit(conninfo)
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"postgresql URL {redact(url)!r} has an invalid port") from None
    if not parts.hostname and not parts.path.strip("/"):
        raise ConfigurationError(f"postgresql URL {redact(url)!r} names no host or database")
    del port
    schema = options.get("schema", "public")
    pool_min = int(number(options, "pool_min", 1, int))
    pool_max = int(number(options, "pool_max", 10, int))
    connect_timeout = number(options, "connect_timeout", 10.0, float)
    writers = int(number(options, "writers", 4, int))

    async def open_postgres(create: bool, migrate: bool) -> Database:
        with needing("postgres", "postgresql://"):
            from chronik.adapters.postgres.database import PostgresDatabase
        return await PostgresDatabase.open(
            conninfo,
            schema=schema,
            pool_min=pool_min,
            pool_max=pool_max,
            connect_timeout=connect_timeout,
            create=create,
            migrate=migrate,
            writers=writers,
        )

    return open_postgres
