"""The NATS JetStream broker (nats-py).

One JetStream stream, ``CHRONIK``, holds the subjects ``chronik.>``: a public type
``sales.order_submitted.v1`` is published on ``chronik.sales.order_submitted.v1`` with
the event id as ``Nats-Msg-Id``, so JetStream drops a duplicate inside its window.
Publishes are pipelined (``publish_async``) and each is acked by the server.

A consumer gets one durable pull consumer per source context (``<name>-<context>``
filtered on ``chronik.<context>.>``: nats-server 2.9 takes one filter per consumer), so a
context's messages arrive in the order they were stored; types it did not ask for are
acked and passed over. Messages are handled one at a time; when a handler raises, the
same message is tried again after a pause (keeping its ack deadline away), so the
messages behind it never overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from chronik.errors import ConfigurationError
from chronik.messaging.broker import Delivery, MessageHandler, OutgoingMessage

__all__ = ["NatsBroker"]

log = logging.getLogger("chronik.messaging.nats")

PREFIX = "chronik."


class _Subscription:
    def __init__(
        self,
        tasks: list[asyncio.Task[None]],
        subscriptions: list[JetStreamContext.PullSubscription],
    ) -> None:
        self.tasks = tasks
        self.subscriptions = subscriptions

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Unsubscribed, a pull subscription no longer holds up the connection's drain.
        for subscription in self.subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


class NatsBroker:
    def __init__(
        self,
        url: str,
        *,
        stream: str = "CHRONIK",
        duplicate_window: float = 120.0,
        ack_timeout: float = 10.0,
        fetch_batch: int = 64,
        redeliver_delay: float = 0.5,
        namespace: str = "",
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.prefix = f"{PREFIX}{namespace}." if namespace else PREFIX
        self.stream = stream
        self.duplicate_window = duplicate_window
        self.ack_timeout = ack_timeout
        self.fetch_batch = fetch_batch
        self.redeliver_delay = redeliver_delay
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        self._nc = await nats.connect(
            servers=[self.url],
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
        )
        self._js = self._nc.jetstream(timeout=self.ack_timeout)
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{PREFIX}>"],
                    storage=StorageType.FILE,
                    duplicate_window=self.duplicate_window,
                )
            )

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
            self._js = None

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise ConfigurationError("the NATS broker is not connected: call connect() first")
        return self._js

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        """Publish pipelined; wait for the acks together, ``ack_timeout`` for the lot.

        No per-message timeout: one would make each publish a task of its own, and nats-py
        would then write each message to the socket alone (about 3x slower).
        """
        js = self._jetstream()
        results: list[BaseException | asyncio.Future[Any] | None] = [None] * len(messages)
        try:
            async with asyncio.timeout(self.ack_timeout):
                for index, message in enumerate(messages):
                    try:
                        results[index] = await js.publish_async(
                            self.prefix + message.type,
                            message.body,
                            headers={"Nats-Msg-Id": message.id},
                        )
                    except Exception as exc:
                        results[index] = exc
                pending = [r for r in results if isinstance(r, asyncio.Future)]
                if pending:
                    await asyncio.wait(pending)
        except TimeoutError:
            pass
        return [_outcome(r, self.ack_timeout) for r in results]

    async def subscribe(
        self, consumer: str, types: Sequence[str], handler: MessageHandler
    ) -> _Subscription:
        js = self._jetstream()
        wanted = frozenset(types)
        tasks = []
        subscriptions = []
        for source in sorted({t.split(".", 1)[0] for t in types}):
            durable = (
                f"{self.namespace}-{consumer}-{source}"
                if self.namespace
                else f"{consumer}-{source}"
            )
            subscription = await js.pull_subscribe(
                f"{self.prefix}{source}.>",
                durable=durable,
                stream=self.stream,
                config=ConsumerConfig(
                    durable_name=durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=60,
                    max_ack_pending=self.fetch_batch * 4,
                ),
            )
            subscriptions.append(subscription)
            tasks.append(
                asyncio.create_task(self._consume(subscription, wanted, handler), name=durable)
            )
        return _Subscription(tasks, subscriptions)

    async def _consume(
        self,
        subscription: JetStreamContext.PullSubscription,
        wanted: frozenset[str],
        handler: MessageHandler,
    ) -> None:
        while True:
            try:
                batch = await subscription.fetch(self.fetch_batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("NATS fetch failed (%s); retrying", exc)
                await asyncio.sleep(self.redeliver_delay)
                continue
            await self._handle_batch(batch, wanted, handler)

    async def _handle_batch(
        self, batch: list[Msg], wanted: frozenset[str], handler: MessageHandler
    ) -> None:
        for index, msg in enumerate(batch):
            try:
                await self._handle(msg, wanted, handler)
            except asyncio.CancelledError:
                # Stopped: what was fetched and not done comes again, in order, soon.
                for rest in batch[index:]:
                    with contextlib.suppress(Exception):
                        await rest.nak()
                raise

    async def _handle(self, msg: Msg, wanted: frozenset[str], handler: MessageHandler) -> None:
        """Handle one message until its handler returns, then ack it.

        A handler that raises (the consumer's database is down) gets the same message
        again after a pause, here, rather than by a nak: JetStream would hand out the
        messages behind it first, and a context's messages are to take effect in order.
        """
        type_name = msg.subject[len(self.prefix) :]
        if type_name in wanted:
            headers = msg.headers or {}
            attempt = msg.metadata.num_delivered
            while True:
                delivery = Delivery(headers.get("Nats-Msg-Id", ""), type_name, msg.data, attempt)
                try:
                    await handler(delivery)
                    break
                except Exception as exc:
                    log.warning("handler failed on %s (%s); trying it again", delivery.id, exc)
                    with contextlib.suppress(Exception):
                        await msg.in_progress()  # keeps the ack deadline away
                    await asyncio.sleep(self.redeliver_delay)
                    attempt += 1
        await msg.ack()


def _outcome(
    result: BaseException | asyncio.Future[Any] | None, timeout: float
) -> BaseException | None:
    if result is None or isinstance(result, BaseException):
        return result
    if not result.done():
        result.cancel()
        return TimeoutError(f"no ack from NATS JetStream within {timeout:g} s")
    return result.exception()
