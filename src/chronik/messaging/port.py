"""The ports of messaging: the broker between contexts, the message storage beside the events.

**Broker**: publishes messages between contexts and delivers them to consumers.
Adapters: ``memory://`` (in-process, embedded mode), ``nats://`` (JetStream) and
``amqp://`` (RabbitMQ). Every adapter delivers at least once, in publish order per
source stream and consumer (streams side by side in per-stream lanes, see
``chronik.messaging.lanes``); a handler that raises has its message delivered again
later, before the later messages of its stream.

``connect`` keeps trying for the adapter's connect timeout, then raises
``BrokerUnavailableError``; a broker that answers and refuses (a wrong password) raises
``ConfigurationError`` at once. Once connected, an adapter reconnects on its own for as
long as it takes and says why it is not connected meanwhile (``problem``, for readiness).

**MessageStorage**: the outbox, the inbox and the dead letters, in the database of the
events (each database adapter has one, handed out by its database object). Outbox rows
and inbox marks are written by append hooks, inside the append's transaction.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import msgspec

from chronik.worker import Lease

__all__ = [
    "Broker",
    "DeadLetter",
    "Delivery",
    "MessageHandler",
    "MessageStorage",
    "OutboxBacklog",
    "OutboxRow",
    "OutboxStatus",
    "OutgoingMessage",
    "Subscription",
    "connection_cause",
    "subject_of",
]


class OutgoingMessage(msgspec.Struct, frozen=True, gc=False):
    """A message for the broker: ``id`` is the event id (the deduplication key)."""

    id: str
    type: str  # the public event type; the subject or routing key derives from it
    key: str  # the partition key: the source stream id
    body: bytes


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """A message as a consumer receives it."""

    id: str
    type: str
    body: bytes
    attempt: int  # 1 on first delivery, when the broker says


#: what a subscription hands each delivery to
MessageHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    """A consumer's subscription to a broker, as ``Broker.subscribe`` returns it."""

    async def stop(self) -> None:
        """Deliver no more messages to its handler."""
        ...


class Broker(Protocol):
    """Publishes and delivers messages; one adapter per technology."""

    @property
    def problem(self) -> str | None:
        """Why the broker cannot be used now, in a few words (for readiness); None if it can."""
        ...

    async def connect(self) -> None:
        """Connect within the adapter's connect timeout, or raise (see the module's docstring)."""
        ...

    async def close(self) -> None: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        """Publish in order, pipelined; for each message None once acked, or the error."""
        ...

    async def subscribe(
        self,
        consumer: str,
        types: Sequence[str],
        handler: MessageHandler,
        *,
        lanes: int = 1,
        batch: int | None = None,
    ) -> Subscription:
        """Deliver messages of ``types`` to ``handler`` under a durable name.

        Messages of one source stream (the envelope's ``subject``) reach the handler one
        at a time, in publish order; those of different streams run in up to ``lanes``
        concurrent lanes (``chronik.messaging.lanes``). ``batch`` (adapter default if
        None) is how many are fetched at once; at most ``2 * batch`` are held unacked.
        """
        ...


class OutboxRow(msgspec.Struct, frozen=True, gc=False):
    """A message in the outbox, written in the transaction of the event it publishes."""

    position: int  # the event's global position: the order of the outbox
    message_id: str
    stream_id: str
    type: str
    body: bytes


class OutboxStatus(msgspec.Struct, frozen=True):
    """The outbox's backlog: messages waiting, the oldest one's time, messages published."""

    pending: int
    oldest_pending: datetime | None
    published: int


class OutboxBacklog(msgspec.Struct, frozen=True):
    """The messages waiting for the relay and the oldest one's time, read on the
    pending rows' index alone (``OutboxStatus`` also counts every published row)."""

    pending: int
    oldest_pending: datetime | None


class DeadLetter(msgspec.Struct, frozen=True):
    """A message a consumer gave up on, with the last error and how often it tried."""

    consumer: str
    message_id: str
    type: str
    body: bytes
    error: str
    attempts: int
    dead_at: datetime


class MessageStorage(Protocol):
    """A database's outbox, inbox and dead letters (its database object hands it out)."""

    async def setup(self) -> None:
        """Create or migrate its tables."""
        ...

    # -- outbox --
    async def add_outbox(self, conn: Any, rows: Sequence[OutboxRow]) -> Callable[[], None] | None:
        """Write outbox rows on the append's connection (memory: apply when called back)."""
        ...

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        """Unpublished rows past position ``after``, oldest position first."""
        ...

    async def mark_published(self, positions: Sequence[int]) -> None: ...

    async def outbox_status(self) -> OutboxStatus: ...

    async def outbox_backlog(self) -> OutboxBacklog:
        """What waits for the relay, without counting the published rows (a page view)."""
        ...

    async def purge_published(self, older_than_seconds: float) -> int: ...

    def relay_leadership(self) -> AbstractAsyncContextManager[bool]:
        """Hold the right to relay this database's outbox; yields False if another has it."""
        ...

    def lease(self, name: str) -> AbstractAsyncContextManager[Lease]:
        """Contend for the named lease of a worker: ``relay`` (the same as
        ``relay_leadership``) or ``consumer:NAME``; see ``chronik.worker``."""
        ...

    # -- inbox --
    async def mark_handled(
        self, conn: Any, consumer: str, message_id: str
    ) -> Callable[[], None] | None:
        """On the append's connection: DuplicateMessageError if already handled."""
        ...

    async def handled(self, consumer: str, message_id: str) -> bool: ...

    async def handled_among(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` are handled, in one query (a consumer checks many at once)."""
        ...

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


def subject_of(type_name: str) -> str:
    """The NATS subject (or AMQP routing key) of a public event type."""
    return f"chronik.{type_name}"


_DNS_ERRORS = frozenset(
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA")
    if hasattr(socket, name)
)


def connection_cause(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words: the adapters' shared vocabulary."""
    if isinstance(exc, OSError):
        if isinstance(exc, socket.gaierror) or exc.errno in _DNS_ERRORS:
            return f"host not found (DNS: {exc.strerror or exc})"
        if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(exc, TimeoutError):
            return "no answer in time"
        if exc.strerror:
            return " ".join(exc.strerror.split())
    return " ".join(str(exc).split()) or type(exc).__name__
