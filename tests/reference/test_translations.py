"""What crosses a context's border: sales' published language and the others' translations.

Sales publishes orders and visits, never who the lead is; campaigns turns an order into
budget and a campaign into a placement; travel turns a visit into a trip request.
"""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from campaigns import acl
from campaigns import domain as campaign_domain
from campaigns import handlers as campaign_handlers
from campaigns.domain import Campaign, CampaignCreated
from campaigns.partner import FakePartner, PlacementReceipt, PlacementRequest
from chronik.adapters.memory.database import MemoryDatabase
from chronik.eventstore import BaseEventStore, EventTypes, Metadata, RecordedEvent
from chronik.messaging import Consumer, Delivery, MessageContext
from chronik.messaging.envelope import encode_envelope, envelope
from chronik.processes import VirtualClock
from sales import contracts, handlers
from sales import domain as sales
from travel import domain as travel
from travel import handlers as travel_handlers
from travel.bookings import Bookings

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def recorded(event: object, stream_id: str = "lead-L1") -> RecordedEvent:
    return RecordedEvent(
        id=uuid.uuid4(),
        stream_id=stream_id,
        version=1,
        position=1,
        type="test",
        schema_version=1,
        recorded_at=T0,
        event=event,
        metadata=Metadata(),
    )


class TestSalesPublishes:
    def test_an_order_leaves_as_the_public_order_submitted(self) -> None:
        order = sales.OrderSubmitted("L1", "order-1", 12_000, "EUR", T0)
        assert handlers.publish(recorded(order)) == contracts.OrderSubmitted(
            "L1", "order-1", 12_000, "EUR", T0
        )

    def test_a_follow_up_that_needs_a_visit_leaves_as_visit_needed(self) -> None:
        visit = sales.FollowUpSet("L1", T0 + timedelta(days=2), True, "Lyon", T0)
        assert handlers.publish(recorded(visit)) == contracts.VisitNeeded(
            "L1", "Lyon", T0 + timedelta(days=2)
        )

    @pytest.mark.parametrize(
        "event",
        [
            sales.LeadInitialized("L1", "Ada", "12345", T0),
            sales.ContactDetailsChanged("L1", "Ada", "12345", T0),
            sales.Contacted("L1", "called", T0),
            sales.FollowUpSet("L1", T0 + timedelta(days=2), False, "", T0),
            sales.PaymentConfirmed("L1", "order-1", T0),
            sales.LeadClosed("L1", "no", T0),
            sales.LeadAnonymized("L1", T0),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_everything_else_stays_inside(self, event: object) -> None:
        assert handlers.publish(recorded(event)) is None

    def test_no_public_event_carries_a_name_or_a_phone(self) -> None:
        for public in (contracts.OrderSubmitted, contracts.VisitNeeded):
            assert {f.name for f in fields(public)}.isdisjoint({"name", "phone"})


class TestCampaignsTranslate:
    @pytest.mark.parametrize(
        ("cents", "budget"),
        [
            (12_000, 1_200),
            (14, 1),
            (15, 2),  # a half cent rounds up ...
            (25, 3),  # ... whatever the digit before it (not to even: 2)
            (35, 4),
            (16, 2),
            (24, 2),
            (26, 3),
            (5, 1),
            (4, 1),  # at least a cent
            (1, 1),
            (10**12 - 5, 10**11),  # the largest order sales takes, and exact
            (10**12, 10**11),
        ],
    )
    def test_an_order_in_euros_adds_a_tenth_rounded_half_up_and_at_least_a_cent(
        self, cents: int, budget: int
    ) -> None:
        order = contracts.OrderSubmitted("L1", "order-1", cents, "EUR", T0)
        assert acl.budget_from_order(order) == acl.Credit(budget)

    @pytest.mark.parametrize(
        ("amount", "currency", "shown"),
        [
            (1_000, "JPY", "1000 JPY"),
            (12_345, "USD", "123.45 USD"),
            (1_500, "KWD", "1.500 KWD"),
        ],
    )
    def test_an_order_in_another_currency_is_not_credited_naming_it(
        self, amount: int, currency: str, shown: str
    ) -> None:
        order = contracts.OrderSubmitted("L1", "order-1", amount, currency, T0)
        outcome = acl.budget_from_order(order)
        assert isinstance(outcome, acl.NotCredited)
        assert outcome.reason == (
            f"an order of {shown} is not credited: the budget is in EUR and campaigns "
            "converts no currency"
        )

    @pytest.mark.parametrize("currency", ["XYZ", "EUX", "AAA"])
    def test_an_order_in_a_currency_iso_4217_does_not_know_is_not_credited(
        self, currency: str
    ) -> None:
        order = contracts.OrderSubmitted("L1", "order-1", 1_000, currency, T0)
        assert acl.budget_from_order(order) == acl.NotCredited(
            f"an order of 1000 in {currency!r} is not credited: not an ISO 4217 currency "
            "campaigns knows"
        )

    def test_minor_units_follow_iso_4217(self) -> None:
        assert {c: acl.MINOR_UNITS[c] for c in ("EUR", "USD", "JPY", "KRW", "KWD", "BHD")} == {
            "EUR": 2,
            "USD": 2,
            "JPY": 0,
            "KRW": 0,
            "KWD": 3,
            "BHD": 3,
        }

    def test_a_campaign_is_placed_under_its_id_with_its_budget_in_euros(self) -> None:
        campaign = Campaign.blank("c1")
        campaign.replay([CampaignCreated("c1", "Spring sale", 12_345, T0)], 1)
        assert acl.to_placement(campaign) == PlacementRequest("c1", "Spring sale", 123.45)

    @pytest.mark.parametrize(
        ("receipt", "outcome"),
        [
            (PlacementReceipt("ACCEPTED", "AD-1"), ("confirmed", "AD-1")),
            (
                PlacementReceipt("DECLINED", "AD-2", "CONTENT_POLICY"),
                ("rejected", "the partner declined (CONTENT_POLICY)"),
            ),
            (PlacementReceipt("DECLINED"), ("rejected", "the partner declined (no reason)")),
            (PlacementReceipt("PENDING", "AD-3"), ("pending", "AD-3")),
        ],
    )
    def test_the_partner_s_receipt_becomes_an_outcome(
        self, receipt: PlacementReceipt, outcome: tuple[str, str]
    ) -> None:
        assert acl.outcome(receipt) == outcome


@pytest.fixture
def database() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def store(database: MemoryDatabase) -> BaseEventStore:
    return database.event_store(EventTypes(travel.EVENTS))


def message() -> MessageContext:
    return MessageContext(
        message_id=str(uuid.uuid4()),
        type="sales.visit_needed.v1",
        source="sales",
        subject="lead-L1",
        time=T0,
        correlation_id=None,
        traceparent=None,
        attempt=1,
    )


async def trips_requested(store: BaseEventStore) -> list[travel.TripRequested]:
    records = await store.read_all_page(0, limit=100)
    return [r.event for r in records.events if isinstance(r.event, travel.TripRequested)]


class TestTravelTranslates:
    async def test_a_visit_becomes_a_trip_of_the_sales_team_to_the_city_on_its_day(
        self, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        visit = contracts.VisitNeeded("L1", "Lyon", T0 + timedelta(days=2))
        await travel_handlers.TravelHandlers(
            store, Bookings(), clock=VirtualClock(T0)
        ).on_visit_needed(visit, message())
        [trip] = await trips_requested(store)
        assert (trip.traveller, trip.destination, trip.depart_on, trip.lead_id) == (
            "sales team",
            "Lyon",
            date(2026, 5, 6),
            "L1",
        )

    async def test_a_visit_in_the_future_is_never_refused_as_in_the_past(
        self, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        honolulu = timezone(timedelta(hours=-10))
        on = datetime(2026, 5, 3, 23, 30, tzinfo=honolulu)  # 2026-05-04 09:30 UTC
        assert on > T0
        # Sales takes it: the follow-up is in the future.
        lead = sales.Lead.blank("L1")
        lead.replay([sales.LeadInitialized("L1", "Ada", "12345", T0)], 1)
        lead.set_follow_up(on, True, "Honolulu", T0)
        visit = handlers.publish(recorded(lead.pending_events[-1]))
        assert isinstance(visit, contracts.VisitNeeded)
        await travel_handlers.TravelHandlers(
            store, Bookings(), clock=VirtualClock(T0)
        ).on_visit_needed(visit, message())
        assert len(await trips_requested(store)) == 1


async def deliver_visit(
    database: MemoryDatabase, store: BaseEventStore, on: str, city: str = "Lyon", now: datetime = T0
) -> Consumer:
    """One ``sales.visit_needed.v1`` message through travel's consumer, as the broker hands it."""
    clock = VirtualClock(now)
    handler = travel_handlers.TravelHandlers(store, Bookings(), clock=clock).on_visit_needed
    consumer = Consumer(
        "travel",
        store,
        contracts.LANGUAGE,
        {contracts.VisitNeeded: handler},
        storage=database.messages(),
        retries=2,
        retry_backoff=0.001,
    )
    await consumer.setup()
    message_id = str(uuid.uuid4())
    body = envelope(
        id=message_id,
        source="sales",
        type="sales.visit_needed.v1",
        subject="lead-L1",
        time=T0,
        data={"lead_id": "L1", "city": city, "on": on},
    )
    await consumer.deliver(Delivery(message_id, body.type, encode_envelope(body), 1))
    await consumer.stop()
    return consumer


async def visits_declined(store: BaseEventStore) -> list[travel.VisitDeclined]:
    records = await store.read_all_page(0, limit=100)
    return [r.event for r in records.events if isinstance(r.event, travel.VisitDeclined)]


class TestTravelTakesEveryVisitItsContractAllows:
    """A value the published language allows never sends a message to the dead letters."""

    @pytest.mark.parametrize(
        ("on", "reason"),
        [
            ("9999-12-31T23:59:59-10:00", "cannot be booked: it is after 9999-12-31 in UTC"),
            ("0001-01-01T00:00:00+10:00", "cannot be booked: it is before 0001-01-01 in UTC"),
            ("2026-05-03T23:59:59Z", "its day, 2026-05-03, has passed"),
        ],
    )
    async def test_a_visit_travel_cannot_book_is_declined_on_the_board_not_dead_lettered(
        self,
        database: MemoryDatabase,
        store: BaseEventStore,
        monkeypatch: pytest.MonkeyPatch,
        on: str,
        reason: str,
    ) -> None:
        consumer = await deliver_visit(database, store, on)
        assert await consumer.storage.dead_letters("travel") == []
        [declined] = await visits_declined(store)
        assert (declined.lead_id, declined.destination, declined.on.isoformat()) == (
            "L1",
            "Lyon",
            datetime.fromisoformat(on).isoformat(),
        )
        assert reason in declined.reason
        assert await trips_requested(store) == []

    @pytest.mark.parametrize(
        ("on", "day"),
        [
            ("9999-12-31T23:59:59+10:00", date(9999, 12, 31)),
            ("9999-12-30T23:00:00-00:30", date(9999, 12, 30)),
            ("2026-05-04T00:00:00+10:00", date(2026, 5, 3)),  # 14:00 UTC the day before
        ],
    )
    async def test_a_visit_on_a_day_travel_can_book_becomes_a_trip_however_far(
        self,
        database: MemoryDatabase,
        store: BaseEventStore,
        monkeypatch: pytest.MonkeyPatch,
        on: str,
        day: date,
    ) -> None:
        consumer = await deliver_visit(database, store, on, now=T0 - timedelta(days=2))
        assert await consumer.storage.dead_letters("travel") == []
        [trip] = await trips_requested(store)
        assert trip.depart_on == day

    async def test_a_visit_that_names_no_city_is_declined(
        self, database: MemoryDatabase, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        consumer = await deliver_visit(database, store, "2026-05-06T09:00:00Z", city=" ")
        assert await consumer.storage.dead_letters("travel") == []
        [declined] = await visits_declined(store)
        assert "names no city" in declined.reason


class TestCampaignsTakeEveryOrderTheirContractAllows:
    """An order in any currency is handled once, and only the budget's currency credits."""

    async def deliver_order(
        self, database: MemoryDatabase, store: BaseEventStore, amount: int, currency: str
    ) -> Consumer:
        handler = campaign_handlers.CampaignHandlers(store, FakePartner()).on_order_submitted
        consumer = Consumer(
            "campaigns",
            store,
            contracts.LANGUAGE,
            {contracts.OrderSubmitted: handler},
            storage=database.messages(),
            retries=2,
            retry_backoff=0.001,
        )
        await consumer.setup()
        message_id = str(uuid.uuid4())
        data = {
            "lead_id": "L1",
            "order_id": f"order-{currency}",
            "amount_cents": amount,
            "currency": currency,
            "submitted_at": T0.isoformat(),
        }
        body = envelope(
            id=message_id,
            source="sales",
            type="sales.order_submitted.v1",
            subject="lead-L1",
            time=T0,
            data=data,
        )
        await consumer.deliver(Delivery(message_id, body.type, encode_envelope(body), 1))
        await consumer.stop()
        return consumer

    async def test_orders_in_euros_yen_and_an_unknown_currency_credit_only_the_euros(
        self,
    ) -> None:
        database = MemoryDatabase()
        store = database.event_store(EventTypes(campaign_domain.EVENTS))
        try:
            for amount, currency in [(25, "EUR"), (1_000, "JPY"), (1_000, "XYZ")]:
                consumer = await self.deliver_order(database, store, amount, currency)
                assert await consumer.storage.dead_letters("campaigns") == []
            budget = await campaign_handlers.budgets(store).load(campaign_handlers.BUDGET)
            events = [r.event for r in await store.read_stream("budget-main")]
        finally:
            await database.close()
        assert budget.total_cents == 3
        assert [type(e).__name__ for e in events] == [
            "BudgetIncreased",
            "OrderNotCredited",
            "OrderNotCredited",
        ]
        jpy, xyz = events[1], events[2]
        assert isinstance(jpy, campaign_domain.OrderNotCredited)
        assert isinstance(xyz, campaign_domain.OrderNotCredited)
        assert (jpy.order_id, jpy.amount, jpy.currency) == ("order-JPY", 1_000, "JPY")
        assert "converts no currency" in jpy.reason
        assert "not an ISO 4217 currency" in xyz.reason
