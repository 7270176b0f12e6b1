"""chronik's messaging workloads: outbox, relay and consumer on PostgreSQL with a broker.

The backend names the broker (``nats``: JetStream, ``rabbitmq``); the events, the outbox
and the inbox live in the target's PostgreSQL schema. Every run publishes under a source
context of its own (see :mod:`benchmarks.messaging`), through chronik's public API:
``Outbox`` (an append hook: one outbox row per event, in the append's transaction),
``Relay`` with its defaults (batches of 256, published pipelined, marked published once
acked), ``Consumer`` (inbox mark in the effect's transaction). Brokers are opened by URL.

``h_relay_drain``: untimed, ``relay_drain`` events are appended in batches of 100 (a
new stream per batch) with the outbox installed, so the outbox holds one message per
event. Timed: a relay starts and drains it; the clock stops when the relay has marked
every message published (its ``relayed`` counter, polled every millisecond: the same
moment as ``outbox_status().pending == 0``, without counting the outbox each time). Then
the outbox is checked empty and the broker's copy complete (untimed).

``h_e2e_p99_ms``: a producer store with the outbox and a relay, and in the same process
a consumer with a store of its own (schema ``<schema>_in``) whose handler appends one
event per message. The producer appends one event per millisecond (E2E_RATE) for
``e2e_seconds``, each started at its due time by the clock as a task of its own (an
open loop: a slow append delays none after it, so lateness does not add up), with an id
it chose, which is the message id. Latency of a message: the moment the consumer's
append returned (the effect and its inbox mark committed) minus the moment the
producer's append returned (the event and its outbox row committed). A warm-up of 50
events at the same rate goes first, untimed. The row's rate (events / seconds) is the
rate achieved: effects from the schedule's start to the last effect. The run waits for
the last effects half as long as the load was offered (at least 1 s); should some still
be missing then, they count with the latency they had at that moment, and the note says
the percentiles are lower bounds (the report marks them ">=").

``h_consume_drain`` (NATS): untimed, as many messages as ``h_relay_drain`` drains are
published to JetStream as the relay publishes them, message n from source stream
n % 1,000 (100 in the quick size). Timed: a ``Consumer`` with its default lanes and
batch starts and drains them; each message's effect is one append of ``ItemReceived``
to ``received-<source stream>`` with its inbox mark; the clock stops at the last
effect. Then (timed apart) the same appends go to a fresh schema without broker or
inbox, by as many writers as the consumer has lanes, each stream in one writer: the
note gives that rate and the consumer's ratio to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    BATCH_EVENTS,
    CONSUME_STREAMS,
    E2E_RATE,
    Measurement,
    Size,
    Target,
    new_stream_id,
    percentile,
)
from benchmarks.messaging import (
    RunNames,
    bind_sink,
    broker_run,
    describe_broker,
    envelope_body,
    language,
    nats_stored,
    new_message_id,
    public_item_class,
    sink_depth,
)
from benchmarks.systems.chronik_system import TYPES, ItemAdded, _event
from chronik import EventTypes, event
from chronik.adapters import open_broker, open_database
from chronik.eventstore import BaseEventStore, NewEvent, RecordedEvent
from chronik.eventstore.ids import uuid7
from chronik.messaging import Consumer, MessageContext, Outbox, Relay
from chronik.messaging.outbox import Translate
from chronik.messaging.port import MessageStorage, OutgoingMessage

# The relay's wait when idle: a wake-up comes from the appends in this process at once;
# a short wait only makes stopping it quick.
RELAY_IDLE_WAIT_S = 0.1
# How often the drain's clock looks at the relay's progress.
POLL_S = 0.001
E2E_WARMUP = 50
# How long the warm-up may take to be effected.
E2E_WARMUP_WAIT_S = 30.0
# How long to wait for the last effects after the last append returned: half as long as
# the load was offered, at least this. What is not effected by then is counted with the
# latency it had at that moment, a lower bound (said in the note), which keeps a run
# bounded (and the quick run short) when the consumer cannot keep up.
E2E_MIN_SETTLE_S = 1.0
# h_consume_drain: messages per publish while pre-filling, and how long the drain may take.
CONSUME_PREFILL_CHUNK = 512
CONSUME_WAIT_S = 300.0


@event("bench.item_received")
@dataclass(frozen=True, slots=True)
class ItemReceived:
    message_id: str
    amount: int


RECEIVED_TYPES = EventTypes([ItemReceived])


def _url(target: Target, schema: str) -> str:
    return f"{target.postgres_url}?schema={schema}"


def _translate(public_class: type) -> Translate:
    def translate(recorded: RecordedEvent) -> object | None:
        domain = recorded.event
        if not isinstance(domain, ItemAdded):
            return None
        message: object = public_class(domain.label, domain.amount, domain.at)
        return message

    return translate


async def _outbox(
    store: BaseEventStore, storage: MessageStorage, names: RunNames, public_class: type
) -> Outbox:
    outbox = Outbox(
        store,
        _translate(public_class),
        language(public_class),
        source=names.source,
        storage=storage,
    )
    await outbox.setup()
    return outbox


async def _stored(target: Target, names: RunNames) -> int | None:
    if target.backend == "nats":
        return await nats_stored(target, names)
    return await sink_depth(target, names)


async def _mean_body(outbox: Outbox) -> float:
    rows = await outbox.storage.pending(1_000)
    return sum(len(r.body) for r in rows) / len(rows)


async def _h_relay_drain(target: Target, size: Size) -> Measurement:
    count = size.relay_drain
    async with broker_run(target) as names:
        server = await describe_broker(target)
        await bind_sink(target, names)
        public_class = public_item_class(names)
        database = await open_database(_url(target, target.postgres_schema))
        store = database.event_store(TYPES)
        try:
            outbox = await _outbox(store, database.messages(), names, public_class)
            for start in range(0, count, BATCH_EVENTS):
                n = min(BATCH_EVENTS, count - start)
                await store.append(new_stream_id(), [_event(start + i) for i in range(n)])
            status = await outbox.storage.outbox_status()
            if status.pending != count:
                raise RuntimeError(f"the outbox holds {status.pending}, expected {count}")
            mean = await _mean_body(outbox)
            broker = await open_broker(target.broker_url)
            try:
                relay = Relay(
                    store, broker, storage=database.messages(), idle_wait=RELAY_IDLE_WAIT_S
                )
                stop = asyncio.Event()
                started = time.perf_counter()
                task = asyncio.create_task(relay.run(stop))
                # The relay signals nothing when it is done: look at its counter.
                while relay.relayed < count and not task.done():  # noqa: ASYNC110
                    await asyncio.sleep(POLL_S)
                seconds = time.perf_counter() - started
                stop.set()
                await task
                if relay.error is not None:
                    raise RuntimeError(f"the relay failed: {relay.error}")
            finally:
                await broker.close()
            status = await outbox.storage.outbox_status()
            if status.pending != 0 or relay.relayed != count:
                raise RuntimeError(f"relayed {relay.relayed}; outbox status {status}")
        finally:
            await database.close()
        stored = await _stored(target, names)
        if stored != count:
            raise RuntimeError(f"the broker holds {stored} of {count} messages")
    where = "JetStream stream CHRONIK" if target.backend == "nats" else "a bound durable queue"
    return Measurement(
        count,
        seconds,
        note=f"{server}; relay batches of {relay.batch}, each published pipelined then"
        f" marked published; {mean:.0f}-byte messages, all {stored:,} stored in {where}",
    )


class _Offered:
    """The producer's side of h_e2e_p99_ms: an open loop of appends on a steady schedule.

    Each append starts at its due time by the clock, as a task of its own, whether the
    ones before it have returned or not: a slow append delays nothing after it, and
    appends that overlap share a commit (group commit), as concurrent requests would.
    """

    def __init__(self, store: BaseEventStore) -> None:
        self.store = store
        self.committed: dict[str, float] = {}
        self.max_late_s = 0.0  # the latest start of an append after its due time
        self.max_in_flight = 0

    async def _append(self, n: int) -> None:
        event_id = uuid7()
        await self.store.append(new_stream_id(), [NewEvent(_event(n), id=event_id)])
        self.committed[str(event_id)] = time.perf_counter()

    async def offer(self, count: int, rate: int, first: int = 0) -> float:
        """Append ``count`` events at ``rate``/s; returns when the schedule started."""
        interval = 1.0 / rate
        in_flight: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for i in range(count):
            due = start + i * interval
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                self.max_late_s = max(self.max_late_s, now - due)
            task = asyncio.create_task(self._append(first + i))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            self.max_in_flight = max(self.max_in_flight, len(in_flight))
        await asyncio.gather(*in_flight)
        return start


async def _h_e2e(target: Target, size: Size) -> Measurement:
    count = E2E_RATE * size.e2e_seconds
    async with broker_run(target) as names:
        server = await describe_broker(target)
        public_class = public_item_class(names)
        producing = await open_database(_url(target, target.postgres_schema))
        producer = producing.event_store(TYPES)
        receiving = await open_database(_url(target, f"{target.postgres_schema}_in"))
        receiver = receiving.event_store(RECEIVED_TYPES)
        effected: dict[str, float] = {}
        expected = E2E_WARMUP
        all_in = asyncio.Event()

        async def on_item(item: Any, context: MessageContext) -> None:
            await receiver.append(
                f"received-{context.subject}", [ItemReceived(context.message_id, item.amount)]
            )
            effected[context.message_id] = time.perf_counter()
            if len(effected) >= expected:
                all_in.set()

        consumer = Consumer(
            names.consumer,
            receiver,
            language(public_class),
            {public_class: on_item},
            storage=receiving.messages(),
        )
        relay_broker = await open_broker(target.broker_url)
        consumer_broker = await open_broker(target.broker_url)
        stop = asyncio.Event()
        relay_task: asyncio.Task[None] | None = None
        try:
            await _outbox(producer, producing.messages(), names, public_class)
            await consumer.start(consumer_broker)
            relay = Relay(
                producer, relay_broker, storage=producing.messages(), idle_wait=RELAY_IDLE_WAIT_S
            )
            relay_task = asyncio.create_task(relay.run(stop))
            offered = _Offered(producer)

            await offered.offer(E2E_WARMUP, E2E_RATE)
            await asyncio.wait_for(all_in.wait(), E2E_WARMUP_WAIT_S)
            warm = set(offered.committed)
            offered = _Offered(producer)
            all_in.clear()
            expected = E2E_WARMUP + count

            started = await offered.offer(count, E2E_RATE, first=E2E_WARMUP)
            offered_s = time.perf_counter() - started
            settle_s = max(E2E_MIN_SETTLE_S, size.e2e_seconds / 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), settle_s)
            cutoff = time.perf_counter()
            done = {i: effected[i] for i in offered.committed if i in effected}
        finally:
            stop.set()
            if relay_task is not None:
                await relay_task
            await consumer.stop()
            await relay_broker.close()
            await consumer_broker.close()
            await producing.close()
            await receiving.close()

    if len(offered.committed) != count or warm & set(offered.committed) or not done:
        raise RuntimeError(f"{len(offered.committed)} appends, {len(done)} effected of {count}")
    return e2e_measurement(
        offered,
        done,
        count,
        timing=(started, cutoff, offered_s, settle_s),
        where=f"<= {offered.max_in_flight:,} in flight); one process; {server}",
    )


def e2e_measurement(
    offered: Any,
    done: dict[str, float],
    count: int,
    *,
    timing: tuple[float, float, float, float],
    where: str,
) -> Measurement:
    """The h_e2e figures from each offered append's commit time and its effect's time.

    ``timing`` is (the offer's start, the cutoff, seconds offering, seconds let settle);
    an append not effected by the cutoff counts with its latency then, a lower bound.
    ``where`` ends the note (how it ran: in flight, processes, the server).
    """
    started, cutoff, offered_s, settle_s = timing
    latencies = [(done.get(i, cutoff) - t) * 1000 for i, t in offered.committed.items()]
    missing = count - len(done)
    seconds = (max(done.values()) if missing == 0 else cutoff) - started
    if missing:
        outcome = (
            f"p50/p99 are LOWER BOUNDS: {missing:,} of {count:,} had no effect {settle_s:.1f} s"
            f" after the last append (counted with their latency then); {len(done):,} effected"
            f" at {len(done) / seconds:,.0f}/s"
        )
    else:
        outcome = f"all {count:,} effected at {count / seconds:,.0f}/s"
    return Measurement(
        len(done),
        seconds,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        note=f"{outcome}; max {max(latencies):,.0f} ms. Offered at {E2E_RATE:,}/s, open loop,"
        f" over {offered_s:.2f} s (appends started <= {offered.max_late_s * 1000:.0f} ms late,"
        f" {where}",
    )


async def _prefill_nats(target: Target, names: RunNames, count: int, streams: int) -> None:
    """Publish ``count`` envelopes as the relay would, message n from stream n % streams."""
    keys = [new_stream_id() for _ in range(streams)]
    broker = await open_broker(target.broker_url)
    try:
        for start in range(0, count, CONSUME_PREFILL_CHUNK):
            batch = []
            for n in range(start, min(count, start + CONSUME_PREFILL_CHUNK)):
                message_id = new_message_id()
                key = keys[n % streams]
                batch.append(
                    OutgoingMessage(
                        message_id, names.type, key, envelope_body(names, message_id, key, n)
                    )
                )
            outcomes = await broker.publish(batch)
            failed = [o for o in outcomes if o is not None]
            if failed:
                raise RuntimeError(f"pre-filling failed: {failed[0]!r}")
    finally:
        await broker.close()


async def _plain_appends(
    target: Target, effects: list[tuple[str, str, int]], writers: int
) -> float:
    """The same appends as the consumer's effects, no broker and no inbox: seconds taken.

    ``writers`` tasks (as many as the consumer's lanes) share the streams, each stream in
    one task, in the order the consumer got them.
    """
    database = await open_database(_url(target, f"{target.postgres_schema}_plain"))
    store = database.event_store(RECEIVED_TYPES)
    try:
        by_writer: list[list[tuple[str, str, int]]] = [[] for _ in range(writers)]
        lane_of: dict[str, int] = {}
        for effect in effects:
            lane = lane_of.setdefault(effect[0], len(lane_of) % writers)
            by_writer[lane].append(effect)

        async def writer(own: list[tuple[str, str, int]]) -> None:
            for stream, message_id, amount in own:
                await store.append(f"received-{stream}", [ItemReceived(message_id, amount)])

        started = time.perf_counter()
        await asyncio.gather(*(writer(own) for own in by_writer))
        return time.perf_counter() - started
    finally:
        await database.close()


async def _h_consume_drain(target: Target, size: Size, streams: int) -> Measurement:
    count = size.relay_drain
    async with broker_run(target) as names:
        server = await describe_broker(target)
        public_class = public_item_class(names)
        receiving = await open_database(_url(target, target.postgres_schema))
        receiver = receiving.event_store(RECEIVED_TYPES)
        effects: list[tuple[str, str, int]] = []
        all_in = asyncio.Event()

        async def on_item(item: Any, context: MessageContext) -> None:
            await receiver.append(
                f"received-{context.subject}", [ItemReceived(context.message_id, item.amount)]
            )
            effects.append((context.subject, context.message_id, item.amount))
            if len(effects) >= count:
                all_in.set()

        consumer = Consumer(
            names.consumer,
            receiver,
            language(public_class),
            {public_class: on_item},
            storage=receiving.messages(),
        )
        broker = await open_broker(target.broker_url)
        try:
            await consumer.setup()
            # Subscribed and stopped once: the durable consumer exists before the fill.
            await consumer.start(broker)
            await consumer.stop()
            await _prefill_nats(target, names, count, streams)
            stored = await nats_stored(target, names)
            if stored != count:
                raise RuntimeError(f"the stream holds {stored} of {count} messages")
            started = time.perf_counter()
            await consumer.start(broker)
            await asyncio.wait_for(all_in.wait(), CONSUME_WAIT_S)
            seconds = time.perf_counter() - started
            await consumer.stop()
            handled = consumer.handled
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            await broker.close()
            await receiving.close()
        if handled != count or len({m for _, m, _ in effects}) != count:
            raise RuntimeError(f"{handled} handled, {len(effects)} effects of {count}")
        plain_s = await _plain_appends(target, effects, consumer.lanes)
    rate, plain = count / seconds, count / plain_s
    return Measurement(
        count,
        seconds,
        note=f"{server}; {streams:,} source streams; consumer with {consumer.lanes} lanes,"
        f" batch {consumer.batch}; the same {count:,} appends without broker or inbox"
        f" ({consumer.lanes} writers): {plain:,.0f}/s, so the consumer reaches"
        f" {rate / plain:.2f}x of them",
    )


def run(workload: str, target: Target, size: Size) -> Measurement:
    if workload == "h_consume_drain":
        streams = CONSUME_STREAMS["quick" if size.relay_drain < 50_000 else "full"]
        return asyncio.run(_h_consume_drain(target, size, streams))
    if workload == "h_relay_drain":
        return asyncio.run(_h_relay_drain(target, size))
    if workload == "h_e2e_p99_ms":
        return asyncio.run(_h_e2e(target, size))
    raise ValueError(f"not a messaging workload: {workload!r}")
