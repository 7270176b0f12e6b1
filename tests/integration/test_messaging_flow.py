"""Outbox, relay, broker and inbox end to end, on real servers (guarantees 3, 4 and 5).

A producer context appends numbered events; its outbox turns them into public
events in the same transaction; a relay publishes them; a consumer context records
each message it handles as one event of its own (see ``messaging_harness``). The
consumer's store is the witness: every message's effect once, each stream in order.
The wirings are the deployments chronik supports: PostgreSQL with NATS JetStream or
RabbitMQ, and the embedded SQLite with the in-process broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import psycopg
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.http import from_json as cloudevents_v1_from_json
from messaging_harness import (
    NATS_URL,
    RABBITMQ_URL,
    ConsumingContext,
    CountingBroker,
    KeptInside,
    Numbered,
    Producer,
    Seen,
    assert_exactly_once_in_order,
    close_broker,
    drained,
    forget_broker_state,
    nats_problem,
    public_numbered,
    rabbitmq_problem,
    read_everything,
    running_relay,
    subscribed,
    unique_context,
    wait_until,
)

from chronik.adapters import open_broker, open_database
from chronik.adapters.memory.broker import MemoryBroker
from chronik.adapters.nats import NatsBroker
from chronik.domain import event
from chronik.errors import ChronikError
from chronik.eventstore import EventTypes, Metadata, RecordedEvent
from chronik.eventstore.context import ambient_metadata
from chronik.messaging import (
    Delivery,
    Outbox,
    OutgoingMessage,
    PublishedLanguage,
    Translate,
    public,
)
from chronik.messaging.consumer import INBOX_HEADER
from chronik.messaging.port import Broker, OutboxRow
from chronik.messaging.relay import Relay
from conftest import service_missing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Wiring:
    """Where the two contexts keep their events and how messages travel between them."""

    producer_url: str
    consumer_url: str
    broker_url: str
    schemas: list[str] = field(default_factory=list)
    on_broker: list[tuple[str, str]] = field(default_factory=list)  # (consumer, context)

    async def open(
        self,
        stack: contextlib.AsyncExitStack,
        *,
        retries: int = 5,
        retry_backoff: float = 0.1,
    ) -> tuple[Producer, ConsumingContext, Broker]:
        """Both contexts and a connected broker, closed when ``stack`` closes."""
        producer = await Producer.open(self.producer_url, unique_context())
        stack.push_async_callback(producer.store.close)
        consuming = await ConsumingContext.open(
            self.consumer_url, producer, retries=retries, retry_backoff=retry_backoff
        )
        stack.push_async_callback(consuming.store.close)
        self.on_broker.append((consuming.name, producer.context))
        broker = await open_broker(self.broker_url)
        stack.push_async_callback(close_broker, broker)
        return producer, consuming, broker


WIRINGS = ["postgres+nats", "postgres+rabbitmq", "sqlite+memory"]


@pytest.fixture(params=WIRINGS)
async def wiring(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Wiring]:
    stores, brokers = str(request.param).split("+")
    if brokers == "nats":
        broker_url, problem = NATS_URL, await nats_problem()
    elif brokers == "rabbitmq":
        broker_url, problem = RABBITMQ_URL, await rabbitmq_problem()
    else:
        broker_url, problem = "memory://", None
    if problem is not None:
        service_missing(problem)
    if stores == "postgres":
        postgres_url: str = request.getfixturevalue("postgres_url")
        schema = f"t_{uuid.uuid4().hex[:16]}"
        wired = Wiring(
            f"{postgres_url}?schema={schema}_p",
            f"{postgres_url}?schema={schema}_c",
            broker_url,
            [f"{schema}_p", f"{schema}_c"],
        )
    else:
        # synchronous=normal: an fsync per consumer commit would make this a disk benchmark.
        wired = Wiring(
            f"sqlite:///{tmp_path}/producer.db",
            f"sqlite:///{tmp_path}/consumer.db?synchronous=normal",
            broker_url,
        )
    yield wired
    for consumer, context in wired.on_broker:
        await forget_broker_state(broker_url, consumer, context)
    if wired.schemas:
        with psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True) as conn:
            for schema in wired.schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def consumer_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/consumer.db"
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield f"{postgres_url}?schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _streams(count: int) -> list[str]:
    return [f"account-{i:03d}" for i in range(count)]


# -- a. volume ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_ten_thousand_events_have_one_effect_each_in_stream_order(wiring: Wiring) -> None:
    async with contextlib.AsyncExitStack() as stack:
        producer, consuming, broker = await wiring.open(stack)
        await stack.enter_async_context(subscribed(consuming, broker))
        await stack.enter_async_context(
            running_relay(Relay(producer.store, broker, storage=producer.outbox.storage))
        )
        await producer.write(_streams(100), 100, batch=10, writers=4)
        assert producer.written == 10_000
        # A quiet machine drains it in seconds; a loaded 2-core one may take minutes, so
        # the cap is wide and a stall (nothing moving for a minute) is what fails fast.
        await drained(producer, consuming, within=900)
        await asyncio.sleep(0.5)  # room for a late duplicate to show
        await assert_exactly_once_in_order(producer, consuming)
        assert consuming.consumer.dead == 0
        status = await producer.outbox.storage.outbox_status()
        assert (status.pending, status.published) == (0, 10_000)


# -- b. duplicates -----------------------------------------------------------------------


class DoublingBroker(CountingBroker):
    """Publishes every batch twice, as a relay killed before it marked a batch would."""

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[BaseException | None]:
        first = await self.inner.publish(messages)
        again = await self.inner.publish(messages)
        return [a or b for a, b in zip(first, again, strict=True)]


async def test_a_message_published_twice_has_one_effect(wiring: Wiring) -> None:
    async with contextlib.AsyncExitStack() as stack:
        producer, consuming, broker = await wiring.open(stack)
        if isinstance(broker, MemoryBroker):
            broker.dedup_window = 0  # let the copy through: the inbox must drop it
        doubling = DoublingBroker(broker)
        await stack.enter_async_context(subscribed(consuming, doubling))
        await stack.enter_async_context(
            running_relay(
                Relay(producer.store, doubling, storage=producer.outbox.storage, batch=16)
            )
        )
        await producer.write(_streams(10), 30, batch=3, writers=2)
        await drained(producer, consuming, within=180)

        async def copies_arrived() -> bool:
            return sum(doubling.deliveries.values()) >= 2 * producer.written

        if wiring.broker_url.startswith("nats://"):
            await asyncio.sleep(1.0)
            # JetStream drops the copy by its Nats-Msg-Id, the event id (guarantee 4).
            assert set(doubling.deliveries.values()) == {1}
        else:
            await wait_until("every copy to reach the consumer", copies_arrived, within=60)
        await assert_exactly_once_in_order(producer, consuming)
        assert set(consuming.calls.values()) == {1}, "the inbox let a copy reach the handler"


async def test_the_same_delivery_twice_or_at_two_replicas_at_once_has_one_effect(
    consumer_store_url: str,
) -> None:
    producer = await Producer.open("memory://", unique_context())
    first = await ConsumingContext.open(consumer_store_url, producer)
    # A second replica of the consuming service: its own store object on the same database.
    second = await ConsumingContext.open(consumer_store_url, producer, first.name)
    try:
        await first.consumer.setup()
        await second.consumer.setup()
        await producer.write(["account-000"], 40, batch=5, writers=1)
        rows = await producer.outbox.storage.pending(100)
        deliveries = [Delivery(r.message_id, r.type, r.body, 1) for r in rows]
        assert len(deliveries) == 40

        await first.consumer.deliver(deliveries[0])
        await first.consumer.deliver(deliveries[0])
        await second.consumer.deliver(deliveries[0])
        assert first.calls[deliveries[0].id] == 1
        assert second.calls[deliveries[0].id] == 0

        for delivery in deliveries[1:]:
            await asyncio.gather(
                first.consumer.deliver(delivery), second.consumer.deliver(delivery)
            )
        await assert_exactly_once_in_order(producer, first)
        assert first.consumer.dead == second.consumer.dead == 0
        # The race did happen: both replicas ran the handler, the inbox kept one effect.
        assert any(first.calls[d.id] and second.calls[d.id] for d in deliveries[1:])
    finally:
        await first.store.close()
        await second.store.close()
        await producer.store.close()


# -- c. dead letters ---------------------------------------------------------------------


async def test_a_message_that_always_fails_goes_to_the_dead_letters_and_the_rest_flow_on(
    wiring: Wiring,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        producer, consuming, broker = await wiring.open(stack, retries=3, retry_backoff=0.01)
        consuming.failing.add(("account-003", 5))
        consuming.fail_times[("account-007", 3)] = 2  # fails twice, then goes through
        await stack.enter_async_context(subscribed(consuming, broker))
        await stack.enter_async_context(
            running_relay(Relay(producer.store, broker, storage=producer.outbox.storage))
        )
        await producer.write(_streams(10), 20, batch=4, writers=2)
        await drained(producer, consuming, within=180)

        [poisoned] = [
            r
            for r in await producer.store.read_stream("account-003")
            if isinstance(r.event, Numbered) and r.event.seq == 5
        ]
        poisoned_id = str(poisoned.id)
        consumer = consuming.consumer
        [letter] = await consumer.storage.dead_letters(consuming.name)
        assert letter.message_id == poisoned_id
        assert letter.consumer == consuming.name
        assert letter.type == f"{producer.context}.numbered.v1"
        assert letter.attempts == 3
        assert "RuntimeError: cannot take account-003 #5 today" in letter.error
        assert consumer.dead == 1
        assert consuming.calls[poisoned_id] == 3
        [flaky] = [r for r in await producer.store.read_stream("account-007") if r.version == 3]
        assert consuming.calls[str(flaky.id)] == 3  # retried in place, not dead
        await assert_exactly_once_in_order(producer, consuming, missing=[("account-003", 5)])

        consuming.failing.clear()  # the handler is fixed
        assert await consumer.redeliver(poisoned_id) is True
        assert consuming.calls[poisoned_id] == 4
        assert await consumer.storage.dead_letters(consuming.name) == []
        assert await consumer.storage.handled(consuming.name, poisoned_id)
        seen = await consuming.store.read_stream("seen-account-003")
        seqs = [r.event.seq for r in seen if isinstance(r.event, Seen)]
        assert seqs == [1, 2, 3, 4, *range(6, 21), 5]
        with pytest.raises(ChronikError, match="no dead letter"):
            await consumer.redeliver(poisoned_id)
        assert consuming.calls[poisoned_id] == 4
        assert len(await consuming.seen()) == producer.written


# -- d. the envelope ---------------------------------------------------------------------


@event("messaging_test.account_opened")
@dataclass(frozen=True)
class AccountOpened:
    holder: str
    tags: tuple[str, ...]
    limit: int | None
    opened_at: datetime


@dataclass(frozen=True)
class OpenedMessage:
    """A public event with more kinds of fields than a number."""

    account: str
    holder: str
    tags: list[str]
    limit: int | None
    score: float
    opened_at: datetime


def _public_opened(context: str) -> type[OpenedMessage]:
    @public(f"{context}.account_opened.v1")
    @dataclass(frozen=True)
    class PublicOpened(OpenedMessage):
        pass

    return PublicOpened


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def producer_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/producer.db"
    else:
        postgres_url: str = request.getfixturevalue("postgres_url")
        schema = f"t_{uuid.uuid4().hex[:16]}"
        yield f"{postgres_url}?schema={schema}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@dataclass
class Written:
    """What a producer's outbox holds after a mix of appends, and what it was made from."""

    context: str
    language: PublishedLanguage
    translate: Translate
    rows: list[OutboxRow]
    published: dict[str, RecordedEvent]  # the events that left, by id


@contextlib.asynccontextmanager
async def _outbox_written(url: str) -> AsyncIterator[Written]:
    """Public events of two types, events kept inside, odd subjects, with and without metadata."""
    context = unique_context()
    numbered, opened = public_numbered(context), _public_opened(context)
    language = PublishedLanguage([numbered, opened])

    def translate(recorded: RecordedEvent) -> object | None:
        e = recorded.event
        if isinstance(e, Numbered):
            return numbered(recorded.stream_id, e.seq)
        if isinstance(e, AccountOpened):
            return opened(recorded.stream_id, e.holder, list(e.tags), e.limit, 0.5, e.opened_at)
        return None

    database = await open_database(url)
    store = database.event_store(EventTypes([Numbered, KeptInside, AccountOpened]))
    try:
        outbox = Outbox(store, translate, language, source=context, storage=database.messages())
        await outbox.setup()
        at = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
        streams = ["account-1", "konto-äöü-€-🙂", "with spaces/and:colons"]
        for i, stream in enumerate(streams):
            holder = f"holder {i} «ü»"
            await store.append(stream, [AccountOpened(holder, ("vip", f"t{i}"), i or None, at)])
            with ambient_metadata(Metadata(f"corr-{i}", headers={"traceparent": TRACEPARENT})):
                await store.append(stream, [Numbered(2), KeptInside("stays"), Numbered(3)])
            await store.append(stream, [KeptInside("only inside")])
        recorded = await read_everything(store)
        published = {str(r.id): r for r in recorded if not isinstance(r.event, KeptInside)}
        rows = await outbox.storage.pending(1000)
        assert sorted(r.message_id for r in rows) == sorted(published)
        assert [r.position for r in rows] == sorted(r.position for r in published.values())
        yield Written(context, language, translate, rows, published)
    finally:
        await database.close()


async def test_every_envelope_carries_its_event_and_its_data_fits_the_schema(
    producer_store_url: str,
) -> None:
    async with _outbox_written(producer_store_url) as written:
        language = written.language
        validators = {}
        for type_name in language.types:
            schema = language.schema(type_name)
            jsonschema.Draft202012Validator.check_schema(schema)
            validators[type_name] = jsonschema.Draft202012Validator(schema)
        for row in written.rows:
            cloud_event = JSONFormat().read(CloudEvent, row.body)  # validates as it parses
            source = written.published[row.message_id]
            expected = written.translate(source)
            assert expected is not None
            spec = language.spec_of(expected)
            assert cloud_event.get_id() == row.message_id == str(source.id)
            assert cloud_event.get_source() == written.context
            assert cloud_event.get_type() == spec.type == row.type
            assert cloud_event.get_subject() == source.stream_id == row.stream_id
            # The event's own time, as stored (PostgreSQL once gave hooks a time of its own).
            assert cloud_event.get_time() == source.recorded_at
            assert cloud_event.get_datacontenttype() == "application/json"
            assert cloud_event.get_extension("correlationid") == source.metadata.correlation_id
            assert cloud_event.get_extension("causationid") == source.metadata.causation_id
            traceparent = (source.metadata.headers or {}).get("traceparent")
            assert cloud_event.get_extension("traceparent") == traceparent
            data = cloud_event.get_data()
            assert isinstance(data, dict)
            validators[spec.type].validate(data)
            assert language.decode(spec.type, data) == expected
        correlations = {json.loads(r.body).get("correlationid") for r in written.rows}
        assert {"corr-0", "corr-1", "corr-2"} <= correlations

        # The schemas do reject data of the wrong shape: the checks above are not vacuous.
        numbered = f"{written.context}.numbered.v1"
        with pytest.raises(jsonschema.ValidationError):
            validators[numbered].validate({"stream": "account-1", "seq": "two"})


async def test_every_envelope_names_its_specversion_as_cloudevents_requires(
    producer_store_url: str,
) -> None:
    # A strict reader refuses an event without specversion (msgspec's omit_defaults once
    # dropped it); the SDK's newer reader above quietly assumes 1.0.
    async with _outbox_written(producer_store_url) as written:
        for row in written.rows:
            attributes = json.loads(row.body)
            required = {"specversion", "id", "source", "type"}
            assert required <= set(attributes), f"missing {required - set(attributes)}"
            assert attributes["specversion"] == "1.0"
            cloud_event = cloudevents_v1_from_json(row.body)
            assert cloud_event["specversion"] == "1.0"
            assert cloud_event["id"] == row.message_id


# -- e. metadata -------------------------------------------------------------------------


async def test_correlation_causation_and_traceparent_flow_from_producer_to_effect(
    wiring: Wiring,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        producer, consuming, broker = await wiring.open(stack)
        with ambient_metadata(Metadata("corr-1", headers={"traceparent": TRACEPARENT})):
            await producer.append_numbered("traced", 2)
        await producer.append_numbered("untraced", 1)
        produced = {r.stream_id + str(r.version): r for r in await read_everything(producer.store)}

        envelopes = {
            json.loads(r.body)["id"]: json.loads(r.body)
            for r in await producer.outbox.storage.pending(10)
        }
        for key in ("traced1", "traced2"):
            envelope = envelopes[str(produced[key].id)]
            assert envelope["correlationid"] == "corr-1"
            assert envelope["traceparent"] == TRACEPARENT
            assert envelope["causationid"] == produced[key].metadata.causation_id
        untraced = produced["untraced1"]
        envelope = envelopes[str(untraced.id)]
        assert envelope["correlationid"] == untraced.metadata.correlation_id == str(untraced.id)
        assert "traceparent" not in envelope

        await stack.enter_async_context(subscribed(consuming, broker))
        await stack.enter_async_context(
            running_relay(Relay(producer.store, broker, storage=producer.outbox.storage))
        )
        await drained(producer, consuming, within=180)

        for key in ("traced1", "traced2"):
            message_id = str(produced[key].id)
            [effect] = [
                r
                for r in await consuming.store.read_stream("seen-traced")
                if isinstance(r.event, Seen) and r.event.message_id == message_id
            ]
            assert effect.metadata.correlation_id == "corr-1"
            assert effect.metadata.causation_id == message_id
            assert effect.metadata.headers == {
                "traceparent": TRACEPARENT,
                INBOX_HEADER: f"{consuming.name}:{message_id}",
            }
            context = consuming.contexts[message_id]
            assert (context.correlation_id, context.traceparent) == ("corr-1", TRACEPARENT)
            assert (context.source, context.subject) == (producer.context, "traced")
            assert context.type == f"{producer.context}.numbered.v1"
            assert context.time == produced[key].recorded_at
            assert context.attempt >= 1
        [effect] = await consuming.store.read_stream("seen-untraced")
        assert effect.metadata.correlation_id == str(untraced.id)
        assert effect.metadata.causation_id == str(untraced.id)
        assert effect.metadata.headers == {INBOX_HEADER: f"{consuming.name}:{untraced.id}"}
        assert consuming.contexts[str(untraced.id)].traceparent is None


# -- redelivery ---------------------------------------------------------------------------


async def test_a_message_the_broker_delivers_again_keeps_its_place_in_the_stream(
    wiring: Wiring,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        producer, consuming, broker = await wiring.open(stack)
        # The consumer's database is away as #10, #90 and #170 come: each must be tried
        # again before the messages behind it, already at the consumer, take effect. (Three
        # of them: a NATS consumer that nak'ed with a delay lost the order only when its
        # next fetch beat the delay, a race each time; RabbitMQ's prefetch lost it always.)
        for seq in (10, 90, 170):
            consuming.store_down[("account-000", seq)] = 2
        await stack.enter_async_context(subscribed(consuming, broker))
        await stack.enter_async_context(
            running_relay(Relay(producer.store, broker, storage=producer.outbox.storage))
        )
        in_process = isinstance(broker, MemoryBroker)  # it delivers inside the relay's publish
        if not in_process:
            consuming.gate.clear()  # messages behind #10 are at the consumer when it fails
        await producer.write(["account-000"], 200, batch=20, writers=1)

        async def published() -> bool:
            return await producer.pending() == 0

        await wait_until("the relay to publish everything", published, within=30)
        consuming.gate.set()
        await drained(producer, consuming, within=300, stall=30)
        for recorded in await producer.store.read_stream("account-000"):
            if recorded.version in (10, 90, 170):
                assert consuming.calls[str(recorded.id)] == 3
        await assert_exactly_once_in_order(producer, consuming)


# -- f. shutdown -------------------------------------------------------------------------


async def test_closing_a_nats_broker_after_its_consumers_stopped_is_quick() -> None:
    problem = await nats_problem()
    if problem is not None:
        service_missing(problem)
    # One consumer of eight contexts: eight pull subscriptions, eight chances to hang (a
    # drain once waited 30 s on pull subscriptions that stopped consumers left behind).
    contexts, name = [unique_context() for _ in range(8)], f"idle-{uuid.uuid4().hex[:8]}"
    broker = NatsBroker(NATS_URL)
    await broker.connect()
    client = broker._nc  # to close the connection for good if close() hangs
    closing: asyncio.Task[None] | None = None
    try:

        async def ignore(delivery: Delivery) -> None:
            pass

        types = [f"{context}.numbered.v1" for context in contexts]
        subscription = await broker.subscribe(name, types, ignore)
        await asyncio.sleep(1.5)  # a fetch (1 s) comes back empty: the consumer is idle
        await subscription.stop()
        # Not wait_for: nats-py's drain swallows the cancellation wait_for would send.
        closing = asyncio.create_task(broker.close())
        done, _ = await asyncio.wait({closing}, timeout=2)  # a close takes milliseconds
        assert done, "NatsBroker.close() was still draining after 2 s"
    finally:
        if client is not None and not client.is_closed:
            await client.close()
        if closing is not None:
            await asyncio.wait({closing}, timeout=1)
            closing.cancel()
        for context in contexts:
            await forget_broker_state(NATS_URL, name, context)
