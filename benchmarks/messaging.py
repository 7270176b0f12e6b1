"""What the messaging workloads (h_*) share: a run's names, its messages, its broker state.

Every run publishes under a source context of its own (``bench<8 hex digits>``), so its
public type is ``bench1a2b3c4d.item_added.v1``: on NATS its messages go to the subject
``chronik.<type>`` of the shared JetStream stream ``CHRONIK`` (never deleted here), on
RabbitMQ to the shared topic exchange ``chronik`` with the type as routing key, exactly
where chronik's relay publishes them. Nothing from another run can interfere.

What a run leaves on the broker is removed by :func:`clean_broker`: on NATS its durable
consumer and its messages (a purge of the stream filtered on ``chronik.<source>.>``); on
RabbitMQ its queues. For h_relay_drain a durable queue ``chronik.<source>-sink`` is bound
to ``<source>.#`` for the run, so that RabbitMQ routes the drained messages somewhere
durable as it would in production (with no queue bound, it would drop them on arrival);
its ``x-expires`` removes it ten minutes after a killed worker left it behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import nats
import nats.js.errors

from benchmarks.common import EVENT_LABEL, Target
from chronik.eventstore.ids import uuid7
from chronik.messaging import PublishedLanguage, public
from chronik.messaging.envelope import encode_envelope, envelope

# As in chronik.messaging: the NATS stream, its subject prefix and the AMQP exchange.
NATS_STREAM = "CHRONIK"
NATS_PREFIX = "chronik."
AMQP_EXCHANGE = "chronik"
# A queue bound by a run is deleted by the broker this long after it was last used.
SINK_EXPIRES_MS = 600_000


@dataclasses.dataclass(frozen=True)
class RunNames:
    """The names one run uses on the broker."""

    source: str  # the source context: bench<8 hex digits>

    @property
    def type(self) -> str:
        return f"{self.source}.item_added.v1"

    @property
    def subject(self) -> str:
        """The NATS subject (chronik's subject_of) of the run's public type."""
        return f"{NATS_PREFIX}{self.type}"

    @property
    def consumer(self) -> str:
        """The durable name of h_e2e_p99_ms's chronik consumer."""
        return f"{self.source}-rx"

    @property
    def sink_queue(self) -> str:
        """h_relay_drain's RabbitMQ queue, bound to the run's types."""
        return f"chronik.{self.source}-sink"


def run_names() -> RunNames:
    return RunNames(f"bench{uuid.uuid4().hex[:8]}")


def public_item_class(names: RunNames) -> type:
    """The run's public event, ``<source>.item_added.v1``: the domain event's fields."""
    cls = dataclasses.make_dataclass(
        "PublicItemAdded", [("label", str), ("amount", int), ("at", datetime)], frozen=True
    )
    return public(names.type)(cls)


def language(public_class: type) -> PublishedLanguage:
    return PublishedLanguage([public_class])


def envelope_body(names: RunNames, message_id: str, stream_id: str, n: int) -> bytes:
    """A message as chronik's outbox writes it for the run's public event, same size.

    An append without metadata correlates (and causes) its events with its first
    event's id, so the outbox's envelopes carry two more ids beside the event's own.
    """
    now = datetime.now(UTC)
    return encode_envelope(
        envelope(
            id=message_id,
            source=names.source,
            type=names.type,
            subject=stream_id,
            time=now,
            data={"label": EVENT_LABEL, "amount": n, "at": now},
            correlationid=message_id,
            causationid=message_id,
        )
    )


def new_message_id() -> str:
    """A message id like an event's: a UUIDv7, as text."""
    return str(uuid7())


# ---------------------------------------------------------------------------------------
# The broker's state of one run


async def _amqp_version(connection: aio_pika.abc.AbstractConnection) -> str:
    transport: Any = getattr(connection, "transport", None)
    properties = getattr(getattr(transport, "connection", None), "server_properties", None) or {}
    version = properties.get("version", b"?")
    return version.decode() if isinstance(version, bytes) else str(version)


async def describe_broker(target: Target) -> str:
    """The broker's name and version, for the row's note."""
    if target.backend == "nats":
        nc = await nats.connect(servers=[target.broker_url], connect_timeout=5)
        try:
            version = nc.connected_server_version
            return f"nats-server {version.major}.{version.minor}.{version.patch}"
        finally:
            await nc.close()
    connection = await aio_pika.connect(target.broker_url, timeout=10)
    try:
        return f"RabbitMQ {await _amqp_version(connection)}"
    finally:
        await connection.close()


async def bind_sink(target: Target, names: RunNames) -> None:
    """RabbitMQ: a durable queue bound to the run's types, so its messages are kept."""
    if target.backend != "rabbitmq":
        return
    connection = await aio_pika.connect(target.broker_url, timeout=10)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            AMQP_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            names.sink_queue, durable=True, arguments={"x-expires": SINK_EXPIRES_MS}
        )
        await queue.bind(exchange, routing_key=f"{names.source}.#")
    finally:
        await connection.close()


async def sink_depth(target: Target, names: RunNames) -> int | None:
    """RabbitMQ: how many messages the run's sink queue holds (None on NATS)."""
    if target.backend != "rabbitmq":
        return None
    connection = await aio_pika.connect(target.broker_url, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.sink_queue, passive=True)
        count = queue.declaration_result.message_count
        return int(count) if count is not None else None
    finally:
        await connection.close()


async def nats_stored(target: Target, names: RunNames) -> int | None:
    """NATS: how many of the run's messages the stream holds (None on RabbitMQ)."""
    if target.backend != "nats":
        return None
    nc = await nats.connect(servers=[target.broker_url], connect_timeout=5)
    try:
        info = await nc.jetstream().stream_info(NATS_STREAM, subjects_filter=names.subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def clean_broker(target: Target, names: RunNames) -> None:
    """Remove what the run left on the broker (never the shared stream or exchange)."""
    if target.backend == "nats":
        nc = await nats.connect(servers=[target.broker_url], connect_timeout=5)
        try:
            js = nc.jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(NATS_STREAM, f"{names.consumer}-{names.source}")
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.purge_stream(NATS_STREAM, subject=f"{NATS_PREFIX}{names.source}.>")
        finally:
            await nc.close()
    elif target.backend == "rabbitmq":
        connection = await aio_pika.connect(target.broker_url, timeout=10)
        try:
            for queue in (names.sink_queue, f"chronik.{names.consumer}"):
                channel = await connection.channel()
                await channel.queue_delete(queue)
        finally:
            await connection.close()


@contextlib.asynccontextmanager
async def broker_run(target: Target) -> AsyncIterator[RunNames]:
    """A run's names, and its broker state cleaned up afterwards."""
    names = run_names()
    try:
        yield names
    finally:
        await clean_broker(target, names)
