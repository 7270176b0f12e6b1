"""The NATS JetStream broker (nats-py).

One JetStream stream, ``CHRONIK``, holds the subjects ``chronik.>``: a public type
``sales.order_submitted.v1`` is published on ``chronik.sales.order_submitted.v1`` with
the event id as ``Nats-Msg-Id``, so JetStream drops a duplicate inside its window.
Publishes are pipelined (``publish_async``) and each is acked by the server.

A consumer gets one durable pull consumer per source context (``<name>-<context>``
filtered on ``chronik.<context>.>``: nats-server 2.9 takes one filter per consumer), so a
context's messages arrive in the order they were stored; types it did not ask for are
acked and passed over. Messages are fetched in batches and handled in per-stream lanes
(``chronik.messaging.lanes``): a stream's messages one at a time in their order,
different streams side by side; when a handler raises, the same message is tried again
after a pause (keeping its ack deadline away), so the messages of its stream behind it
never overtake it.

Connecting: nats-py retries on its own; ``connect`` lets it for ``connect_timeout`` seconds
and stops it early when the server refuses the credentials. Its errors come to one
callback here, which keeps the latest cause for readiness and logs a change of it once,
as one line, instead of the client's traceback at each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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

from chronik.adapters.url import redact
from chronik.errors import BrokerUnavailableError, ConfigurationError
from chronik.messaging.lanes import Lanes, lane_key
from chronik.messaging.port import Delivery, MessageHandler, OutgoingMessage, connection_cause

__all__ = ["NatsBroker", "broker"]

log = logging.getLogger(__name__)

PREFIX = "chronik."


class _Subscription:
    def __init__(
        self,
        tasks: list[asyncio.Task[None]],
        subscriptions: list[JetStreamContext.PullSubscription],
        lanes: Lanes[Msg],
    ) -> None:
        self.tasks = tasks
        self.subscriptions = subscriptions
        self.lanes = lanes

    def held(self) -> int:
        """Messages received and not yet done (at most twice the batch)."""
        return self.lanes.held

    @property
    def failure(self) -> BaseException | None:
        """Why it stopped delivering (a lane or its fetching failed), or None."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return self.lanes.failure

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # What was fetched and not done comes again, in order, soon (not after ack_wait).
        held = self.lanes.pending()
        await self.lanes.close()
        for msg in held:
            with contextlib.suppress(Exception):
                await msg.nak()
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
        connect_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.namespace = namespace
        self.prefix = f"{PREFIX}{namespace}." if namespace else PREFIX
        self.stream = stream
        self.duplicate_window = duplicate_window
        self.ack_timeout = ack_timeout
        self.fetch_batch = fetch_batch
        self.redeliver_delay = redeliver_delay
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._cause: str | None = None  # of the latest failure; None while connected
        self._refused: asyncio.Future[str] | None = None  # set when credentials are refused

    @property
    def problem(self) -> str | None:
        if self._nc is not None and self._nc.is_connected:
            return None
        if self._nc is None:
            return "not connected"
        return f"{self._cause or 'disconnected'}; reconnecting"

    async def connect(self) -> None:
        shown = redact(self.url)
        client = Client()
        self._refused = asyncio.get_running_loop().create_future()
        # nats-py annotates these as int, yet takes (and sleeps) fractions of a second.
        options: dict[str, Any] = {
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "connect_timeout": min(5.0, self.connect_timeout),
            "allow_reconnect": True,
        }
        connecting = asyncio.create_task(
            client.connect(
                servers=[self.url],
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                **options,
            )
        )
        waiting: set[asyncio.Future[Any]] = {connecting, self._refused}
        await asyncio.wait(
            waiting, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        refused, self._refused = self._refused, None
        if not connecting.done() or connecting.exception() is not None:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            with contextlib.suppress(Exception):
                await client.close()
            if refused.done():
                raise ConfigurationError(f"the NATS server at {shown} refused: {refused.result()}")
            failure = connecting.exception() if not connecting.cancelled() else None
            cause = connection_cause(failure) if failure else self._cause or "no answer"
            raise BrokerUnavailableError(
                f"cannot reach the NATS server at {shown} within {self.connect_timeout:g} s: "
                f"{cause}"
            )
        refused.cancel()
        self._nc, self._cause = client, None
        self._js = client.jetstream(timeout=self.ack_timeout)
        try:
            await self._ensure_stream(self._js)
        except BaseException:
            await self.close()
            raise

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        shown = redact(self.url)
        try:
            try:
                await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[f"{PREFIX}>"],
                        storage=StorageType.FILE,
                        duplicate_window=self.duplicate_window,
                    )
                )
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
            raise ConfigurationError(
                f"the NATS server at {shown} has no JetStream: start it with -js"
            ) from None
        except (nats.errors.Error, TimeoutError) as exc:
            raise BrokerUnavailableError(
                f"the NATS server at {shown} did not set up stream {self.stream}: "
                f"{connection_cause(exc)}"
            ) from None

    async def _on_error(self, exc: Exception) -> None:
        cause = _refusal(exc)
        if cause is not None and self._refused is not None and not self._refused.done():
            self._refused.set_result(cause)
        cause = cause or connection_cause(exc)
        if self._nc is not None and cause != self._cause:
            # Connected before: an outage, said once per cause (at start, connect() says it).
            log.warning(
                "NATS connection failed; reconnecting",
                extra={"broker": redact(self.url), "error": str(cause)},
            )
        self._cause = cause

    async def _on_disconnected(self) -> None:
        if self._nc is not None and self._cause is None:
            self._cause = "disconnected"
            log.warning("NATS disconnected; reconnecting", extra={"broker": redact(self.url)})

    async def _on_reconnected(self) -> None:
        if self._nc is not None:
            log.info("NATS reconnected", extra={"broker": redact(self.url)})
        self._cause = None

    async def close(self) -> None:
        client, self._nc, self._js = self._nc, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.drain()

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
        self,
        consumer: str,
        types: Sequence[str],
        handler: MessageHandler,
        *,
        lanes: int = 1,
        batch: int | None = None,
    ) -> _Subscription:
        """Pull in batches of ``batch``; handle in ``lanes`` per-stream lanes (see lanes.py).

        At most ``2 * batch`` messages are held (fetched, not yet acked); the fetch waits
        for room. A durable consumer left with messages delivered and never acked (its
        process died) is set back to its ack floor first: JetStream would otherwise hand
        those out again only after ``ack_wait``, behind the messages after them, and a
        stream's later message could take effect before its earlier one. The inbox skips
        what was already handled.
        """
        js = self._jetstream()
        wanted = frozenset(types)
        fetch = batch or self.fetch_batch
        replayed: dict[str, int] = {}  # durable -> the last stream seq it delivered before
        held: Lanes[Msg] = Lanes(
            lanes,
            2 * fetch,
            lambda msg: self._handle(msg, handler, replayed),
            name=f"nats {consumer}",
        )
        tasks = []
        subscriptions = []
        try:
            for source in sorted({t.split(".", 1)[0] for t in types}):
                durable = (
                    f"{self.namespace}-{consumer}-{source}"
                    if self.namespace
                    else f"{consumer}-{source}"
                )
                subject = f"{self.prefix}{source}.>"
                config = ConsumerConfig(
                    durable_name=durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=60,
                    max_ack_pending=max(self.fetch_batch * 4, fetch * 4),
                    filter_subject=subject,
                )
                replayed[durable] = await self._rewind(js, durable, config)
                subscription = await js.pull_subscribe(
                    subject, durable=durable, stream=self.stream, config=config
                )
                subscriptions.append(subscription)
                tasks.append(
                    asyncio.create_task(
                        self._consume(subscription, wanted, held, fetch), name=durable
                    )
                )
        except BaseException:
            await _Subscription(tasks, subscriptions, held).stop()
            raise
        return _Subscription(tasks, subscriptions, held)

    async def _rewind(self, js: JetStreamContext, durable: str, config: ConsumerConfig) -> int:
        """Recreate ``durable`` at its ack floor if messages it delivered wait for an ack.

        Returns the last stream sequence it had delivered (0 if not recreated): what comes
        again up to there is a redelivery, whatever the new consumer's count says.
        """
        try:
            info = await js.consumer_info(self.stream, durable)
        except nats.js.errors.NotFoundError:
            return 0
        if not info.num_ack_pending:
            return 0
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = (info.delivered.stream_seq if info.delivered else 0) or 0
        log.info(
            "NATS consumer had unacked messages; replaying from its ack floor",
            extra={"consumer": durable, "unacked": info.num_ack_pending, "floor": floor},
        )
        await js.delete_consumer(self.stream, durable)
        await js.add_consumer(
            self.stream,
            dataclasses.replace(
                config,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=(floor or 0) + 1,
            ),
        )
        return delivered

    async def _consume(
        self,
        subscription: JetStreamContext.PullSubscription,
        wanted: frozenset[str],
        lanes: Lanes[Msg],
        fetch: int,
    ) -> None:
        failing = False  # said once per outage, not at every retry
        while True:
            await lanes.wait_for_room()  # back-pressure: fetch only what there is room for
            try:
                batch = await subscription.fetch(min(fetch, lanes.room), timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                if not failing:
                    log.warning(
                        "NATS fetch failed; retrying until it works", extra={"error": str(exc)}
                    )
                failing = True
                await asyncio.sleep(self.redeliver_delay)
                continue
            if failing:
                log.info("NATS fetch works again")
                failing = False
            for msg in batch:
                if msg.subject[len(self.prefix) :] in wanted:
                    await lanes.put(lane_key(msg.data), msg)
                else:
                    await msg.ack()  # a type it did not ask for: passed over

    async def _handle(self, msg: Msg, handler: MessageHandler, replayed: dict[str, int]) -> None:
        """Handle one message until its handler returns, then ack it.

        A handler that raises (the consumer's database is down) gets the same message
        again after a pause, here, rather than by a nak: JetStream would hand out the
        messages behind it first, and a stream's messages are to take effect in order.
        """
        type_name = msg.subject[len(self.prefix) :]
        headers = msg.headers or {}
        metadata = msg.metadata
        attempt = metadata.num_delivered
        if metadata.sequence.stream <= replayed.get(metadata.consumer or "", 0):
            attempt += 1  # delivered before the consumer was set back to its ack floor
        while True:
            delivery = Delivery(headers.get("Nats-Msg-Id", ""), type_name, msg.data, attempt)
            try:
                await handler(delivery)
                break
            except Exception as exc:
                log.warning(
                    "handler failed; delivering again",
                    extra={"message_id": delivery.id, "error": str(exc)},
                )
                with contextlib.suppress(Exception):
                    await msg.in_progress()  # keeps the ack deadline away
                await asyncio.sleep(self.redeliver_delay)
                attempt += 1
        with contextlib.suppress(Exception):  # not acked: it comes again; the inbox has it
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


def _refusal(exc: BaseException) -> str | None:
    """What the server refused, if ``exc`` is a refusal that trying again cannot change."""
    text = " ".join(str(exc).split())
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in (
        text.lower()
    ):
        return f"authentication failed ({text or 'authorization violation'})"
    if "authentication expired" in text.lower() or "account authentication" in text.lower():
        return f"authentication failed ({text})"
    return None


def broker(url: str, *, namespace: str, connect_timeout: float) -> NatsBroker:
    """The JetStream broker at ``url`` (``nats://`` or ``tls://``), not connected yet."""
    return NatsBroker(url, namespace=namespace, connect_timeout=connect_timeout)
