"""Opens a broker from a URL: memory://, nats://host:4222, amqp://user:pw@host/."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chronik.errors import ConfigurationError
from chronik.messaging.broker import Broker

__all__ = ["open_broker"]


async def open_broker(url: str) -> Broker:
    """Connect to the broker a URL names.

    ``?namespace=NAME`` keeps one deployment's subjects, routing keys, durable consumers
    and queues apart from another's on the same broker (tests, or two systems).
    """
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    parts = urlsplit(url) if scheme else None
    options = dict(parse_qsl(parts.query)) if parts else {}
    namespace = options.pop("namespace", "")
    if namespace and not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", namespace):
        raise ConfigurationError(
            f"broker URL namespace {namespace!r}: use lowercase letters, digits and '_'"
        )
    bare = urlunsplit(parts._replace(query=urlencode(options))) if parts else url
    broker: Broker
    if scheme == "memory":
        from chronik.messaging.memory import MemoryBroker

        broker = MemoryBroker()
    elif scheme in ("nats", "tls"):
        from chronik.messaging.nats import NatsBroker

        broker = NatsBroker(bare, namespace=namespace)
    elif scheme in ("amqp", "amqps"):
        from chronik.messaging.rabbitmq import RabbitMQBroker

        broker = RabbitMQBroker(bare, namespace=namespace)
    else:
        raise ConfigurationError(
            f"broker URL {url!r} is not supported: use memory://, nats://HOST:4222 or "
            "amqp://USER:PASSWORD@HOST/"
        )
    await broker.connect()
    return broker
