"""Between bounded contexts: published language, outbox, relay, brokers, consumers."""

from chronik.messaging.admin import MessagingAdmin, Redelivery, RedeliveryOutcome
from chronik.messaging.consumer import Consumer, MessageContext
from chronik.messaging.contracts import (
    PublicSpec,
    PublishedLanguage,
    constraint,
    public,
    public_spec,
)
from chronik.messaging.envelope import Envelope
from chronik.messaging.outbox import Outbox, Translate
from chronik.messaging.port import (
    Broker,
    DeadLetter,
    Delivery,
    MessageHandler,
    MessageStorage,
    OutboxBacklog,
    OutboxRow,
    OutboxStatus,
    OutgoingMessage,
    Subscription,
)
from chronik.messaging.relay import Relay, RelayStatus

__all__ = [
    "Broker",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Envelope",
    "MessageContext",
    "MessageHandler",
    "MessageStorage",
    "MessagingAdmin",
    "Outbox",
    "OutboxBacklog",
    "OutboxRow",
    "OutboxStatus",
    "OutgoingMessage",
    "PublicSpec",
    "PublishedLanguage",
    "Redelivery",
    "RedeliveryOutcome",
    "Relay",
    "RelayStatus",
    "Subscription",
    "Translate",
    "constraint",
    "public",
    "public_spec",
]
