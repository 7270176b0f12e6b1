"""The broker port: publish messages between contexts, deliver them to consumers.

Adapters: ``memory://`` (in-process, embedded mode), ``nats://`` (JetStream) and
``amqp://`` (RabbitMQ). Every adapter delivers at least once, in publish order per
consumer; a handler that raises has its message delivered again later.

``connect`` keeps trying for the adapter's connect timeout, then raises
``BrokerUnavailableError``; a broker that answers and refuses (a wrong password) raises
``ConfigurationError`` at once. Once connected, an adapter reconnects on its own for as
long as it takes and says why it is not connected meanwhile (``problem``, for readiness).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

__all__ = [
    "Broker",
    "Delivery",
    "MessageHandler",
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


MessageHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None: ...


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
        self, consumer: str, types: Sequence[str], handler: MessageHandler
    ) -> Subscription:
        """Deliver messages of ``types`` to ``handler``, one at a time, under a durable name."""
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
