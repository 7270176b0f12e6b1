"""Opens an event store from a URL: memory://, sqlite:///path.db, postgresql://..."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from chronik.errors import ConfigurationError, StoreNotFoundError
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.codec import EventTypes

__all__ = ["check_event_store_url", "open_event_store", "redact"]

_SQLITE_OPTIONS = {"synchronous", "lock_timeout"}
_POSTGRES_OPTIONS = {"schema", "pool_min", "pool_max", "connect_timeout"}

Opener = Callable[[EventTypes, bool], Awaitable[BaseEventStore]]


def redact(url: str) -> str:
    """The URL with its password (user-info or ``password=`` parameter) hidden: safe to show."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


async def open_event_store(url: str, types: EventTypes, *, create: bool = True) -> BaseEventStore:
    """Open the store a URL names, creating or migrating its schema.

    With ``create=False`` (tools that read) a store that is not there is refused with
    StoreNotFoundError instead of being created: a missing SQLite file, a database
    without chronik's tables, a PostgreSQL schema without them, or ``memory://`` (a new
    one is always empty).

    - ``memory://``: in the process, gone when it ends.
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's
      convention), options ``synchronous=full|normal`` and ``lock_timeout=SECONDS``.
    - ``postgresql://user:password@host:port/database``, options ``schema=NAME``
      (default ``public``), ``pool_min``, ``pool_max``, ``connect_timeout``; other
      query parameters go to libpq (``sslmode=require``, say). A server that does not
      answer is tried again until ``connect_timeout`` (10 s) has passed
      (``StoreUnavailableError``, with the cause); one that answers and refuses (a wrong
      password, a database that does not exist) is a ``ConfigurationError`` at once.
    """
    return await _opener(url)(types, create)


def check_event_store_url(url: str) -> None:
    """Refuse a URL ``open_event_store`` would refuse, without opening anything (for settings)."""
    _opener(url)


def _opener(url: str) -> Opener:
    """How to open the store the URL names, once its form and options are checked."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"event store URL {redact(str(url))!r} is not a URL: use memory://, sqlite:///PATH "
            "or postgresql://USER@HOST/DB"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        if url.split("://", 1)[1] not in ("", "/"):
            raise ConfigurationError(f"event store URL {redact(url)!r}: memory:// takes no path")
        return _open_memory
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise ConfigurationError(
        f"event store URL scheme {scheme!r} is not supported: use memory, sqlite or postgresql"
    )


def _options(url: str, allowed: set[str], *, passthrough: bool) -> tuple[dict[str, str], str]:
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key in allowed:
            ours[key] = value
        elif passthrough:
            rest.append((key, value))
        else:
            raise ConfigurationError(
                f"event store URL option {key!r} is not known; use {', '.join(sorted(allowed))}"
            )
    # %20, not '+', for a space: libpq does not read '+' as one.
    return ours, urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))


def _number(
    options: dict[str, str], key: str, default: float, kind: type[float] | type[int]
) -> float:
    raw = options.get(key)
    if raw is None:
        return default
    noun = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"event store URL option {key}={raw!r} is not {noun}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"event store URL option {key}={raw!r} must be positive and finite"
        )
    return value


async def _open_memory(types: EventTypes, create: bool) -> BaseEventStore:
    from chronik.adapters.memory.eventstore import MemoryEventStore

    if not create:
        raise StoreNotFoundError(
            "memory:// keeps its events in the process that wrote them: there is no "
            "store here to read"
        )
    return MemoryEventStore(types)


def _sqlite(url: str) -> Opener:
    options, _ = _options(url, _SQLITE_OPTIONS, passthrough=False)
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
    lock_timeout = _number(options, "lock_timeout", 10.0, float)

    async def open_sqlite(types: EventTypes, create: bool) -> BaseEventStore:
        from chronik.adapters.sqlite.eventstore import SQLiteEventStore

        return await SQLiteEventStore.open(
            path, types, synchronous=synchronous, lock_timeout=lock_timeout, create=create
        )

    return open_sqlite


def _postgres(url: str) -> Opener:
    options, conninfo = _options(url, _POSTGRES_OPTIONS, passthrough=True)
    parts = urlsplit(conninfo)
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"postgresql URL {redact(url)!r} has an invalid port") from None
    if not parts.hostname and not parts.path.strip("/"):
        raise ConfigurationError(f"postgresql URL {redact(url)!r} names no host or database")
    del port
    schema = options.get("schema", "public")
    pool_min = int(_number(options, "pool_min", 1, int))
    pool_max = int(_number(options, "pool_max", 10, int))
    connect_timeout = _number(options, "connect_timeout", 10.0, float)

    async def open_postgres(types: EventTypes, create: bool) -> BaseEventStore:
        try:
            from chronik.adapters.postgres.eventstore import PostgresEventStore
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                f"postgresql:// needs the postgres extra: pip install 'chronik[postgres]' ({exc})"
            ) from None
        return await PostgresEventStore.open(
            conninfo,
            types,
            schema=schema,
            pool_min=pool_min,
            pool_max=pool_max,
            connect_timeout=connect_timeout,
            create=create,
        )

    return open_postgres
