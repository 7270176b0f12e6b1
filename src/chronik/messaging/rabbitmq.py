"""The RabbitMQ broker (aio-pika), with publisher confirms.

Messages go to the durable topic exchange ``chronik`` with the public type as routing
key, persistent, the event id as ``message_id``. Publishes are pipelined on one
channel with publisher confirms: each message counts as sent once the broker
confirmed it. A consumer has one durable queue (``chronik.<name>``) bound to each
type it handles; messages are handled one at a time and acked after the handler
returned; a handler that raises gets the same message again after a short pause, so
the messages behind it never overtake it.
RabbitMQ does not deduplicate: the consumer's inbox drops a redelivered message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from chronik.errors import ConfigurationError
from chronik.messaging.broker import Delivery, MessageHandler, OutgoingMessage
from chronik.messaging.envelope import CONTENT_TYPE

__all__ = ["RabbitMQBroker"]

log = logging.getLogger("chronik.messaging.rabbitmq")

EXCHANGE = "chronik"


class _Subscription:
    def __init__(self, task: asyncio.Task[None], channel: aio_pika.abc.AbstractChannel) -> None:
        self.task = task
        self.channel = channel

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        with contextlib.suppress(Exception):
            await self.channel.close()


class RabbitMQBroker:
    def __init__(
        self,
        url: str,
        *,
        confirm_timeout: float = 10.0,
        prefetch: int = 64,
        redeliver_delay: float = 0.5,
        window: int = 256,
        namespace: str = "",
    ) -> None:
        self.url = url
        self.prefix = f"{namespace}." if namespace else ""
        self.confirm_timeout = confirm_timeout
        self.prefetch = prefetch
        self.redeliver_delay = redeliver_delay
        self.window = window
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(self.url, timeout=10)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = self._channel = self._exchange = None

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        exchange = self._exchange
        if exchange is None:
            raise ConfigurationError("the RabbitMQ broker is not connected: call connect() first")

        async def one(message: OutgoingMessage) -> BaseException | None:
            try:
                await exchange.publish(
                    aio_pika.Message(
                        message.body,
                        message_id=message.id,
                        content_type=CONTENT_TYPE,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        type=message.type,
                    ),
                    routing_key=self.prefix + message.type,
                    timeout=self.confirm_timeout,
                )
            except Exception as exc:
                return exc
            return None

        results: list[BaseException | None] = []
        for start in range(0, len(messages), self.window):
            # Started in order, so their frames go out in order; confirms come back in order.
            chunk = messages[start : start + self.window]
            results.extend(await asyncio.gather(*(one(m) for m in chunk)))
        return results

    async def subscribe(
        self, consumer: str, types: Sequence[str], handler: MessageHandler
    ) -> _Subscription:
        if self._connection is None:
            raise ConfigurationError("the RabbitMQ broker is not connected: call connect() first")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(f"chronik.{self.prefix}{consumer}", durable=True)
        for type_name in types:
            await queue.bind(exchange, routing_key=self.prefix + type_name)
        task = asyncio.create_task(self._consume(queue, handler), name=f"amqp {consumer}")
        return _Subscription(task, channel)

    async def _consume(self, queue: aio_pika.abc.AbstractQueue, handler: MessageHandler) -> None:
        """Read the queue through one iterator for the subscription's whole life.

        The robust channel restores the iterator's consumer after a reconnect; a second
        iterator opened here would leave that one holding ``prefetch`` messages unread.
        """
        async with queue.iterator() as messages:
            async for message in messages:
                await self._handle(message, handler)

    async def _handle(
        self, message: aio_pika.abc.AbstractIncomingMessage, handler: MessageHandler
    ) -> None:
        """Handle one message until its handler returns, then ack it.

        A handler that raises (the consumer's database is down) gets the same message
        again after a pause, here, rather than by a requeue: the messages already
        prefetched behind it would take effect first.
        """
        attempt = 2 if message.redelivered else 1
        while True:
            delivery = Delivery(
                message.message_id or "",
                message.type or (message.routing_key or "").removeprefix(self.prefix),
                message.body,
                attempt,
            )
            try:
                await handler(delivery)
                break
            except Exception as exc:
                log.warning("handler failed on %s (%s); trying it again", delivery.id, exc)
                await asyncio.sleep(self.redeliver_delay)
                attempt += 1
        try:
            await message.ack()
        except Exception as exc:
            # The channel went away under it: the broker delivers it again, and the
            # consumer's inbox knows it was handled.
            log.warning("ack of %s failed (%s); it will come again", delivery.id, exc)
