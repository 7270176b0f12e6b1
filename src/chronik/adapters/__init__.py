"""Adapters: a database object per technology, a module per broker client, opened by URL.

A URL's scheme names its adapter in the tables below; the adapter's module is imported
only when a URL of it is opened (its driver may not be installed otherwise), never
chosen by looking at the class of an object.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chronik.adapters.url import redact
from chronik.errors import ConfigurationError
from chronik.messaging.port import Broker

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "check_broker_url", "open_broker"]

#: seconds ``open_broker`` keeps trying to reach a broker that does not answer
DEFAULT_CONNECT_TIMEOUT = 30.0

#: the module of each broker scheme's client; each has ``broker(url, *, namespace, ...)``
_BROKERS = {
    "memory": "chronik.adapters.memory.broker",
    "nats": "chronik.adapters.nats",
    "tls": "chronik.adapters.nats",
    "amqp": "chronik.adapters.rabbitmq",
    "amqps": "chronik.adapters.rabbitmq",
}

_USE = "use memory://, nats://HOST:4222 or amqp://USER:PASSWORD@HOST/"


class BrokerFactory(Protocol):
    """What each broker module offers: its broker, made and not yet connected."""

    def __call__(self, url: str, *, namespace: str, connect_timeout: float) -> Broker: ...


def check_broker_url(url: str) -> None:
    """Refuse a URL ``open_broker`` would refuse, without connecting (for settings)."""
    _broker(url)


async def open_broker(url: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Broker:
    """Connect to the broker a URL names, trying for at most ``connect_timeout`` seconds.

    ``?namespace=NAME`` keeps one deployment's subjects, routing keys, durable consumers
    and queues apart from another's on the same broker (tests, or two systems).
    Raises ``ConfigurationError`` for a URL or credentials that cannot work and
    ``BrokerUnavailableError`` for a broker not reached in time; both name the URL with
    its password hidden.
    """
    broker = _broker(url)(connect_timeout)
    await broker.connect()
    return broker


def _broker(url: str) -> Callable[[float], Broker]:
    """The broker the URL names, to be made with a connect timeout; nothing imported yet."""
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
    module = _BROKERS.get(scheme)
    if module is None:
        raise ConfigurationError(f"broker URL scheme {scheme!r} is not supported: {_USE}")

    def make(connect_timeout: float) -> Broker:
        factory: BrokerFactory = importlib.import_module(module).broker
        return factory(bare, namespace=namespace, connect_timeout=connect_timeout)

    return make
