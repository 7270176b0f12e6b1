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
from chronik.messaging.lanes import Lanes
from chronik.messaging.port import Broker, Delivery, OutgoingMessage, Subscription
from chronik.testing.messages_contract import PATIENCE, eventually

__all__ = ["BrokerContract", "Held", "Received"]

OPENED = "bank.opened.v1"
PAID = "bank.paid.v1"
CLOSED = "bank.closed.v1"
FLAGGED = "audit.flagged.v1"
CLEARED = "audit.cleared.v1"


def message(type_name: str, key: str = "acc-1", *, id: str | None = None) -> OutgoingMessage:
    """A message of ``type_name`` with a new id (or ``id``) and a body naming it.

    The body carries ``key`` as its ``subject``, where a CloudEvents envelope names its
    source stream: the adapters' lanes are keyed by it.
    """
    id = id or str(uuid.uuid4())
    body = b'{"id": "%s", "subject": "%s", "bytes": "\\u00ff"}' % (id.encode(), key.encode())
    return OutgoingMessage(id, type_name, key, body)


def other_lane(key: str, lanes: int) -> str:
    """A key whose messages go to another of ``lanes`` lanes than ``key``'s."""
    lane = Lanes.lane_for(key, lanes)
    return next(
        other
        for other in (f"acc-{i}" for i in range(1_000))
        if Lanes.lane_for(other, lanes) != lane
    )


class Held:
    """A handler that holds the messages of the ids in ``holding`` until ``release``.

    It records the deliveries in the order they entered, and the most handlers that ran
    at once.
    """

    def __init__(self, holding: set[str] | None = None) -> None:
        self.holding = holding  # None: hold every message
        self.released = asyncio.Event()
        self.deliveries: list[Delivery] = []
        self.running = 0
        self.most_running = 0

    async def handler(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.holding is None or delivery.id in self.holding:
                await self.released.wait()
            await asyncio.sleep(0)  # let the other lanes run meanwhile
        finally:
            self.running -= 1

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.deliveries]


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
        self,
        broker: Broker,
        consumer: str,
        types: Sequence[str],
        received: Received,
        *,
        lanes: int = 1,
        batch: int | None = None,
    ) -> Subscription:
        """Subscribe ``received`` under ``consumer``; stopped at the end of the test."""
        self.durable_names.add(consumer)
        subscription = await broker.subscribe(
            consumer, types, received.handler, lanes=lanes, batch=batch
        )
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

    # -- lanes: streams side by side, each in order --------------------------------------

    async def test_a_held_stream_does_not_hold_up_a_stream_of_another_lane(
        self, broker: Broker
    ) -> None:
        lanes = 4
        slow_key = "acc-slow"
        fast_key = other_lane(slow_key, lanes)
        slow, behind = message(OPENED, slow_key), message(OPENED, slow_key)
        fast = [message(OPENED, fast_key) for _ in range(3)]
        held = Held({slow.id})
        subscription = await broker.subscribe("ledger", [OPENED], held.handler, lanes=lanes)
        self.durable_names.add("ledger")
        self._open.append(subscription)
        # The memory broker's publish returns once handled: it runs beside the test.
        publishing = asyncio.create_task(broker.publish([slow, behind, *fast]))
        try:

            async def fast_through() -> bool:
                return set(ids(*fast)) <= set(held.ids)

            await eventually(
                "the other stream's messages to pass the held one",
                fast_through,
                lambda: f"got {held.ids}",
            )
            # Its own stream waits behind it: order within a stream holds.
            assert behind.id not in held.ids
            assert held.ids[0] == slow.id
        finally:
            held.released.set()
        assert await asyncio.wait_for(publishing, PATIENCE) == [None] * 5

        async def all_in() -> bool:
            return behind.id in held.ids

        await eventually("the held stream to go on", all_in, lambda: f"got {held.ids}")
        assert [i for i in held.ids if i in (slow.id, behind.id)] == [slow.id, behind.id]
        assert [i for i in held.ids if i in ids(*fast)] == ids(*fast)

    async def test_lanes_keep_each_streams_order_and_bound_what_is_in_hand(
        self, broker: Broker
    ) -> None:
        lanes, batch = 4, 5
        sent = [message((OPENED, PAID)[i % 2], f"acc-{i % 20}") for i in range(120)]
        held = Held()  # every handler waits until released
        subscription = await broker.subscribe(
            "ledger", [OPENED, PAID], held.handler, lanes=lanes, batch=batch
        )
        self.durable_names.add("ledger")
        self._open.append(subscription)
        publishing = asyncio.create_task(broker.publish(sent))
        try:

            async def lanes_busy() -> bool:
                return held.running == lanes

            await eventually("every lane to hold a message", lanes_busy, lambda: f"{held.ids}")
            if self.durable:
                assert await asyncio.wait_for(publishing, PATIENCE) == [None] * len(sent)
            # Held, the subscription takes no more than its lanes hold, and (a broker
            # that fetches ahead) no more than twice its batch: back-pressure, not a
            # growing queue.
            await asyncio.sleep(0.5)
            assert held.most_running == lanes
            assert len(held.ids) == lanes
            in_hand = getattr(subscription, "held", None)
            if in_hand is not None:
                assert 0 < in_hand() <= 2 * batch
        finally:
            held.released.set()
        assert await asyncio.wait_for(publishing, PATIENCE) == [None] * len(sent)

        async def all_in() -> bool:
            return set(ids(*sent)) <= set(held.ids)

        await eventually("every message", all_in, lambda: f"{len(held.ids)} of {len(sent)}")
        assert held.most_running <= lanes
        for key in {m.key for m in sent}:
            mine = [m.id for m in sent if m.key == key]
            assert [i for i in held.ids if i in set(mine)] == mine, f"{key} out of order"
