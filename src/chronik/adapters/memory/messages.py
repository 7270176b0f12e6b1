"""Outbox, inbox and dead letters in memory, beside the memory event store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chronik.errors import DuplicateMessageError
from chronik.messaging.port import DeadLetter, OutboxBacklog, OutboxRow, OutboxStatus
from chronik.worker import GRANTED, REFUSED, Lease

if TYPE_CHECKING:
    from chronik.adapters.memory.database import MemoryDatabase

__all__ = ["MemoryMessageStorage", "MessageState"]


class MessageState:
    """The outbox, inbox and dead letters of a memory database."""

    def __init__(self) -> None:
        self.outbox: dict[int, list[Any]] = {}  # position -> [row, created, published]
        self.inbox: set[tuple[str, str]] = set()
        self.dead: dict[tuple[str, str], DeadLetter] = {}
        self.requested: set[tuple[str, str]] = set()
        self.relay_leader = False  # whether a relay holds this outbox


class MemoryMessageStorage:
    """Outbox, inbox and dead letters as dicts and sets, kept by the memory database."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.state = database.message_state

    async def setup(self) -> None:
        """Nothing to create."""

    async def add_outbox(self, conn: object, rows: Sequence[OutboxRow]) -> Callable[[], None]:
        def apply() -> None:
            now = datetime.now(UTC)
            for row in rows:
                self.state.outbox[row.position] = [row, now, None]

        return apply

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        waiting = [
            entry[0]
            for position, entry in sorted(self.state.outbox.items())
            if entry[2] is None and position > after
        ]
        return waiting[:limit]

    async def mark_published(self, positions: Sequence[int]) -> None:
        now = datetime.now(UTC)
        for position in positions:
            self.state.outbox[position][2] = now

    async def outbox_status(self) -> OutboxStatus:
        pending = [e for e in self.state.outbox.values() if e[2] is None]
        oldest = min((e[1] for e in pending), default=None)
        return OutboxStatus(len(pending), oldest, len(self.state.outbox) - len(pending))

    async def outbox_backlog(self) -> OutboxBacklog:
        status = await self.outbox_status()
        return OutboxBacklog(status.pending, status.oldest_pending)

    async def purge_published(self, older_than_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        old = [p for p, e in self.state.outbox.items() if e[2] is not None and e[2] < cutoff]
        for position in old:
            del self.state.outbox[position]
        return len(old)

    @contextlib.asynccontextmanager
    async def relay_leadership(self) -> AsyncIterator[bool]:
        # Two relays of one outbox would interleave a stream's messages: one at a time.
        if self.state.relay_leader:
            yield False
            return
        self.state.relay_leader = True
        try:
            yield True
        finally:
            self.state.relay_leader = False

    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Lease]:
        """The named lease: ``relay`` as above; any other is granted (one process owns
        the memory)."""
        if name != "relay":
            yield GRANTED
            return
        async with self.relay_leadership() as leading:
            yield GRANTED if leading else REFUSED

    async def mark_handled(
        self, conn: object, consumer: str, message_id: str
    ) -> Callable[[], None]:
        key = (consumer, message_id)
        if key in self.state.inbox:
            raise DuplicateMessageError(f"{consumer} already handled {message_id}")

        def apply() -> None:
            self.state.inbox.add(key)

        return apply

    async def handled(self, consumer: str, message_id: str) -> bool:
        return (consumer, message_id) in self.state.inbox

    async def handled_among(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        return {m for m in message_ids if (consumer, m) in self.state.inbox}

    async def record_handled(self, consumer: str, message_id: str) -> bool:
        key = (consumer, message_id)
        if key in self.state.inbox:
            return False
        self.state.inbox.add(key)
        return True

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        key = (letter.consumer, letter.message_id)
        self.state.dead[key] = letter
        self.state.requested.discard(key)  # a new failure: asked for again once fixed
        self.state.inbox.add(key)

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetter]:
        letters = [d for d in self.state.dead.values() if consumer in (None, d.consumer)]
        return sorted(letters, key=lambda d: d.dead_at)

    async def request_redelivery(self, consumer: str, message_id: str) -> bool:
        if (consumer, message_id) not in self.state.dead:
            return False
        self.state.requested.add((consumer, message_id))
        return True

    async def requested_redeliveries(self, consumer: str) -> list[str]:
        letters = [self.state.dead[k] for k in self.state.requested if k[0] == consumer]
        return [d.message_id for d in sorted(letters, key=lambda d: d.dead_at)]

    async def remove_dead_letter(self, consumer: str, message_id: str) -> None:
        self.state.requested.discard((consumer, message_id))
        self.state.dead.pop((consumer, message_id), None)
        self.state.inbox.discard((consumer, message_id))
