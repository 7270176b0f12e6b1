"""Opens a broker from a URL: memory://, nats://host:4222, amqp://user:pw@host/."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chronik.errors import ConfigurationError
from chronik.eventstore.url import redact
from chronik.messaging.broker import Broker

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "check_broker_url", "open_broker"]

#: seconds ``open_broker`` keeps trying to reach a broker that does not answer
DEFAULT_CONNECT_TIMEOUT = 30.0

_USE = "use memory://, nats://HOST:4222 or amqp://USER:PASSWORD@HOST/"


def check_broker_url(url: str) -> None:
    """Refuse a URL ``open_broker`` would refuse, without connecting (for settings)."""
    _adapter(url)


async def open_broker(url: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Broker:
    """Connect to the broker a URL names, trying for at most ``connect_timeout`` seconds.

    ``?namespace=NAME`` keeps one deployment's subjects, routing keys, durable consumers
    and queues apart from another's on the same broker (tests, or two systems).
    Raises ``ConfigurationError`` for a URL or credentials that cannot work and
    ``BrokerUnavailableError`` for a broker not reached in time; both name the URL with
    its password hidden.
    """
    broker = _adapter(url)(connect_timeout)
    await broker.connect()
    return broker


def _adapter(url: str) -> Callable[[float], Broker]:
    """The adapter the URL names, to be made with a connect timeout; nothing opened yet."""
    scheme = url.split("://", 1)[0].lower() if isinstance(url, str) and "://" in url else ""
    if not scheme:
        raise ConfigurationError(f"broker URL {redact(str(url))!r} is not a URL: {_USE}")
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    namespace = options.pop("namespace", "")
    if namespace and not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", namespace):
        raise ConfigurationError(
            f"broker URL namespace {namespace!r}: use lowercase letters, digits and '_'"
        )
    bare = urlunsplit(parts._replace(query=urlencode(options)))
    if scheme == "memory":

        def memory(connect_timeout: float) -> Broker:
            from chronik.messaging.memory import MemoryBroker

            return MemoryBroker()

        return memory
    if scheme in ("nats", "tls"):

        def nats(connect_timeout: float) -> Broker:
            from chronik.messaging.nats import NatsBroker

            return NatsBroker(bare, namespace=namespace, connect_timeout=connect_timeout)

        return nats
    if scheme in ("amqp", "amqps"):

        def amqp(connect_timeout: float) -> Broker:
            from chronik.messaging.rabbitmq import RabbitMQBroker

            return RabbitMQBroker(bare, namespace=namespace, connect_timeout=connect_timeout)

        return amqp
    raise ConfigurationError(f"broker URL scheme {scheme!r} is not supported: {_USE}")
