"""The in-process broker, for the embedded mode and tests.

A publish returns once every subscriber has handled the message: the relay marks an
outbox row published only after the consumers in this process committed its effect,
so a crash loses nothing. Messages of a type nobody subscribed to are dropped, as a
real broker drops them without a queue: subscribe before the relay starts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from chronik.errors import DuplicateMessageError
from chronik.messaging.broker import Delivery, MessageHandler, OutgoingMessage
from chronik.messaging.storage import DeadLetter, OutboxRow, OutboxStatus

__all__ = ["MemoryBroker", "MemoryMessageStorage"]


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

    @property
    def problem(self) -> str | None:
        return None

    async def connect(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        self._subscriptions.clear()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
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
        subscription = _Subscription(self, consumer, types, handler)
        self._subscriptions.add(subscription)
        return subscription


class MemoryMessageStorage:
    """Outbox, inbox and dead letters as lists, kept on the memory store they belong to."""

    def __init__(self, store: object) -> None:
        state = getattr(store, "_messaging_state", None)
        if state is None:
            state = _State()
            store._messaging_state = state  # type: ignore[attr-defined]
        self.state: _State = state

    async def setup(self) -> None:
        """Nothing to create."""

    async def add_outbox(self, conn: object, rows: Sequence[OutboxRow]) -> Callable[[], None]:
        def apply() -> None:
            now = datetime.now(UTC)
            for row in rows:
                self.state.outbox[row.position] = [row, now, None]

        return apply

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        waiting = [
            entry[0]
            for position, entry in sorted(self.state.outbox.items())
            if entry[2] is None and position > after
        ]
        return waiting[:limit]

    async def mark_published(self, positions: Sequence[int]) -> None:
        now = datetime.now(UTC)
        for position in positions:
            self.state.outbox[position][2] = now

    async def outbox_status(self) -> OutboxStatus:
        pending = [e for e in self.state.outbox.values() if e[2] is None]
        oldest = min((e[1] for e in pending), default=None)
        return OutboxStatus(len(pending), oldest, len(self.state.outbox) - len(pending))

    async def purge_published(self, older_than_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        old = [p for p, e in self.state.outbox.items() if e[2] is not None and e[2] < cutoff]
        for position in old:
            del self.state.outbox[position]
        return len(old)

    @contextlib.asynccontextmanager
    async def relay_leadership(self) -> AsyncIterator[bool]:
        yield True

    async def mark_handled(
        self, conn: object, consumer: str, message_id: str
    ) -> Callable[[], None]:
        key = (consumer, message_id)
        if key in self.state.inbox:
            raise DuplicateMessageError(f"{consumer} already handled {message_id}")

        def apply() -> None:
            self.state.inbox.add(key)

        return apply

    async def handled(self, consumer: str, message_id: str) -> bool:
        return (consumer, message_id) in self.state.inbox

    async def record_handled(self, consumer: str, message_id: str) -> bool:
        key = (consumer, message_id)
        if key in self.state.inbox:
            return False
        self.state.inbox.add(key)
        return True

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        self.state.dead[(letter.consumer, letter.message_id)] = letter
        self.state.inbox.add((letter.consumer, letter.message_id))

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetter]:
        letters = [d for d in self.state.dead.values() if consumer in (None, d.consumer)]
        return sorted(letters, key=lambda d: d.dead_at)

    async def request_redelivery(self, consumer: str, message_id: str) -> bool:
        if (consumer, message_id) not in self.state.dead:
            return False
        self.state.requested.add((consumer, message_id))
        return True

    async def requested_redeliveries(self, consumer: str) -> list[str]:
        return [m for c, m in self.state.requested if c == consumer]

    async def remove_dead_letter(self, consumer: str, message_id: str) -> None:
        self.state.requested.discard((consumer, message_id))
        self.state.dead.pop((consumer, message_id), None)
        self.state.inbox.discard((consumer, message_id))


class _State:
    def __init__(self) -> None:
        self.outbox: dict[int, list[Any]] = {}  # position -> [row, created, published]
        self.inbox: set[tuple[str, str]] = set()
        self.dead: dict[tuple[str, str], DeadLetter] = {}
        self.requested: set[tuple[str, str]] = set()
