"""The contract every broker passes: publish, subscribe by type, order, redelivery, durability.

An adapter's test module subclasses ``BrokerContract``, provides the ``broker`` fixture
(a connected broker whose subjects, queues and durable names no other test sees; the
fixture closes it and removes what the test left, the durable names it used are in
``self.durable_names``) and declares what the technology promises beyond the port:

- ``deduplicates``: a message whose id the broker already has is dropped (JetStream's
  ``Nats-Msg-Id`` window, the memory broker's per subscriber). RabbitMQ delivers the
  copy; the consumer's inbox drops it there.
- ``durable``: a durable name keeps what is published while its subscription is
  stopped, and a message not acknowledged when it stopped comes again (JetStream,
  RabbitMQ). The memory broker has no such store: a publish hands each message to the
  subscribers present and returns once their handlers returned.

Each test asserts the promise as declared, either way: a broker that does more, or less,
than its subclass says fails. The tests wait on what arrives, up to a generous deadline;
where a test must show that something does not arrive, it publishes a message after it
and waits for that one, since order holds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import pytest

from chronik.errors import ConfigurationError
from chronik.messaging.port import Broker, Delivery, OutgoingMessage, Subscription
from chronik.testing.messages_contract import PATIENCE, eventually

__all__ = ["BrokerContract", "Received"]

OPENED = "bank.opened.v1"
PAID = "bank.paid.v1"
CLOSED = "bank.closed.v1"
FLAGGED = "audit.flagged.v1"
CLEARED = "audit.cleared.v1"


def message(type_name: str, key: str = "acc-1", *, id: str | None = None) -> OutgoingMessage:
    """A message of ``type_name`` with a new id (or ``id``) and a body naming it."""
    id = id or str(uuid.uuid4())
    return OutgoingMessage(id, type_name, key, b'{"id": "%s", "bytes": "\\u00ff"}' % id.encode())


class Received:
    """What one subscription's handler got, in order; it can fail or hold messages.

    ``failing[id]`` is how many more times the handler raises on message ``id``; while
    ``gate`` is clear, the handler waits before taking a message (``entered`` is set
    once it waits).
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.failing: Counter[str] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def handler(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if not self.gate.is_set():
            self.entered.set()
            await self.gate.wait()
        if self.failing[delivery.id] > 0:
            self.failing[delivery.id] -= 1
            raise RuntimeError(f"the handler fails on {delivery.id} (as the test asked)")

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.deliveries]

    async def until(self, *messages: OutgoingMessage) -> None:
        """Wait until every one of ``messages`` arrived (at least once)."""
        wanted = {m.id for m in messages}

        async def arrived() -> bool:
            return wanted <= set(self.ids)

        def instead() -> str:
            missing = [f"{m.type} {m.id}" for m in messages if m.id not in self.ids]
            return f"missing {missing}, got {self.ids}"

        await eventually("the messages to arrive", arrived, instead)


def ids(*messages: OutgoingMessage) -> list[str]:
    return [m.id for m in messages]


class BrokerContract:
    """Behaviour every broker must have. Subclass it per adapter and declare its promises."""

    #: whether a message whose id the broker already has is dropped
    deduplicates: ClassVar[bool]
    #: whether a durable name keeps messages while its subscription is stopped
    durable: ClassVar[bool]

    #: the durable names the test subscribed under (for the subclass to remove after it)
    durable_names: set[str]

    @pytest.fixture
    async def broker(self) -> Broker:
        """A connected broker of the adapter, closed and cleaned up after the test."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    async def _subscriptions(self, broker: Broker) -> AsyncIterator[None]:
        # Stopped before the broker fixture closes the broker (it was set up first).
        self.durable_names = set()
        self._open: list[Subscription] = []
        yield
        for subscription in self._open:
            await subscription.stop()

    async def subscribe(
        self, broker: Broker, consumer: str, types: Sequence[str], received: Received
    ) -> Subscription:
        """Subscribe ``received`` under ``consumer``; stopped at the end of the test."""
        self.durable_names.add(consumer)
        subscription = await broker.subscribe(consumer, types, received.handler)
        self._open.append(subscription)
        return subscription

    async def stop(self, subscription: Subscription) -> None:
        self._open.remove(subscription)
        await subscription.stop()

    async def publish(self, broker: Broker, *messages: OutgoingMessage) -> None:
        assert await broker.publish(messages) == [None] * len(messages)

    # -- connecting --------------------------------------------------------------------

    async def test_a_connected_broker_has_no_problem(self, broker: Broker) -> None:
        assert broker.problem is None

    async def test_a_closed_broker_says_so_refuses_to_publish_and_closes_again_quietly(
        self, broker: Broker
    ) -> None:
        await broker.close()
        assert broker.problem, "a closed broker said nothing was wrong"
        with pytest.raises(ConfigurationError, match="not connected"):
            await broker.publish([message(OPENED)])
        await broker.close()

    # -- publishing and subscribing ----------------------------------------------------

    async def test_a_publish_gives_one_outcome_per_message(self, broker: Broker) -> None:
        received = Received()
        await self.subscribe(broker, "ledger", [OPENED], received)
        batch = [message(OPENED, f"acc-{i}") for i in range(5)]
        assert await broker.publish(batch) == [None] * 5
        assert await broker.publish([]) == []
        await received.until(*batch)

    async def test_a_subscriber_gets_the_types_it_asked_for_as_published_and_no_others(
        self, broker: Broker
    ) -> None:
        received = Received()
        await self.subscribe(broker, "ledger", [OPENED, CLOSED, FLAGGED], received)
        opened, paid, closed = message(OPENED), message(PAID), message(CLOSED)
        cleared, flagged, last = message(CLEARED), message(FLAGGED), message(OPENED, "acc-2")
        await self.publish(broker, opened, paid, cleared, flagged, closed, last)
        await received.until(opened, flagged, closed, last)
        # Order holds per source: anything of PAID or CLEARED would have come before.
        assert sorted(received.ids) == sorted(ids(opened, flagged, closed, last))
        bank = [d.id for d in received.deliveries if d.type.startswith("bank.")]
        assert bank == ids(opened, closed, last)
        for sent in (opened, flagged, closed, last):
            [got] = [d for d in received.deliveries if d.id == sent.id]
            assert got == Delivery(sent.id, sent.type, sent.body, 1)

    async def test_each_durable_name_gets_every_message(self, broker: Broker) -> None:
        ledger, audit = Received(), Received()
        await self.subscribe(broker, "ledger", [OPENED], ledger)
        await self.subscribe(broker, "audit", [OPENED, PAID], audit)
        sent = [message(OPENED), message(PAID), message(OPENED)]
        await self.publish(broker, *sent)
        await ledger.until(sent[0], sent[2])
        await audit.until(*sent)
        assert ledger.ids == ids(sent[0], sent[2])
        assert audit.ids == ids(*sent)

    async def test_messages_of_a_source_arrive_in_publish_order_across_batches(
        self, broker: Broker
    ) -> None:
        received = Received()
        await self.subscribe(broker, "ledger", [OPENED, PAID, CLOSED], received)
        batches = [
            [message((OPENED, PAID, CLOSED)[i % 3], f"acc-{i % 4}") for i in range(40)]
            for _ in range(3)
        ]
        for batch in batches:
            await self.publish(broker, *batch)
        sent = [m for batch in batches for m in batch]
        await received.until(*sent)
        assert received.ids == ids(*sent)

    async def test_a_message_published_twice_arrives_as_the_broker_promises(
        self, broker: Broker
    ) -> None:
        # As a relay does after a publish it could not confirm: the same id again.
        received = Received()
        await self.subscribe(broker, "ledger", [OPENED], received)
        twice, after = message(OPENED), message(OPENED)
        await self.publish(broker, twice)
        await self.publish(broker, twice, after)
        await received.until(after)
        copies = 1 if self.deduplicates else 2
        assert received.ids == [twice.id] * copies + [after.id]

    # -- failing handlers and acknowledgements -----------------------------------------

    async def test_a_handler_that_raises_gets_its_message_again_before_the_next_one(
        self, broker: Broker
    ) -> None:
        received = Received()
        await self.subscribe(broker, "ledger", [OPENED], received)
        failing, behind = message(OPENED), message(OPENED)
        received.failing[failing.id] = 2
        await self.publish(broker, failing, behind)
        await received.until(behind)
        assert received.ids == ids(failing, failing, failing, behind)
        attempts = [d.attempt for d in received.deliveries[:3]]
        assert attempts[0] == 1 and attempts == sorted(set(attempts)), attempts
        assert received.deliveries[3].attempt == 1

    async def test_a_message_is_acknowledged_only_once_its_handler_returned(
        self, broker: Broker
    ) -> None:
        held = Received()
        held.gate.clear()
        subscription = await self.subscribe(broker, "ledger", [OPENED], held)
        first, second = message(OPENED), message(OPENED)
        publishing = asyncio.create_task(broker.publish([first, second]))
        await asyncio.wait_for(held.entered.wait(), PATIENCE)
        if not self.durable:
            # The publish itself is the acknowledgement: it waits for the handler.
            assert not publishing.done(), "the publish returned before the handler did"
            held.gate.set()
            assert await asyncio.wait_for(publishing, PATIENCE) == [None, None]
            await held.until(second)
            assert held.ids == ids(first, second)
            return
        assert await asyncio.wait_for(publishing, PATIENCE) == [None, None]
        await self.stop(subscription)  # its handler never returned: no acknowledgement
        again = Received()
        await self.subscribe(broker, "ledger", [OPENED], again)
        await again.until(first, second)
        assert again.ids == ids(first, second)
        assert again.deliveries[0].attempt >= 2, "a redelivery counted as a first attempt"

    # -- durable names -----------------------------------------------------------------

    async def test_a_durable_name_resumes_after_a_stop_as_the_broker_promises(
        self, broker: Broker
    ) -> None:
        before = Received()
        subscription = await self.subscribe(broker, "ledger", [OPENED, PAID], before)
        handled = [message(OPENED), message(PAID)]
        await self.publish(broker, *handled)
        await before.until(*handled)
        await self.stop(subscription)
        meanwhile = [message(OPENED), message(PAID), message(OPENED)]
        await self.publish(broker, *meanwhile)
        after = Received()
        await self.subscribe(broker, "ledger", [OPENED, PAID], after)
        last = message(PAID)
        await self.publish(broker, last)
        await after.until(last)
        # What was handled before the stop does not come again; what came meanwhile
        # does, first, if the broker keeps it.
        expected = [*meanwhile, last] if self.durable else [last]
        assert after.ids == ids(*expected)
        assert before.ids == ids(*handled)
