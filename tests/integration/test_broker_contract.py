"""The broker contract, run on every broker: in memory, NATS JetStream, RabbitMQ.

The shared servers keep streams, durable consumers, queues and exchanges across tests
and runs: each test here gets a namespace of its own (subjects, routing keys, durable
names; on RabbitMQ an exchange too) and removes what it made afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from messaging_harness import (
    NATS_STREAM,
    NATS_URL,
    RABBITMQ_URL,
    close_broker,
    nats_problem,
    rabbitmq_problem,
)

from chronik.adapters.memory.broker import MemoryBroker
from chronik.adapters.nats import NatsBroker
from chronik.adapters.rabbitmq import RabbitMQBroker
from chronik.messaging.port import Broker
from chronik.testing.broker_contract import BrokerContract
from conftest import service_missing

#: the sources of the contract's public types (``bank.opened.v1``, ``audit.flagged.v1``)
SOURCES = ("bank", "audit")


def _namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


class TestMemoryBroker(BrokerContract):
    deduplicates = True
    durable = False

    @pytest.fixture
    async def broker(self) -> AsyncIterator[Broker]:
        broker = MemoryBroker(retry_delay=0.01)
        await broker.connect()
        yield broker
        await broker.close()


class TestNatsBroker(BrokerContract):
    deduplicates = True
    durable = True

    @pytest.fixture
    async def broker(self) -> AsyncIterator[Broker]:
        problem = await nats_problem()
        if problem is not None:
            service_missing(problem)
        namespace = _namespace()
        broker = NatsBroker(NATS_URL, namespace=namespace, redeliver_delay=0.05, connect_timeout=5)
        await broker.connect()
        yield broker
        await close_broker(broker)
        await self._forget(namespace)

    async def _forget(self, namespace: str) -> None:
        """Delete the test's durable consumers and purge its subjects from the stream."""
        import nats
        import nats.js.errors

        client = await nats.connect(servers=[NATS_URL], connect_timeout=3)
        try:
            js = client.jetstream(timeout=5)
            for name in self.durable_names:
                for source in SOURCES:
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await js.delete_consumer(NATS_STREAM, f"{namespace}-{name}-{source}")
            await js.purge_stream(NATS_STREAM, subject=f"chronik.{namespace}.>")
        finally:
            await client.close()


class TestRabbitMQBroker(BrokerContract):
    deduplicates = False
    durable = True

    @pytest.fixture
    async def broker(self) -> AsyncIterator[Broker]:
        problem = await rabbitmq_problem()
        if problem is not None:
            service_missing(problem)
        namespace = _namespace()
        exchange = f"chronik.{namespace}"
        broker = RabbitMQBroker(
            RABBITMQ_URL,
            namespace=namespace,
            exchange=exchange,
            redeliver_delay=0.05,
            connect_timeout=5,
        )
        await broker.connect()
        yield broker
        await close_broker(broker)
        await self._forget(namespace, exchange)

    async def _forget(self, namespace: str, exchange: str) -> None:
        """Delete the test's queues (their bindings with them) and its exchange."""
        import aio_pika

        connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
        try:
            channel = await connection.channel()
            for name in self.durable_names:
                await channel.queue_delete(f"chronik.{namespace}.{name}")
            await channel.exchange_delete(exchange)
        finally:
            await connection.close()
