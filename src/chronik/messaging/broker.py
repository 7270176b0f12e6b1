"""The broker port: publish messages between contexts, deliver them to consumers.

Adapters: ``memory://`` (in-process, embedded mode), ``nats://`` (JetStream) and
``amqp://`` (RabbitMQ). Every adapter delivers at least once, in publish order per
consumer; a handler that raises has its message delivered again later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

__all__ = ["Broker", "Delivery", "MessageHandler", "OutgoingMessage", "Subscription", "subject_of"]


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


MessageHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None: ...


class Broker(Protocol):
    """Publishes and delivers messages; one adapter per technology."""

    @property
    def connected(self) -> bool:
        """Whether the broker answers now (for readiness)."""
        ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        """Publish in order, pipelined; for each message None once acked, or the error."""
        ...

    async def subscribe(
        self, consumer: str, types: Sequence[str], handler: MessageHandler
    ) -> Subscription:
        """Deliver messages of ``types`` to ``handler``, one at a time, under a durable name."""
        ...


def subject_of(type_name: str) -> str:
    """The NATS subject (or AMQP routing key) of a public event type."""
    return f"chronik.{type_name}"
