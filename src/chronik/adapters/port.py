"""The database port: one object per database, opened once from its URL.

Several roles live in one database and share its connection(s), its schema and its
transactions: the event store, the message storage (outbox, inbox, dead letters) and
the projection backend (read models, checkpoints, parked events). An append, its outbox
rows and its inline read-model updates commit together (guarantee 3) because one
database object hands out all three. Each technology provides one:
``chronik.adapters.{memory,sqlite,postgres}.database``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.codec import EventTypes
from chronik.messaging.port import MessageStorage
from chronik.projections.port import ProjectionBackend

__all__ = ["Database", "DatabaseOpener", "Migration"]


@dataclass(frozen=True)
class Migration:
    """One named step of a database's schema, as the SQL that applies it (for review)."""

    #: what it belongs to: ``schema`` (the migrations table), ``events``, ``read models``,
    #: ``messages``
    part: str
    name: str
    sql: str


class Database(Protocol):
    """A database and the roles it hands out; the composition root opens one per service."""

    @property
    def url(self) -> str:
        """The URL it was opened from, its password hidden: safe to show."""
        ...

    def event_store(self, types: EventTypes, *, closes_database: bool = False) -> BaseEventStore:
        """An event store in this database, reading and writing through ``types``.

        Closing it closes the database only with ``closes_database`` (the store of
        ``open_event_store`` owns its database); else the database is closed on its own,
        with the stores it handed out.
        """
        ...

    def messages(self) -> MessageStorage:
        """The outbox, inbox and dead letters of this database (the same object each time)."""
        ...

    def projections(self) -> ProjectionBackend:
        """Read models, checkpoints and parked events (the same object each time)."""
        ...

    @property
    def auto_migrate(self) -> bool:
        """Whether it may run DDL. Opened with ``migrate=False`` it runs none: a role's
        ``setup`` only checks, and a missing or older table is MigrationsPendingError."""
        ...

    def migrations(self) -> list[Migration]:
        """Every named migration of its schema, in order, rendered for this database."""
        ...

    async def applied_migrations(self) -> set[str]:
        """The names of the migrations applied (empty for a store not made yet); no DDL."""
        ...

    async def close(self) -> None:
        """Release the connections; closing again does nothing."""
        ...


#: Opens the database a URL names once the URL is checked: ``create`` or refuse a
#: database without chronik's tables (StoreNotFoundError); ``migrate`` (the second) or
#: run no DDL at all.
DatabaseOpener = Callable[[bool, bool], Awaitable[Database]]
