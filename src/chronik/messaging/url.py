"""Opens a broker from a URL: memory://, nats://host:4222, amqp://user:pw@host/."""

from __future__ import annotations

from chronik.errors import ConfigurationError
from chronik.messaging.broker import Broker

__all__ = ["open_broker"]


async def open_broker(url: str) -> Broker:
    """Connect to the broker a URL names."""
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    broker: Broker
    if scheme == "memory":
        from chronik.messaging.memory import MemoryBroker

        broker = MemoryBroker()
    elif scheme in ("nats", "tls"):
        from chronik.messaging.nats import NatsBroker

        broker = NatsBroker(url)
    elif scheme in ("amqp", "amqps"):
        from chronik.messaging.rabbitmq import RabbitMQBroker

        broker = RabbitMQBroker(url)
    else:
        raise ConfigurationError(
            f"broker URL {url!r} is not supported: use memory://, nats://HOST:4222 or "
            "amqp://USER:PASSWORD@HOST/"
        )
    await broker.connect()
    return broker
