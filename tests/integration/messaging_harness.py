"""What the messaging integration tests share: two contexts, their events, the checks.

A producer context writes ``Numbered`` events (the n-th event of a stream carries
seq n) and publishes each as a public ``<context>.numbered.v1``; a consumer context
records each message it handles as one ``Seen`` event in ``seen-<source stream>``.
The consumer's own store then shows, stream by stream, which messages had an effect,
how often and in which order: ``assert_exactly_once_in_order`` reads it back.

Every test uses a fresh context name (the public type's prefix) and consumer name:
the shared NATS and RabbitMQ servers keep streams, durable consumers and queues
across tests and runs, and names of their own keep tests from seeing each other's
messages. ``forget_broker_state`` removes what a test left on a shared server.
This module does not import pytest: the relay worker process imports it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from chronik.adapters import open_database
from chronik.domain import event
from chronik.errors import StoreUnavailableError
from chronik.eventstore import (
    BaseEventStore,
    EventTypes,
    ExpectedVersion,
    RecordedEvent,
)
from chronik.messaging import (
    Consumer,
    MessageContext,
    Outbox,
    PublishedLanguage,
    Relay,
    Translate,
    public,
)
from chronik.messaging.port import (
    Broker,
    Delivery,
    MessageHandler,
    MessageStorage,
    OutgoingMessage,
    Subscription,
)

NATS_URL = "nats://127.0.0.1:4222"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1/"
NATS_STREAM = "CHRONIK"


@event("messaging_test.numbered")
@dataclass(frozen=True)
class Numbered:
    """The producer's domain event: the n-th event of its stream carries seq n."""

    seq: int


@event("messaging_test.kept_inside")
@dataclass(frozen=True)
class KeptInside:
    """A domain event the producer's translation keeps inside the context."""

    note: str


@event("messaging_test.seen")
@dataclass(frozen=True)
class Seen:
    """The consumer's effect: it handled ``message_id``, the seq-th of ``source_stream``."""

    source_stream: str
    seq: int
    message_id: str


PRODUCER_TYPES = EventTypes([Numbered, KeptInside])
CONSUMER_TYPES = EventTypes([Seen])


@dataclass(frozen=True)
class NumberedMessage:
    """The public shape of ``Numbered``; each test makes a public type of its own of it."""

    stream: str
    seq: int


def unique_context(prefix: str = "bank") -> str:
    """A context name no other test or run uses: ``bank`` and 8 hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def public_numbered(context: str) -> type[NumberedMessage]:
    """A public event class ``<context>.numbered.v1`` of the shape ``NumberedMessage``."""

    @public(f"{context}.numbered.v1")
    @dataclass(frozen=True)
    class PublicNumbered(NumberedMessage):
        pass

    return PublicNumbered


def translation(message: type[NumberedMessage]) -> Translate:
    """The producer's translation: ``Numbered`` leaves as ``message``, nothing else leaves."""

    def translate(recorded: RecordedEvent) -> object | None:
        if isinstance(recorded.event, Numbered):
            return message(recorded.stream_id, recorded.event.seq)
        return None

    return translate


@dataclass
class Producer:
    """The producing context: a store whose appends fill its outbox."""

    store: BaseEventStore
    outbox: Outbox
    context: str
    message: type[NumberedMessage]
    language: PublishedLanguage
    versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def open(cls, url: str, context: str) -> Producer:
        message = public_numbered(context)
        language = PublishedLanguage([message])
        database = await open_database(url)
        # The store owns the database: closing it closes the database.
        store = database.event_store(PRODUCER_TYPES, closes_database=True)
        outbox = Outbox(
            store, translation(message), language, source=context, storage=database.messages()
        )
        await outbox.setup()
        return cls(store, outbox, context, message, language)

    @property
    def written(self) -> int:
        return sum(self.versions.values())

    async def append_numbered(self, stream: str, count: int) -> None:
        """Append the next ``count`` numbers of ``stream`` in one append."""
        version = self.versions.get(stream, 0)
        events = [Numbered(version + i) for i in range(1, count + 1)]
        await self.store.append(stream, events, expected=ExpectedVersion.exactly(version))
        self.versions[stream] = version + count

    async def write(
        self,
        streams: Sequence[str],
        per_stream: int,
        *,
        batch: int = 10,
        writers: int = 4,
        pause: float = 0.0,
    ) -> None:
        """Append ``per_stream`` more numbers to each stream, ``batch`` per append.

        ``writers`` tasks share the streams (each stream belongs to one task, so its
        appends stay in order) and go round their streams; ``pause`` slows each task
        down between two appends, to spread the writing over time.
        """

        async def writer(own: Sequence[str]) -> None:
            left = dict.fromkeys(own, per_stream)
            while left:
                for stream in list(left):
                    count = min(batch, left[stream])
                    await self.append_numbered(stream, count)
                    left[stream] -= count
                    if not left[stream]:
                        del left[stream]
                    if pause:
                        await asyncio.sleep(pause)

        await asyncio.gather(*(writer(streams[i::writers]) for i in range(writers)))

    async def pending(self) -> int:
        return (await self.outbox.storage.outbox_status()).pending


class ConsumingContext:
    """The consuming context: one ``Seen`` event per message handled, nothing else.

    ``failing`` names messages (by source stream and seq) whose handler raises while
    they are in it, ``fail_times`` messages whose handler raises that many more times,
    ``store_down`` messages whose handler finds the consumer's database unreachable
    that many more times (the consumer leaves those to the broker to redeliver);
    ``calls`` counts the handler's calls per message id, ``contexts`` keeps the last
    MessageContext the handler got for each. The handler waits while ``gate`` is closed.
    """

    def __init__(
        self,
        store: BaseEventStore,
        producer_language: PublishedLanguage,
        message: type[NumberedMessage],
        name: str,
        *,
        storage: MessageStorage,
        retries: int = 5,
        retry_backoff: float = 0.1,
    ) -> None:
        self.store = store
        self.storage = storage
        self.name = name
        self.failing: set[tuple[str, int]] = set()
        self.fail_times: Counter[tuple[str, int]] = Counter()
        self.store_down: Counter[tuple[str, int]] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: Counter[str] = Counter()
        self.contexts: dict[str, MessageContext] = {}
        self.consumer = Consumer(
            name,
            store,
            producer_language,
            {message: self.on_numbered},
            storage=storage,
            retries=retries,
            retry_backoff=retry_backoff,
        )

    @classmethod
    async def open(
        cls,
        url: str,
        producer: Producer,
        name: str | None = None,
        *,
        retries: int = 5,
        retry_backoff: float = 0.1,
    ) -> ConsumingContext:
        database = await open_database(url)
        # The store owns the database: closing it closes the database.
        store = database.event_store(CONSUMER_TYPES, closes_database=True)
        return cls(
            store,
            producer.language,
            producer.message,
            name or f"ledger-{uuid.uuid4().hex[:8]}",
            storage=database.messages(),
            retries=retries,
            retry_backoff=retry_backoff,
        )

    async def on_numbered(self, message: NumberedMessage, context: MessageContext) -> None:
        await self.gate.wait()
        self.calls[context.message_id] += 1
        self.contexts[context.message_id] = context
        key = (message.stream, message.seq)
        if key in self.failing:
            raise RuntimeError(f"cannot take {message.stream} #{message.seq} today")
        if self.fail_times[key] > 0:
            self.fail_times[key] -= 1
            raise RuntimeError(f"cannot take {message.stream} #{message.seq} yet")
        if self.store_down[key] > 0:
            self.store_down[key] -= 1
            raise StoreUnavailableError("the consumer's database does not answer (simulated)")
        await self.store.append(
            f"seen-{context.subject}", [Seen(message.stream, message.seq, context.message_id)]
        )

    async def seen(self) -> list[RecordedEvent]:
        """Every effect, in the order the consumer's store recorded them."""
        return await read_everything(self.store)


async def read_everything(store: BaseEventStore) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    after = 0
    while page := await store.read_all(after, limit=5000):
        events += page
        after = page[-1].position
    return events


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], *, within: float, every: float = 0.05
) -> None:
    """Return once ``check`` says True; AssertionError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


async def drained(
    producer: Producer,
    consuming: ConsumingContext,
    *,
    within: float,
    stall: float | None = 60.0,
) -> None:
    """Wait until the outbox is empty and the consumer handled every message written.

    ``within`` is a cap, not a speed expectation: on a loaded machine the flow can be
    slow but steady. ``stall`` gives up early once neither the outbox nor the consumer
    moved for that many seconds: messages that stopped flowing will not flow by
    waiting longer.
    """
    progress: list[tuple[int, int]] = []
    moved = time.monotonic()

    async def done() -> bool:
        nonlocal moved
        pending = await producer.pending()
        handled = consuming.consumer.handled + consuming.consumer.dead
        if handled >= producer.written and pending == 0:
            return True
        if not progress or progress[-1] != (pending, handled):
            progress.append((pending, handled))
            moved = time.monotonic()
        elif stall is not None and time.monotonic() - moved > stall:
            raise AssertionError(f"nothing moved for {stall:g} s")
        return False

    try:
        await wait_until("the outbox to drain", done, within=within, every=0.1)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: {producer.written} written, {await producer.pending()} still in the "
            f"outbox, {consuming.consumer.handled} handled, {consuming.consumer.dead} dead"
        ) from None


async def assert_exactly_once_in_order(
    producer: Producer,
    consuming: ConsumingContext,
    *,
    missing: Sequence[tuple[str, int]] = (),
) -> None:
    """Each message written had its effect once, in its stream's order; none other did.

    ``missing`` are messages expected to have no effect (dead letters). The message id
    of each effect must be the id of the event it was published for (guarantee 4).
    """
    ids = {
        str(r.id): (r.stream_id, r.version)
        for r in await read_everything(producer.store)
        if isinstance(r.event, Numbered)
    }
    assert len(ids) == producer.written, "the producer's store lacks events it wrote"
    by_stream: defaultdict[str, list[int]] = defaultdict(list)
    handled: Counter[str] = Counter()
    strangers: list[str] = []
    for recorded in await consuming.seen():
        seen = recorded.event
        assert isinstance(seen, Seen)
        assert recorded.stream_id == f"seen-{seen.source_stream}"
        handled[seen.message_id] += 1
        if ids.get(seen.message_id) != (seen.source_stream, seen.seq):
            strangers.append(f"{seen.message_id} as {seen.source_stream} #{seen.seq}")
        by_stream[seen.source_stream].append(seen.seq)
    twice = {m: n for m, n in handled.items() if n > 1}
    assert not twice, f"{len(twice)} messages had more than one effect, e.g. {list(twice)[:3]}"
    assert not strangers, f"effects of messages never published: {strangers[:3]}"
    skip = set(missing)
    lost = [
        f"{stream} #{seq}"
        for stream, version in producer.versions.items()
        for seq in range(1, version + 1)
        if (stream, seq) not in skip and seq not in by_stream.get(stream, ())
    ]
    assert not lost, f"{len(lost)} messages had no effect, e.g. {lost[:5]}"
    unexpected = [f"{s} #{n}" for s, n in skip if n in by_stream.get(s, ())]
    assert not unexpected, f"dead letters had an effect anyway: {unexpected}"
    for stream, version in producer.versions.items():
        expected = [n for n in range(1, version + 1) if (stream, n) not in skip]
        got = by_stream.get(stream, [])
        if got != expected:
            first = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
            raise AssertionError(
                f"stream {stream}: effects out of order from the {first + 1}th on: "
                f"{got[max(0, first - 2) : first + 3]}, expected "
                f"{expected[max(0, first - 2) : first + 3]}"
            )
    assert sum(handled.values()) == producer.written - len(skip)


class CountingBroker:
    """A broker as it is, that counts how often each message reached the consumer."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.deliveries: Counter[str] = Counter()

    @property
    def problem(self) -> str | None:
        return self.inner.problem

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await close_broker(self.inner)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        return await self.inner.publish(messages)

    async def subscribe(
        self,
        consumer: str,
        types: Sequence[str],
        handler: MessageHandler,
        *,
        lanes: int = 1,
        batch: int | None = None,
    ) -> Subscription:
        async def counted(delivery: Delivery) -> None:
            self.deliveries[delivery.id] += 1
            await handler(delivery)

        return await self.inner.subscribe(consumer, types, counted, lanes=lanes, batch=batch)


@contextlib.asynccontextmanager
async def running_relay(relay: Relay) -> AsyncIterator[Relay]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop), name="relay")
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def subscribed(consuming: ConsumingContext, broker: Broker) -> AsyncIterator[Consumer]:
    await consuming.consumer.start(broker)
    try:
        yield consuming.consumer
    finally:
        await consuming.consumer.stop()


async def close_broker(broker: Broker) -> None:
    """Close a broker, giving up on a graceful close after a second.

    A close that hangs (NatsBroker's drain once waited 30 s on pull subscriptions that
    stopped consumers left behind) should fail its own test, not stall the others: the
    NATS client is then closed without draining.
    """
    client = getattr(broker, "_nc", None)  # NatsBroker's nats client, None for the others
    closing = asyncio.create_task(broker.close())
    await asyncio.wait({closing}, timeout=1)  # not wait_for: the drain swallows a cancel
    if closing.done():
        return
    if client is not None and not client.is_closed:
        await client.close()
    await asyncio.wait({closing}, timeout=1)
    closing.cancel()


async def nats_problem(url: str = NATS_URL) -> str | None:
    """None if a NATS server with JetStream answers at ``url``, else what is wrong."""
    import nats
    import nats.errors

    try:
        client = await nats.connect(
            servers=[url], connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
        )
    except Exception as exc:
        return f"NATS is not reachable at {url}: {exc!r}"
    try:
        await client.jetstream(timeout=3).account_info()
    except Exception as exc:
        return f"NATS at {url} has no JetStream: {exc!r}"
    finally:
        await client.close()
    return None


async def rabbitmq_problem(url: str = RABBITMQ_URL) -> str | None:
    """None if RabbitMQ answers at ``url`` with these credentials, else what is wrong."""
    import aio_pika

    try:
        connection = await aio_pika.connect(url, timeout=3)
    except Exception as exc:
        return f"RabbitMQ is not reachable at {url}: {exc!r}"
    await connection.close()
    return None


async def forget_broker_state(broker_url: str, consumer: str, context: str) -> None:
    """Remove what a test left on a shared broker: its durable consumer or queue, its messages."""
    if broker_url.startswith("nats://"):
        import nats
        import nats.js.errors

        client = await nats.connect(servers=[broker_url], connect_timeout=3)
        try:
            js = client.jetstream(timeout=5)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(NATS_STREAM, f"{consumer}-{context}")
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.purge_stream(NATS_STREAM, subject=f"chronik.{context}.>")
        finally:
            await client.close()
    elif broker_url.startswith("amqp://"):
        import aio_pika

        connection = await aio_pika.connect(broker_url, timeout=5)
        try:
            channel = await connection.channel()
            await channel.queue_delete(f"chronik.{consumer}")
        finally:
            await connection.close()
