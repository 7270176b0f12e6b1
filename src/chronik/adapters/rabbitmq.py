"""The RabbitMQ broker (aio-pika), with publisher confirms.

Messages go to the durable topic exchange ``chronik`` (or the one given: tests keep
theirs apart) with the public type as routing key, persistent, the event id as
``message_id``. Publishes are pipelined on one channel with publisher confirms: each
message counts as sent once the broker confirmed it. A consumer has one durable queue
(``chronik.<name>``) bound to each type it handles; messages are handled in per-stream
lanes (``chronik.messaging.lanes``) and acked after the handler returned, in batches
(one ``multiple`` ack over the done prefix); a handler that raises gets the same message
again after a short pause, so the messages of its stream behind it never overtake it.
RabbitMQ does not deduplicate: the consumer's inbox drops a redelivered message.

Connecting: ``connect`` tries every half second for ``connect_timeout`` seconds, the
driver's own log lines about each failed attempt held back (it says the outcome once); a
refused login or virtual host ends it at once. Once connected, aio-pika's robust
connection reconnects on its own; the cause of the loss is kept for readiness.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from urllib.parse import unquote, urlsplit

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from chronik.adapters.url import redact
from chronik.errors import BrokerUnavailableError, ConfigurationError
from chronik.messaging.envelope import CONTENT_TYPE
from chronik.messaging.lanes import Lanes, lane_key
from chronik.messaging.port import Delivery, MessageHandler, OutgoingMessage, connection_cause

__all__ = ["RabbitMQBroker", "broker"]

log = logging.getLogger(__name__)

EXCHANGE = "chronik"
#: the driver's loggers that report each failed connection attempt
_DRIVER_LOGGERS = ("aiormq.connection", "aio_pika.robust_connection")


class _Subscription:
    def __init__(
        self,
        task: asyncio.Task[None],
        channel: aio_pika.abc.AbstractChannel,
        lanes: Lanes[aio_pika.abc.AbstractIncomingMessage],
    ) -> None:
        self.task = task
        self.channel = channel
        self.lanes = lanes

    def held(self) -> int:
        """Messages received and not yet done (at most twice the batch)."""
        return self.lanes.held

    @property
    def failure(self) -> BaseException | None:
        """Why it stopped delivering (a lane or its fetching failed), or None."""
        for task in [self.task]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return self.lanes.failure

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.lanes.close()
        # Closing the channel requeues what it delivered and we did not ack, in place.
        with contextlib.suppress(Exception):
            await self.channel.close()


class _Acks:
    """Acks a channel's deliveries in batches: ``multiple`` over the done prefix.

    Deliveries are registered in the order the channel delivered them (ascending
    delivery tags). Once done, the longest prefix of done deliveries is acked with one
    ``multiple`` ack at its last tag; a done delivery behind one still in hand (another
    lane's) is acked alone, so prefetch does not fill with finished work. All done
    deliveries of one turn of the event loop are acked together. A delivery of an
    earlier channel (before a reconnect) is forgotten: its tag means nothing on the new
    channel, and the broker delivers it again.
    """

    def __init__(self) -> None:
        self._channel: object = None
        self._order: collections.OrderedDict[int, aio_pika.abc.AbstractIncomingMessage] = (
            collections.OrderedDict()
        )
        self._done: set[int] = set()
        self._flushing = False
        self._acking: set[asyncio.Future[None]] = set()

    def register(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        channel = _channel_of(message)
        if channel is None:
            return  # closed already: it comes again on the next channel
        if channel is not self._channel:
            self._channel = channel
            self._order.clear()
            self._done.clear()
        assert message.delivery_tag is not None
        self._order[message.delivery_tag] = message

    def done(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        tag = message.delivery_tag
        if _channel_of(message) is not self._channel or tag not in self._order:
            return  # of a channel that closed since: not acked, it comes again
        self._done.add(tag)  # type: ignore[arg-type]
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        last: aio_pika.abc.AbstractIncomingMessage | None = None
        while self._order:
            tag, message = next(iter(self._order.items()))
            if tag not in self._done:
                break
            del self._order[tag]
            self._done.discard(tag)
            last = message
        alone = [self._order.pop(tag) for tag in sorted(self._done)]
        self._done.clear()
        acks = ([(last, True)] if last is not None else []) + [(m, False) for m in alone]
        for message, multiple in acks:
            task = asyncio.ensure_future(_ack(message, multiple=multiple))
            self._acking.add(task)
            task.add_done_callback(self._acking.discard)


def _channel_of(message: aio_pika.abc.AbstractIncomingMessage) -> object:
    """The driver's channel the message came on; None once that channel closed."""
    try:
        return message.channel
    except aio_pika.exceptions.ChannelInvalidStateError:
        return None


async def _ack(message: aio_pika.abc.AbstractIncomingMessage, *, multiple: bool) -> None:
    try:
        await message.ack(multiple=multiple)
    except Exception as exc:
        # The channel went away under it: the broker delivers it again, and the
        # consumer's inbox knows it was handled.
        log.warning(
            "ack failed; the message will come again",
            extra={"message_id": message.message_id, "error": str(exc)},
        )


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
        connect_timeout: float = 30.0,
        exchange: str = EXCHANGE,
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.exchange = exchange
        self.prefix = f"{namespace}." if namespace else ""
        self.confirm_timeout = confirm_timeout
        self.prefetch = prefetch
        self.redeliver_delay = redeliver_delay
        self.window = window
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._cause: str | None = None  # of the latest loss of the connection

    @property
    def problem(self) -> str | None:
        if self._connection is None:
            return "not connected"
        if self._connection.connected.is_set():
            return None
        return f"{self._cause or 'disconnected'}; reconnecting"

    async def connect(self) -> None:
        shown = redact(self.url)
        deadline = time.monotonic() + self.connect_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                with _quiet(_DRIVER_LOGGERS):
                    connection = await aio_pika.connect_robust(
                        self.url, timeout=max(0.1, min(left, 10.0))
                    )
                break
            except (
                aio_pika.exceptions.AuthenticationError,
                aio_pika.exceptions.ProbableAuthenticationError,
            ):
                raise ConfigurationError(
                    f"the RabbitMQ server at {shown} refused the login: authentication failed "
                    "(check the user and password)"
                ) from None
            except aio_pika.exceptions.ProtocolSyntaxError as exc:
                if "Connection.Close" not in str(exc):
                    raise BrokerUnavailableError(
                        f"the RabbitMQ server at {shown} broke off the connection: "
                        f"{connection_cause(exc)}"
                    ) from None
                vhost = unquote(urlsplit(self.url).path[1:]) or "/"
                raise ConfigurationError(
                    f"the RabbitMQ server at {shown} refused virtual host {vhost!r}: it does "
                    "not exist, or the user may not use it"
                ) from None
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                if time.monotonic() + 0.5 >= deadline:
                    raise BrokerUnavailableError(
                        f"cannot reach the RabbitMQ server at {shown} within "
                        f"{self.connect_timeout:g} s: {connection_cause(exc)}"
                    ) from None
                await asyncio.sleep(0.5)
        self._connection, self._cause = connection, None
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._channel = await connection.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    def _on_close(self, _: object, exc: BaseException | None) -> None:
        if self._connection is None or exc is None or isinstance(exc, asyncio.CancelledError):
            return  # closed by close()
        self._cause = f"connection lost: {connection_cause(exc)}"
        log.warning(
            "RabbitMQ connection failed; reconnecting",
            extra={"broker": redact(self.url), "error": str(self._cause)},
        )

    def _on_reconnect(self, _: object) -> None:
        if self._cause is not None:
            log.info("RabbitMQ reconnected", extra={"broker": redact(self.url)})
        self._cause = None

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

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
        self,
        consumer: str,
        types: Sequence[str],
        handler: MessageHandler,
        *,
        lanes: int = 1,
        batch: int | None = None,
    ) -> _Subscription:
        """Prefetch ``2 * batch``; handle in ``lanes`` per-stream lanes (see lanes.py)."""
        if self._connection is None:
            raise ConfigurationError("the RabbitMQ broker is not connected: call connect() first")
        capacity = 2 * (batch or self.prefetch)
        channel = await self._connection.channel()
        # Prefetch bounds what the broker sends ahead: the lanes never hold more.
        await channel.set_qos(prefetch_count=capacity)
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(f"chronik.{self.prefix}{consumer}", durable=True)
        for type_name in types:
            await queue.bind(exchange, routing_key=self.prefix + type_name)
        acks = _Acks()

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await self._handle(message, handler)
            acks.done(message)

        held: Lanes[aio_pika.abc.AbstractIncomingMessage] = Lanes(
            lanes, capacity, handle, name=f"amqp {consumer}"
        )
        task = asyncio.create_task(self._consume(queue, held, acks), name=f"amqp {consumer}")
        return _Subscription(task, channel, held)

    async def _consume(
        self,
        queue: aio_pika.abc.AbstractQueue,
        lanes: Lanes[aio_pika.abc.AbstractIncomingMessage],
        acks: _Acks,
    ) -> None:
        """Read the queue through one iterator for the subscription's whole life.

        The robust channel restores the iterator's consumer after a reconnect; a second
        iterator opened here would leave that one holding ``prefetch`` messages unread.
        """
        async with queue.iterator() as messages:
            async for message in messages:
                acks.register(message)
                await lanes.put(lane_key(message.body), message)

    async def _handle(
        self, message: aio_pika.abc.AbstractIncomingMessage, handler: MessageHandler
    ) -> None:
        """Handle one message until its handler returns (the caller acks it).

        A handler that raises (the consumer's database is down) gets the same message
        again after a pause, here, rather than by a requeue: the messages of its stream
        already prefetched behind it would take effect first.
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
                return
            except Exception as exc:
                log.warning(
                    "handler failed; delivering again",
                    extra={"message_id": delivery.id, "error": str(exc)},
                )
                await asyncio.sleep(self.redeliver_delay)
                attempt += 1


class _Silence(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    """Hold back these loggers' records for the block."""
    silence = _Silence()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(silence)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(silence)


def broker(url: str, *, namespace: str, connect_timeout: float) -> RabbitMQBroker:
    """The RabbitMQ broker at ``url`` (``amqp://`` or ``amqps://``), not connected yet."""
    return RabbitMQBroker(url, namespace=namespace, connect_timeout=connect_timeout)
