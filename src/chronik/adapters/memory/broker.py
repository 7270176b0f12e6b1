"""The in-process broker, for the embedded mode and tests.

A publish returns once every subscriber has handled its messages: the relay marks an
outbox row published only after the consumers in this process committed its effect,
so a crash loses nothing. A publish's messages reach a subscriber in per-stream lanes
(by the message's key, its source stream): one stream's in order, streams side by side;
a lane stops at a message that failed, and the rest of that lane count as not sent.
Messages of a type nobody subscribed to are dropped, as a real broker drops them without
a queue: subscribe before the relay starts. Closed, it refuses to publish (a relay would
otherwise mark as published what reached nobody) until connected again.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from chronik.errors import ConfigurationError
from chronik.messaging.lanes import Lanes
from chronik.messaging.port import Delivery, MessageHandler, OutgoingMessage

__all__ = ["MemoryBroker", "broker"]


class _Subscription:
    def __init__(
        self,
        broker: MemoryBroker,
        consumer: str,
        types: Sequence[str],
        handler: MessageHandler,
        lanes: int,
    ) -> None:
        self.broker = broker
        self.consumer = consumer
        self.types = frozenset(types)
        self.handler = handler
        self.lanes = lanes
        self.lock = asyncio.Lock()  # one publish's batch at a time, in order
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    async def deliver_all(
        self, messages: Sequence[tuple[int, OutgoingMessage]], retry_delay: float
    ) -> dict[int, BaseException]:
        """Deliver in per-stream lanes; the failures by index (a lane stops at its first)."""
        by_lane: dict[int, list[tuple[int, OutgoingMessage]]] = {}
        for index, message in messages:
            by_lane.setdefault(Lanes.lane_for(message.key, self.lanes), []).append((index, message))
        failures: dict[int, BaseException] = {}

        async def run_lane(items: list[tuple[int, OutgoingMessage]]) -> None:
            for position, (index, message) in enumerate(items):
                try:
                    await self.deliver(message, retry_delay)
                except Exception as exc:
                    failures[index] = exc
                    for later, _ in items[position + 1 :]:
                        failures[later] = RuntimeError("not sent: an earlier message failed")
                    return

        async with self.lock:
            await asyncio.gather(*(run_lane(items) for items in by_lane.values()))
        return failures

    async def deliver(self, message: OutgoingMessage, retry_delay: float) -> None:
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
        failures: dict[int, BaseException] = {}
        for subscription in list(self._subscriptions):
            wanted = [(i, m) for i, m in enumerate(messages) if m.type in subscription.types]
            if wanted:
                for index, exc in (
                    await subscription.deliver_all(wanted, self.retry_delay)
                ).items():
                    failures.setdefault(index, exc)
        return [failures.get(i) for i in range(len(messages))]

    async def subscribe(
        self,
        consumer: str,
        types: Sequence[str],
        handler: MessageHandler,
        *,
        lanes: int = 1,
        batch: int | None = None,
    ) -> _Subscription:
        """A publish's messages reach ``handler`` in ``lanes`` lanes by source stream.

        ``batch`` has no meaning here: a publish delivers its messages and returns.
        """
        if self._closed:
            raise ConfigurationError("the memory broker is not connected: it was closed")
        subscription = _Subscription(self, consumer, types, handler, max(1, lanes))
        self._subscriptions.add(subscription)
        return subscription


def broker(url: str, *, namespace: str, connect_timeout: float) -> MemoryBroker:
    """A broker of its own: only this process's subscribers hear it (URL options unused)."""
    return MemoryBroker()
