"""Sales' use cases, run through their handlers on the memory store: no HTTP, no broker.

One class per command, as a caller (a route, a consumer, the CLI) issues it: the time
is a virtual clock's and the ids come from a list, so every outcome is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from chronik.adapters.memory.database import MemoryDatabase
from chronik.domain import InvalidValueError
from chronik.errors import StreamNotFoundError
from chronik.eventstore import BaseEventStore, EventTypes
from chronik.processes import VirtualClock
from sales import commands, domain
from sales.handlers import PREFIX, LeadHandlers

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def store() -> BaseEventStore:
    return MemoryDatabase().event_store(EventTypes(domain.EVENTS))


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def sales(store: BaseEventStore, clock: VirtualClock) -> LeadHandlers:
    ids: Iterator[str] = iter(f"id{n}" for n in range(1, 100))
    return LeadHandlers(store, clock=clock, new_id=lambda: next(ids))


async def events_of(store: BaseEventStore, lead_id: str) -> list[object]:
    return [r.event for r in await store.read_stream(PREFIX + lead_id)]


async def new_lead(sales: LeadHandlers) -> str:
    done = await sales.create_lead(commands.CreateLead("Ada Lovelace", "+44 20 7946 0958"))
    return done.id


class TestCreateLead:
    async def test_a_new_lead_gets_the_next_id_and_the_clock_s_time(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        done = await sales.create_lead(commands.CreateLead("Ada Lovelace", "12345"))
        assert (done.id, done.result.stream_id, done.result.version) == ("id1", "lead-id1", 1)
        assert await events_of(store, "id1") == [
            domain.LeadInitialized("id1", "Ada Lovelace", "12345", T0)
        ]

    async def test_a_phone_that_is_no_phone_is_refused_naming_the_field(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        with pytest.raises(InvalidValueError, match="phone"):
            await sales.create_lead(commands.CreateLead("Ada", "call me"))
        assert await store.head_position() == 0


class TestContact:
    async def test_contacting_records_the_note(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        lead = await new_lead(sales)
        done = await sales.contact(commands.ContactLead(lead, "interested"))
        assert done.result.version == 2
        assert (await events_of(store, lead))[-1] == domain.Contacted(lead, "interested", T0)

    async def test_a_lead_that_does_not_exist_is_not_found(self, sales: LeadHandlers) -> None:
        with pytest.raises(StreamNotFoundError):
            await sales.contact(commands.ContactLead("nobody", ""))


class TestChangeContactDetails:
    async def test_the_same_details_change_nothing_and_answer_where_the_lead_stands(
        self, sales: LeadHandlers
    ) -> None:
        lead = await new_lead(sales)
        done = await sales.change_contact_details(
            commands.ChangeContactDetails(lead, "Ada Lovelace", "+44 20 7946 0958")
        )
        assert (done.id, done.result.version) == (lead, 1)

    async def test_an_anonymized_lead_takes_no_details(self, sales: LeadHandlers) -> None:
        lead = await new_lead(sales)
        await sales.anonymize(commands.AnonymizeLead(lead))
        with pytest.raises(domain.LeadForgotten):
            await sales.change_contact_details(commands.ChangeContactDetails(lead, "Ada", "12345"))


class TestSetFollowUp:
    async def test_a_follow_up_is_measured_against_the_injected_clock(
        self, sales: LeadHandlers, clock: VirtualClock
    ) -> None:
        lead = await new_lead(sales)
        on = T0 + timedelta(days=1)
        clock.advance(timedelta(days=2))
        with pytest.raises(domain.FollowUpOutOfRange):
            await sales.set_follow_up(commands.SetFollowUp(lead, on))

    async def test_a_visit_without_a_city_is_refused(self, sales: LeadHandlers) -> None:
        lead = await new_lead(sales)
        with pytest.raises(domain.VisitWithoutCity):
            await sales.set_follow_up(
                commands.SetFollowUp(lead, T0 + timedelta(days=1), needs_visit=True)
            )


class TestOrdersAndPayments:
    async def test_an_order_gets_an_order_id_from_the_id_factory(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        lead = await new_lead(sales)
        await sales.submit_order(commands.SubmitOrder(lead, 12_000, "EUR"))
        assert (await events_of(store, lead))[-1] == domain.OrderSubmitted(
            lead, "order-id2", 12_000, "EUR", T0
        )

    async def test_a_second_order_is_refused_by_name(self, sales: LeadHandlers) -> None:
        lead = await new_lead(sales)
        await sales.submit_order(commands.SubmitOrder(lead, 12_000, "EUR"))
        with pytest.raises(domain.OrderAlreadySubmitted):
            await sales.submit_order(commands.SubmitOrder(lead, 1, "EUR"))

    async def test_paying_another_lead_s_order_is_refused_by_name(
        self, sales: LeadHandlers
    ) -> None:
        lead = await new_lead(sales)
        with pytest.raises(domain.NoOrderToPay):
            await sales.confirm_payment(commands.ConfirmPayment(lead, "order-x"))
        await sales.submit_order(commands.SubmitOrder(lead, 12_000, "EUR"))
        with pytest.raises(domain.NotThisLeadsOrder):
            await sales.confirm_payment(commands.ConfirmPayment(lead, "order-x"))
        await sales.confirm_payment(commands.ConfirmPayment(lead, "order-id2"))
        with pytest.raises(domain.OrderAlreadyPaid):
            await sales.confirm_payment(commands.ConfirmPayment(lead, "order-id2"))


class TestClose:
    async def test_nothing_happens_to_a_closed_lead(self, sales: LeadHandlers) -> None:
        lead = await new_lead(sales)
        await sales.close(commands.CloseLead(lead, "not now"))
        with pytest.raises(domain.LeadAlreadyClosed, match=f"lead {lead} is closed"):
            await sales.contact(commands.ContactLead(lead, "again"))


class TestAnonymize:
    async def test_an_anonymized_lead_reads_as_forgotten(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        lead = await new_lead(sales)
        await sales.anonymize(commands.AnonymizeLead(lead))
        [initialized, *_] = await events_of(store, lead)
        assert isinstance(initialized, domain.LeadInitialized)
        assert initialized.name == "[forgotten]"


class TestVisitsTravelReports:
    async def test_a_booked_visit_then_a_cancelled_one_leaves_the_lead_to_reschedule(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        lead = await new_lead(sales)
        await sales.record_visit_booked(commands.RecordVisitBooked(lead, "t1"))
        await sales.record_visit_booked(commands.RecordVisitBooked(lead, "t1"))  # once only
        await sales.record_visit_cancelled(commands.RecordVisitCancelled(lead, "t1", "rejected"))
        assert (await events_of(store, lead))[1:] == [
            domain.VisitBooked(lead, "t1", T0),
            domain.VisitToReschedule(lead, "t1", "rejected", T0),
        ]
        state = await sales.leads.load(lead)
        assert (state.visit, state.visit_trip) == (domain.Visit.TO_RESCHEDULE, "t1")

    async def test_a_closed_lead_still_records_what_travel_says(self, sales: LeadHandlers) -> None:
        lead = await new_lead(sales)
        await sales.close(commands.CloseLead(lead))
        done = await sales.record_visit_booked(commands.RecordVisitBooked(lead, "t1"))
        assert done.result.version == 3


class TestNoteLiveCampaign:
    async def test_a_campaign_heard_of_twice_is_noted_once(
        self, sales: LeadHandlers, store: BaseEventStore
    ) -> None:
        await sales.note_live_campaign(commands.NoteLiveCampaign("c1", "Spring sale"))
        await sales.note_live_campaign(commands.NoteLiveCampaign("c1", "Spring sale"))
        promotions = await sales.promotions.load("live")
        assert promotions.live == {"c1": "Spring sale"}
        assert await store.stream_version("promotions-live") == 1
