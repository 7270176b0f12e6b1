"""Administering messaging: the outbox's backlog, the dead letters, their redelivery.

The command line (``chronik outbox ...``, ``chronik dead-letters ...``), HTTP routes and
tests go through ``MessagingAdmin``, on the message storage of one database.
Redelivering a dead letter is a request stored beside it: the running consumer of that
name takes it (it polls for requests) and runs the letter through its handler again.
``redeliver`` returns at once with a handle that follows the request
(``Redelivery.outcome``, bound by ``asyncio.timeout``; ``check`` looks once).

The relay's and the consumers' own states (running, stopped and why) are their
workers' to report, not this module's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chronik.errors import NotFoundError
from chronik.messaging.port import DeadLetter, MessageStorage, OutboxBacklog, OutboxStatus

__all__ = ["POLL", "MessagingAdmin", "Redelivery", "RedeliveryOutcome"]

#: how often a handle reads the request again while it follows it (s)
POLL = 0.2


@dataclass(frozen=True, slots=True)
class RedeliveryOutcome:
    """What the consumer made of a dead letter it ran again."""

    consumer: str
    message_id: str
    #: the letter again, with its new error, if the handler failed again
    failed_again: DeadLetter | None

    @property
    def handled(self) -> bool:
        """The handler took the message this time: its effect is done."""
        return self.failed_again is None


class MessagingAdmin:
    """The outbox and the dead letters of one database (``Database.messages()``, set up)."""

    def __init__(self, storage: MessageStorage, *, poll: float = POLL) -> None:
        self.storage = storage
        self.poll = poll

    async def outbox_status(self) -> OutboxStatus:
        """Messages waiting for the relay, the oldest one's age, messages published."""
        return await self.storage.outbox_status()

    async def outbox_backlog(self) -> OutboxBacklog:
        """Messages waiting for the relay and the oldest one's time; unlike
        ``outbox_status`` it does not count the published rows, so it costs the backlog,
        not the outbox's size (the console reads it on every view)."""
        return await self.storage.outbox_backlog()

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetter]:
        """The messages consumers gave up on (those of ``consumer`` only, if given)."""
        return await self.storage.dead_letters(consumer)

    async def redeliver(self, consumer: str, message_id: str) -> Redelivery:
        """Ask the running consumer to handle a dead letter again (its handler fixed).

        NotFoundError if the consumer has no such dead letter.
        """
        if not await self.storage.request_redelivery(consumer, message_id):
            raise NotFoundError(f"consumer {consumer!r} has no dead letter {message_id}")
        return Redelivery(self, consumer, message_id)


class Redelivery:
    """A redelivery asked for: its outcome once the consumer took it."""

    def __init__(self, admin: MessagingAdmin, consumer: str, message_id: str) -> None:
        self._admin = admin
        self.consumer = consumer
        self.message_id = message_id

    async def outcome(self) -> RedeliveryOutcome:
        """Whether the handler took it, once the consumer ran it. It waits as long as that
        takes: bound it with ``asyncio.timeout`` (the request stays stored meanwhile)."""
        # Polled: the runner that takes it may be in another process.
        while True:
            if (outcome := await self.check()) is not None:
                return outcome
            await asyncio.sleep(self._admin.poll)

    async def check(self) -> RedeliveryOutcome | None:
        """The outcome if the consumer ran the letter by now, else None."""
        storage = self._admin.storage
        # Done once no longer asked for and counted handled again: the consumer first
        # drops the letter and its handled mark, then either handles the message or
        # buries it again, each of which marks it handled in its own transaction.
        if self.message_id in await storage.requested_redeliveries(self.consumer):
            return None
        if not await storage.handled(self.consumer, self.message_id):
            return None
        letters = await storage.dead_letters(self.consumer)
        again = [d for d in letters if d.message_id == self.message_id]
        return RedeliveryOutcome(self.consumer, self.message_id, again[0] if again else None)
