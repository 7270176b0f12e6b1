"""The in-process broker, for the embedded mode and tests.

A publish returns once every subscriber has handled the message: the relay marks an
outbox row published only after the consumers in this process committed its effect,
so a crash loses nothing. Messages of a type nobody subscribed to are dropped, as a
real broker drops them without a queue: subscribe before the relay starts. Closed, it
refuses to publish (a relay would otherwise mark as published what reached nobody) until
connected again.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from chronik.errors import ConfigurationError
from chronik.messaging.port import Delivery, MessageHandler, OutgoingMessage

__all__ = ["MemoryBroker", "broker"]


class _Subscription:
    def __init__(
        self, broker: MemoryBroker, consumer: str, types: Sequence[str], handler: MessageHandler
    ) -> None:
        self.broker = broker
        self.consumer = consumer
        self.types = frozenset(types)
        self.handler = handler
        self.lock = asyncio.Lock()  # one delivery at a time, in order
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    async def deliver(self, message: OutgoingMessage, retry_delay: float) -> None:
        async with self.lock:
            if message.id in self.seen:
                return  # the deduplication window, as JetStream's
            attempt = 1
            while True:
                try:
                    await self.handler(Delivery(message.id, message.type, message.body, attempt))
                    break
                except Exception:
                    if attempt >= self.broker.max_attempts:
                        raise
                    attempt += 1
                    await asyncio.sleep(retry_delay)
            self.seen[message.id] = None
            if len(self.seen) > self.broker.dedup_window:
                self.seen.popitem(last=False)

    async def stop(self) -> None:
        self.broker._subscriptions.discard(self)


class MemoryBroker:
    """Publishes by calling each subscriber's handler; nothing survives the process."""

    def __init__(self, *, max_attempts: int = 5, retry_delay: float = 0.05) -> None:
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.dedup_window = 100_000
        self._subscriptions: set[_Subscription] = set()
        self._closed = False

    @property
    def problem(self) -> str | None:
        return "not connected (closed)" if self._closed else None

    async def connect(self) -> None:
        """Nothing to connect to; opens it again after ``close``."""
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._subscriptions.clear()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        if self._closed:
            raise ConfigurationError("the memory broker is not connected: it was closed")
        results: list[BaseException | None] = []
        failed = False
        for message in messages:
            if failed:  # keep order: nothing after a failure goes out in this call
                results.append(RuntimeError("not sent: an earlier message failed"))
                continue
            try:
                for subscription in list(self._subscriptions):
                    if message.type in subscription.types:
                        await subscription.deliver(message, self.retry_delay)
                results.append(None)
            except Exception as exc:
                failed = True
                results.append(exc)
        return results

    async def subscribe(
        self, consumer: str, types: Sequence[str], handler: MessageHandler
    ) -> _Subscription:
        if self._closed:
            raise ConfigurationError("the memory broker is not connected: it was closed")
        subscription = _Subscription(self, consumer, types, handler)
        self._subscriptions.add(subscription)
        return subscription


def broker(url: str, *, namespace: str, connect_timeout: float) -> MemoryBroker:
    """A broker of its own: only this process's subscribers hear it (URL options unused)."""
    return MemoryBroker()
