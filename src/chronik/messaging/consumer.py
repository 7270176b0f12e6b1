"""Consumers: handle another context's public events, each message's effect exactly once.

A consumer subscribes to public event types and hands each message to a handler, the
consuming context's anti-corruption layer turned into commands. While the handler
runs, its appends carry an inbox tag (ambient metadata, read when an append is
prepared); an append hook records the message as handled in the append's own
transaction, under a unique key. A redelivered message is therefore either skipped
(already recorded) or its effect was never committed. One message, one append: a
handler that must change several aggregates starts a process instead.

A handler that keeps failing is retried with backoff, then its message goes to the
dead letters with the error and is counted as handled; the others flow on. Messages of
different source streams run concurrently in per-stream lanes (``lanes``); one
stream's messages keep their order.
``redeliver`` runs a dead letter again once the handler is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chronik import tracing
from chronik.errors import (
    ChronikError,
    ConfigurationError,
    DuplicateMessageError,
    StoreUnavailableError,
)
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.context import ambient_metadata
from chronik.eventstore.port import Metadata, RecordedEvent
from chronik.instruments import NO_INSTRUMENTS, Instruments
from chronik.messaging.contracts import PublishedLanguage, public_spec
from chronik.messaging.envelope import Envelope, decode_envelope
from chronik.messaging.port import Broker, DeadLetter, Delivery, MessageStorage, Subscription
from chronik.worker import Supervised, Worker, error_text

__all__ = ["Consumer", "Handler", "MessageContext"]

log = logging.getLogger(__name__)

INBOX_HEADER = "chronik-inbox"
#: per-stream lanes a consumer handles side by side (CHRONIK_CONSUMER_LANES)
DEFAULT_LANES = 8
#: messages fetched at once; at most twice as many held unacked (CHRONIK_CONSUMER_BATCH)
DEFAULT_BATCH = 64
MAX_LANES = 256
MAX_BATCH = 10_000
_NAME = re.compile(r"[a-z][a-z0-9_\-]{0,62}")


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Where a message came from, for the handler (and the metadata of what it causes)."""

    message_id: str
    type: str
    source: str
    subject: str
    time: datetime
    correlation_id: str | None
    traceparent: str | None
    attempt: int


Handler = Callable[[Any, MessageContext], Awaitable[None]]


class _Dead(Exception):
    pass


class _HandledCheck:
    """Whether messages are handled, asked by many lanes at once and answered in one query.

    A lane asks for its message's id; the ids asked while a query runs go in the next
    one, so the lanes of a consumer share a query per round instead of a transaction
    each. It only saves running a handler again: the unique inbox mark committed with
    the effect is what keeps a redelivered message's effect once.
    """

    def __init__(self, storage: MessageStorage, consumer: str) -> None:
        self._storage = storage
        self._consumer = consumer
        self._asked: dict[str, list[asyncio.Future[bool]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, message_id: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(message_id, []).append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._answer(), name=f"{self._consumer} inbox check")
        return await future

    async def _answer(self) -> None:
        try:
            while self._asked:
                asked, self._asked = self._asked, {}
                try:
                    found = await self._storage.handled_among(self._consumer, list(asked))
                except BaseException as exc:
                    for futures in asked.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    if isinstance(exc, Exception):
                        continue
                    raise
                for message_id, futures in asked.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(message_id in found)
        finally:
            self._task = None
            for futures in self._asked.values():  # cancelled with some still asked
                for future in futures:
                    future.cancel()
            self._asked = {}


class Consumer(Worker):
    """Subscribes ``handlers`` (public event class -> async handler) under a durable name.

    ``storage`` is the message storage of the store's database (``Database.messages()``):
    the inbox mark commits with the handler's append. Started, it is a
    ``chronik.worker.Worker`` under the lease ``consumer:NAME``: subscribed while it
    leads, unsubscribed in standby, so one replica handles a subscription's messages in
    their order (the inbox would keep each effect once anyway).

    Messages of one source stream are handled one at a time, in their order; those of
    different streams in up to ``lanes`` lanes side by side. The broker fetches
    ``batch`` at a time and holds at most ``2 * batch`` unacked (back-pressure). A
    message that keeps failing holds up its own lane only. See docs/messaging.md,
    "Concurrency".
    """

    kind = "consumer"
    logger = log
    catching_up_state = "running"
    running_state = "running"

    def __init__(
        self,
        name: str,
        store: BaseEventStore,
        language: PublishedLanguage,
        handlers: Mapping[type, Handler],
        *,
        storage: MessageStorage,
        retries: int = 5,
        retry_backoff: float = 0.1,
        lanes: int = DEFAULT_LANES,
        batch: int = DEFAULT_BATCH,
        instruments: Instruments = NO_INSTRUMENTS,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"consumer name {name!r}: use 1-63 lowercase letters, digits, '_' or '-'"
            )
        if not 1 <= lanes <= MAX_LANES:
            raise ConfigurationError(f"consumer {name!r}: lanes must be 1-{MAX_LANES}, not {lanes}")
        if not 1 <= batch <= MAX_BATCH:
            raise ConfigurationError(f"consumer {name!r}: batch must be 1-{MAX_BATCH}, not {batch}")
        super().__init__(name, lease=lambda: storage.lease(f"consumer:{name}"))
        self.store = store
        self.language = language
        self.storage = storage
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.lanes = lanes
        self.batch = batch
        self.instruments = instruments
        self._handlers: dict[str, Handler] = {}
        for cls, handler in handlers.items():
            spec = public_spec(cls)
            if language.class_of(spec.type) is not cls:
                raise ConfigurationError(f"{spec.type!r} is not in the language given")
            self._handlers[spec.type] = handler
        self.types = tuple(sorted(self._handlers))
        self._marked: set[str] = set()
        self._installed = False
        self._subscription: Subscription | None = None
        self._broker: Broker | None = None
        self._poll_every = 2.0
        self._asked = 0.0
        self._supervised: Supervised | None = None
        self._own_stop = asyncio.Event()
        self._handled = _HandledCheck(storage, name)
        self.handled = 0
        self.dead = 0

    async def setup(self) -> None:
        await self.storage.setup()
        if not self._installed:
            # Two consumers of one name on one store would both mark the inbox on each
            # append; the second mark fails and rolls the effect back.
            for hook in self.store.append_hooks:
                other = getattr(hook, "__self__", None)  # the consumer whose _hook it is
                if isinstance(other, Consumer) and other is not self and other.name == self.name:
                    raise ConfigurationError(
                        f"consumer {self.name!r} is already running on this store: stop it first"
                    )
            self.store.add_append_hook(self._hook)
            self._installed = True

    async def start(self, broker: Broker, *, poll_requests: float = 2.0) -> None:
        """Set up, take the lease and subscribe: messages flow from here on.

        It returns once subscribed, or standing by while another replica holds the
        subscription; a first subscription that fails is raised here. Every
        ``poll_requests`` seconds it also runs the dead letters someone asked to redeliver
        (``chronik dead-letters redeliver``).
        """
        await self.setup()
        self._broker = broker
        self._poll_every = poll_requests
        self.idle_wait = min(self.idle_wait, poll_requests)
        self._own_stop = asyncio.Event()
        self.settled = asyncio.Event()
        self.state, self.error = "starting", None
        self._supervised = Supervised(self, self._own_stop)
        await self.settled.wait()
        failure = self.last_exception
        if self.state == self.backing_off_state and failure is not None:
            await self.stop()
            raise failure

    async def stop(self) -> None:
        self._own_stop.set()
        if self._supervised is not None:
            await self._supervised.task
            self._supervised = None
        if self._installed:
            self.store.remove_append_hook(self._hook)
            self._installed = False

    # -- the worker --------------------------------------------------------------------

    async def begin(self) -> None:
        assert self._broker is not None, "start(broker) runs the consumer"
        self._subscription = await self._broker.subscribe(
            self.name, self.types, self.deliver, lanes=self.lanes, batch=self.batch
        )
        self._asked = time.monotonic()
        await super().begin()

    async def step(self) -> bool:
        """Run the redeliveries asked for; the broker's deliveries run on their own.

        A subscription that stopped delivering (its lanes or its fetching failed) is
        raised here: the worker backs off, unsubscribes and subscribes again.
        """
        failure = getattr(self._subscription, "failure", None)
        if failure is not None:
            raise failure
        if time.monotonic() - self._asked >= self._poll_every:
            self._asked = time.monotonic()
            try:
                for message_id in await self.storage.requested_redeliveries(self.name):
                    await self.redeliver(message_id)
            except ChronikError as exc:
                log.warning(
                    "consumer's redelivery requests failed",
                    extra={"consumer": self.name, "error": str(exc)},
                )
        return False

    async def end(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.stop()
            except Exception as exc:  # the broker is gone: so is the subscription
                log.warning(
                    "consumer's unsubscribing failed",
                    extra={"consumer": self.name, "error": str(exc)},
                )

    async def _hook(self, conn: Any, events: list[RecordedEvent]) -> Callable[[], None] | None:
        headers = events[0].metadata.headers or {}
        tag = headers.get(INBOX_HEADER)
        if tag is None:
            return None
        consumer, _, message_id = tag.partition(":")
        if consumer != self.name:
            return None
        if message_id in self._marked:
            raise ConfigurationError(
                f"consumer {self.name!r} appended twice while handling {message_id}: a message "
                "changes one aggregate; start a process for more"
            )
        done = await self.storage.mark_handled(conn, self.name, message_id)
        self._marked.add(message_id)
        return done

    async def deliver(self, delivery: Delivery) -> None:
        """Handle one delivery; raising makes the broker deliver it again later."""
        if await self._handled(delivery.id):
            return
        try:
            envelope = decode_envelope(delivery.body)
            event = self.language.decode(envelope.type, envelope.data)
        except ValueError as exc:
            await self._bury(delivery, f"undecodable message: {exc}", 1)
            return
        handler = self._handlers.get(envelope.type)
        if handler is None:
            await self.storage.record_handled(self.name, delivery.id)
            return
        started = time.perf_counter()
        with tracing.consuming(
            self._broker,
            self.name,
            delivery.id,
            envelope.type,
            envelope.source,
            envelope.traceparent,
            envelope.tracestate,
        ) as traced:
            try:
                await self._handle(handler, event, envelope, delivery)
            except _Dead:
                traced.failed("dead_lettered")
                self.instruments.consumer_handled(
                    self.name, time.perf_counter() - started, "dead_lettered"
                )
                return
        self.handled += 1
        self.instruments.consumer_handled(self.name, time.perf_counter() - started, "handled")

    async def _handle(
        self, handler: Handler, event: Any, envelope: Envelope, delivery: Delivery
    ) -> None:
        context = MessageContext(
            delivery.id,
            envelope.type,
            envelope.source,
            envelope.subject,
            envelope.time,
            envelope.correlationid,
            envelope.traceparent,
            delivery.attempt,
        )
        headers = {INBOX_HEADER: f"{self.name}:{delivery.id}"}
        if envelope.traceparent:
            headers["traceparent"] = envelope.traceparent
            if envelope.tracestate:
                headers["tracestate"] = envelope.tracestate
        # What the handler appends is caused by this message, in its conversation.
        metadata = Metadata(envelope.correlationid or delivery.id, delivery.id, headers)
        attempt = 0
        while True:
            attempt += 1
            self._marked.discard(delivery.id)
            try:
                with ambient_metadata(metadata, replace=True):
                    await handler(event, context)
            except DuplicateMessageError:
                return  # another delivery of it committed first
            except StoreUnavailableError:
                raise  # our database, not the message: let the broker redeliver
            except Exception as exc:
                if attempt >= self.retries:
                    await self._bury(delivery, error_text(exc), attempt)
                    raise _Dead from exc
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
                continue
            if delivery.id not in self._marked:
                await self.storage.record_handled(self.name, delivery.id)
            self._marked.discard(delivery.id)
            return

    async def _bury(self, delivery: Delivery, error: str, attempts: int) -> None:
        log.error(
            "consumer dead-letters a message",
            extra={
                "consumer": self.name,
                "message_id": delivery.id,
                "type": delivery.type,
                "attempts": attempts,
                "error": error,
            },
        )
        await self.storage.add_dead_letter(
            DeadLetter(
                self.name,
                delivery.id,
                delivery.type,
                delivery.body,
                error,
                attempts,
                datetime.now(UTC),
            )
        )
        self.dead += 1

    async def redeliver(self, message_id: str) -> bool:
        """Run a dead letter through the handler again; True if it was handled this time."""
        letters = [
            d for d in await self.storage.dead_letters(self.name) if d.message_id == message_id
        ]
        if not letters:
            raise ChronikError(f"consumer {self.name!r} has no dead letter {message_id}")
        letter = letters[0]
        await self.storage.remove_dead_letter(self.name, message_id)
        dead_before = self.dead
        await self.deliver(
            Delivery(letter.message_id, letter.type, letter.body, letter.attempts + 1)
        )
        return self.dead == dead_before
