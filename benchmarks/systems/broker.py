"""The broker's own client alone: the ceiling of the messaging workloads.

``h_relay_drain``: publish as many messages as chronik's outbox holds, of the same size
and shape (the CloudEvents envelope chronik writes), where chronik's relay publishes
them, pipelined with :data:`BROKER_WINDOW` (256) messages in flight as a sliding window.
NATS: JetStream ``publish_async`` with ``Nats-Msg-Id``, the context's
``publish_async_max_pending`` holding the window; RabbitMQ: aio-pika on a channel with
publisher confirms, persistent messages to the topic exchange ``chronik``, each publish
awaiting its confirm, at most 256 outstanding. Timed from the first publish to the last
ack; connecting is untimed. On RabbitMQ the same durable queue as chronik's run is bound,
so the messages are routed and stored alike.

``h_e2e_p99_ms`` is not applicable: without an event store there is no commit to
measure from and no effect to commit.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import nats

from benchmarks.common import (
    BROKER_WINDOW,
    MESSAGING_BACKENDS,
    Measurement,
    NotApplicable,
    Size,
    Target,
    new_stream_id,
    unknown_workload,
)
from benchmarks.messaging import (
    AMQP_EXCHANGE,
    NATS_STREAM,
    RunNames,
    bind_sink,
    broker_run,
    describe_broker,
    envelope_body,
    nats_stored,
    new_message_id,
    sink_depth,
)
from chronik.messaging.envelope import CONTENT_TYPE

# Messages of one stream per batch of this many, as chronik's outbox is pre-filled.
_PER_STREAM = 100
_TIMEOUT_S = 10.0


def _messages(names: RunNames, count: int) -> list[tuple[str, bytes]]:
    messages = []
    stream_id = new_stream_id()
    for n in range(count):
        if n % _PER_STREAM == 0:
            stream_id = new_stream_id()
        message_id = new_message_id()
        messages.append((message_id, envelope_body(names, message_id, stream_id, n)))
    return messages


async def _publish_nats(
    target: Target, names: RunNames, messages: list[tuple[str, bytes]]
) -> float:
    nc = await nats.connect(servers=[target.broker_url], connect_timeout=5)
    try:
        js = nc.jetstream(timeout=_TIMEOUT_S, publish_async_max_pending=BROKER_WINDOW)
        await js.stream_info(NATS_STREAM)  # chronik's stream exists (its relay creates it)
        subject = names.subject
        started = time.perf_counter()
        # One deadline for the lot: publish_async's own wait_stall costs a task per
        # message (asyncio.wait_for with a timeout), about a third of the rate.
        async with asyncio.timeout(_TIMEOUT_S + len(messages) / 1_000):
            futures = [
                await js.publish_async(subject, body, headers={"Nats-Msg-Id": message_id})
                for message_id, body in messages
            ]
            await js.publish_async_completed()
        seconds = time.perf_counter() - started
        for future in futures:
            future.result()  # raises if the server refused one
        return seconds
    finally:
        await nc.close()


async def _publish_rabbitmq(
    target: Target, names: RunNames, messages: list[tuple[str, bytes]]
) -> float:
    connection = await aio_pika.connect(target.broker_url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            AMQP_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        window = asyncio.Semaphore(BROKER_WINDOW)
        routing_key = names.type

        async def one(message_id: str, body: bytes) -> None:
            try:
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=message_id,
                        content_type=CONTENT_TYPE,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        type=routing_key,
                    ),
                    routing_key=routing_key,
                    timeout=_TIMEOUT_S,
                )
            finally:
                window.release()

        started = time.perf_counter()
        tasks = []
        for message_id, body in messages:
            await window.acquire()
            tasks.append(asyncio.create_task(one(message_id, body)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _h_relay_drain(target: Target, size: Size) -> Measurement:
    async with broker_run(target) as names:
        server = await describe_broker(target)
        await bind_sink(target, names)
        messages = _messages(names, size.relay_drain)
        mean = sum(len(body) for _, body in messages) / len(messages)
        if target.backend == "nats":
            seconds = await _publish_nats(target, names, messages)
            stored = await nats_stored(target, names)
        else:
            seconds = await _publish_rabbitmq(target, names, messages)
            stored = await sink_depth(target, names)
        if stored != len(messages):
            raise RuntimeError(f"the broker holds {stored} of {len(messages)} messages")
    where = "JetStream stream CHRONIK" if target.backend == "nats" else "a bound durable queue"
    return Measurement(
        len(messages),
        seconds,
        note=f"{server}; {BROKER_WINDOW} in flight (sliding window); {mean:.0f}-byte"
        f" messages, all {stored:,} stored in {where}",
    )


def run(workload: str, target: Target, size: Size) -> Measurement:
    if workload in ("h_e2e_p99_ms", "h_e2e_split_p99_ms"):
        raise NotApplicable(
            "the broker alone has no event store: no append's commit to start from and no"
            " consumer's committed effect to end at (measured before this suite on the kind of"
            " machine it runs on, 1 KiB messages, unloaded publish-to-consumer: NATS JetStream"
            " 2.9 p50 0.16 ms, p99 0.43 ms; RabbitMQ 3.10 p50 0.35 ms)"
        )
    if workload == "h_consume_drain":
        raise NotApplicable(
            "a consumer's effects need an event store: its row's note compares it with the"
            " same appends without broker or inbox instead"
        )
    if workload != "h_relay_drain":
        raise unknown_workload(workload)
    if target.backend not in MESSAGING_BACKENDS:
        raise NotApplicable(f"no broker on backend {target.backend!r}")
    return asyncio.run(_h_relay_drain(target, size))
