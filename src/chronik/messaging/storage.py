"""Where the outbox, the inbox and dead letters live: in the database of the events.

Each event store adapter has a matching ``MessageStorage``; outbox rows and inbox
marks are written by append hooks, inside the append's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import msgspec

__all__ = [
    "DeadLetter",
    "MessageStorage",
    "OutboxRow",
    "OutboxStatus",
    "storage_for",
]


class OutboxRow(msgspec.Struct, frozen=True, gc=False):
    position: int  # the event's global position: the order of the outbox
    message_id: str
    stream_id: str
    type: str
    body: bytes


class OutboxStatus(msgspec.Struct, frozen=True):
    pending: int
    oldest_pending: datetime | None
    published: int


class DeadLetter(msgspec.Struct, frozen=True):
    consumer: str
    message_id: str
    type: str
    body: bytes
    error: str
    attempts: int
    dead_at: datetime


class MessageStorage(Protocol):
    async def setup(self) -> None: ...

    # -- outbox --
    async def add_outbox(self, conn: Any, rows: Sequence[OutboxRow]) -> Callable[[], None] | None:
        """Write outbox rows on the append's connection (memory: apply when called back)."""
        ...

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        """Unpublished rows past position ``after``, oldest position first."""
        ...

    async def mark_published(self, positions: Sequence[int]) -> None: ...

    async def outbox_status(self) -> OutboxStatus: ...

    async def purge_published(self, older_than_seconds: float) -> int: ...

    def relay_leadership(self) -> AbstractAsyncContextManager[bool]:
        """Hold the right to relay this database's outbox; yields False if another has it."""
        ...

    # -- inbox --
    async def mark_handled(
        self, conn: Any, consumer: str, message_id: str
    ) -> Callable[[], None] | None:
        """On the append's connection: DuplicateMessageError if already handled."""
        ...

    async def handled(self, consumer: str, message_id: str) -> bool: ...

    async def record_handled(self, consumer: str, message_id: str) -> bool:
        """In a transaction of its own; False if it was already recorded."""
        ...

    # -- dead letters --
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """Keep the message with its error, and count it handled (one transaction)."""
        ...

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetter]: ...

    async def request_redelivery(self, consumer: str, message_id: str) -> bool:
        """Ask the running consumer to run a dead letter again; False if there is none."""
        ...

    async def requested_redeliveries(self, consumer: str) -> list[str]: ...

    async def remove_dead_letter(self, consumer: str, message_id: str) -> None:
        """Forget the letter and its handled mark, so that redelivering it runs again."""
        ...


def storage_for(store: object) -> MessageStorage:
    """The message storage in the same database as ``store``."""
    from chronik.adapters.memory.eventstore import MemoryEventStore
    from chronik.adapters.sqlite.eventstore import SQLiteEventStore

    if isinstance(store, MemoryEventStore):
        from chronik.adapters.memory.messages import MemoryMessageStorage

        return MemoryMessageStorage(store)
    if isinstance(store, SQLiteEventStore):
        from chronik.adapters.sqlite.messages import SQLiteMessageStorage

        return SQLiteMessageStorage(store)
    from chronik.adapters.postgres.eventstore import PostgresEventStore
    from chronik.adapters.postgres.messages import PostgresMessageStorage

    if isinstance(store, PostgresEventStore):
        return PostgresMessageStorage(store)
    raise TypeError(f"no message storage for {type(store).__qualname__}")
