"""Adapters: a database object per technology, a module per broker client, opened by URL.

A URL's scheme names its adapter in the tables below; the adapter's module is imported
only when a URL of it is opened (its driver may not be installed otherwise), never
chosen by looking at the class of an object.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chronik._extras import needing, require
from chronik.adapters.port import Database, DatabaseOpener, Migration
from chronik.adapters.url import redact, scheme_of
from chronik.errors import ConfigurationError
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.codec import EventTypes
from chronik.messaging.port import Broker

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "Database",
    "Migration",
    "check_broker_url",
    "check_database_url",
    "open_broker",
    "open_database",
    "open_event_store",
]

#: seconds ``open_broker`` keeps trying to reach a broker that does not answer
DEFAULT_CONNECT_TIMEOUT = 30.0

#: the package of each database scheme; each has ``opener(url) -> DatabaseOpener``
_DATABASES = {
    "memory": "chronik.adapters.memory",
    "sqlite": "chronik.adapters.sqlite",
    "postgresql": "chronik.adapters.postgres",
    "postgres": "chronik.adapters.postgres",
}

#: the extra each database scheme's driver comes with (the others need none)
_DATABASE_EXTRAS = {"postgresql": "postgres", "postgres": "postgres"}

#: the module of each broker scheme's client, each with ``broker(url, *, namespace, ...)``,
#: and the extra its driver comes with
_BROKERS = {
    "memory": ("chronik.adapters.memory.broker", None),
    "nats": ("chronik.adapters.nats", "nats"),
    "tls": ("chronik.adapters.nats", "nats"),
    "amqp": ("chronik.adapters.rabbitmq", "rabbitmq"),
    "amqps": ("chronik.adapters.rabbitmq", "rabbitmq"),
}

_USE = "use memory://, nats://HOST:4222 or amqp://USER:PASSWORD@HOST/"


class BrokerFactory(Protocol):
    """What each broker module offers: its broker, made and not yet connected."""

    def __call__(self, url: str, *, namespace: str, connect_timeout: float) -> Broker: ...


async def open_database(url: str, *, create: bool = True, migrate: bool = True) -> Database:
    """Open the database a URL names, creating or migrating its event tables.

    With ``migrate=False`` (``CHRONIK_AUTO_MIGRATE=false``, and ``chronik migrate
    --status``) it runs no DDL at all, now or later: it creates no file, schema or table,
    and a role's ``setup`` checks its tables instead of making them
    (MigrationsPendingError when they are missing or behind).

    With ``create=False`` (tools that read) a database that is not there is refused with
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
    return await _database(url)(create, migrate)


async def open_event_store(url: str, types: EventTypes, *, create: bool = True) -> BaseEventStore:
    """The event store of the database a URL names (see ``open_database``).

    The store owns that database: closing the store closes it. A service that needs the
    database's other roles (outbox, read models) opens the database instead.
    """
    database = await open_database(url, create=create)
    return database.event_store(types, closes_database=True)


def check_database_url(url: str) -> None:
    """Refuse a URL ``open_database`` would refuse, without opening anything (for settings).

    A URL whose driver is not installed is refused too, naming the extra to install.
    """
    _database(url)


def _database(url: str) -> DatabaseOpener:
    """How to open the database the URL names, once its form and options are checked."""
    scheme = scheme_of(url)
    if not scheme:
        raise ConfigurationError(
            f"event store URL {redact(str(url))!r} is not a URL: use memory://, sqlite:///PATH "
            "or postgresql://USER@HOST/DB"
        )
    package = _DATABASES.get(scheme)
    if package is None:
        raise ConfigurationError(
            f"event store URL scheme {scheme!r} is not supported: use memory, sqlite or postgresql"
        )
    if scheme in _DATABASE_EXTRAS:
        require(_DATABASE_EXTRAS[scheme], f"{scheme}://")
    opener: Callable[[str], DatabaseOpener] = importlib.import_module(package).opener
    return opener(url)


def check_broker_url(url: str) -> None:
    """Refuse a URL ``open_broker`` would refuse, without connecting (for settings).

    A URL whose client is not installed is refused too, naming the extra to install.
    """
    _broker(url)


async def open_broker(url: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Broker:
    """Connect to the broker a URL names, trying for at most ``connect_timeout`` seconds.

    ``?namespace=NAME`` keeps one deployment's subjects, routing keys, durable consumers
    and queues apart from another's on the same broker (tests, or two systems).
    Raises ``ConfigurationError`` for a URL or credentials that cannot work and
    ``BrokerUnavailableError`` for a broker not reached in time; both name the URL with
    its password hidden.
    """
    broker = _broker(url)(connect_timeout)
    await broker.connect()
    return broker


def _broker(url: str) -> Callable[[float], Broker]:
    """The broker the URL names, to be made with a connect timeout; nothing imported yet."""
    scheme = scheme_of(url)
    if not scheme:
        raise ConfigurationError(f"broker URL {redact(str(url))!r} is not a URL: {_USE}")
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    namespace = options.pop("namespace", "")
    if namespace and not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", namespace):
        raise ConfigurationError(
            f"broker URL namespace {namespace!r}: use lowercase letters, digits and '_'"
        )
    bare = urlunsplit(parts._replace(query=urlencode(options)))
    if scheme not in _BROKERS:
        raise ConfigurationError(f"broker URL scheme {scheme!r} is not supported: {_USE}")
    module, extra = _BROKERS[scheme]
    if extra is not None:
        require(extra, f"{scheme}://")

    def make(connect_timeout: float) -> Broker:
        if extra is None:
            factory: BrokerFactory = importlib.import_module(module).broker
        else:
            with needing(extra, f"{scheme}://"):
                factory = importlib.import_module(module).broker
        return factory(bare, namespace=namespace, connect_timeout=connect_timeout)

    return make
