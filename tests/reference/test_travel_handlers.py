"""Travel's use cases and the booking process's commands, through their handlers on the
memory store.

Which booking the demo makes fail is the fake suppliers' setting, read from the header
of the append that requested the trip: no domain event carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest

from chronik.adapters.memory.database import MemoryDatabase
from chronik.eventstore import BaseEventStore, EventTypes, Metadata
from chronik.processes import VirtualClock
from travel import commands, contracts, domain
from travel.bookings import SIMULATE_HEADER, Bookings, simulation_from_headers
from travel.handlers import TRIPS, TravelHandlers, publish
from travel.upcasting import UPCASTERS

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
DEPART = date(2026, 6, 1)


@pytest.fixture
def store() -> BaseEventStore:
    return MemoryDatabase().event_store(EventTypes(domain.EVENTS, upcasters=UPCASTERS))


@pytest.fixture
def travel(store: BaseEventStore) -> TravelHandlers:
    ids: Iterator[str] = iter(f"t{n}" for n in range(1, 100))
    bookings = Bookings(simulation_of=simulation_from_headers(store, TRIPS))
    return TravelHandlers(store, bookings, clock=VirtualClock(T0), new_id=lambda: next(ids))


async def requested(travel: TravelHandlers, simulate: str = "none") -> str:
    demo = Metadata(headers={SIMULATE_HEADER: simulate})
    done = await travel.request_trip(commands.RequestTrip("Grace", "Lyon", DEPART), metadata=demo)
    return done.id


async def booked_and_awaiting(travel: TravelHandlers, trip_id: str) -> None:
    await travel.book_flight(domain.BookFlight(trip_id))
    await travel.book_hotel(domain.BookHotel(trip_id))
    await travel.request_approval(domain.RequestApproval(trip_id))


class TestRequestTrip:
    async def test_a_trip_is_requested_under_the_next_id(self, travel: TravelHandlers) -> None:
        trip_id = await requested(travel)
        trip = await travel.trips.load(trip_id)
        assert (trip_id, trip.status, trip.depart_on) == (
            "t1",
            domain.TripStatus.REQUESTED,
            DEPART,
        )

    async def test_a_departure_before_the_clock_s_day_is_refused_by_name(
        self, travel: TravelHandlers
    ) -> None:
        with pytest.raises(domain.DepartureInPast):
            await travel.request_trip(
                commands.RequestTrip("Grace", "Lyon", T0.date() - timedelta(days=1))
            )


class TestApproveAndReject:
    async def test_a_trip_awaiting_approval_is_approved_once(self, travel: TravelHandlers) -> None:
        trip_id = await requested(travel)
        with pytest.raises(domain.NotAwaitingApproval, match="nothing to approve"):
            await travel.approve(commands.ApproveTrip(trip_id, "the manager"))
        await booked_and_awaiting(travel, trip_id)
        done = await travel.approve(commands.ApproveTrip(trip_id, "the manager"))
        assert done.result.version == 5
        with pytest.raises(domain.NotAwaitingApproval, match="nothing to reject"):
            await travel.reject(commands.RejectTrip(trip_id, "the manager"))


class TestTheBookingProcessesCommands:
    @pytest.mark.parametrize(
        ("simulate", "flight", "hotel"),
        [("none", True, True), ("no_flight", False, True), ("no_hotel", True, False)],
    )
    async def test_the_suppliers_fail_as_the_demo_asked_for_each_trip(
        self, travel: TravelHandlers, simulate: str, flight: bool, hotel: bool
    ) -> None:
        trip_id = await requested(travel, simulate)
        await travel.book_flight(domain.BookFlight(trip_id))
        await travel.book_hotel(domain.BookHotel(trip_id))
        trip = await travel.trips.load(trip_id)
        assert (trip.flight is not None, trip.hotel is not None) == (flight, hotel)


class TestPlanVisit:
    async def test_a_visit_becomes_a_trip_of_the_sales_team_for_the_lead(
        self, travel: TravelHandlers
    ) -> None:
        done = await travel.plan_visit(commands.PlanVisit("L1", "Lyon", T0 + timedelta(days=2)))
        trip = await travel.trips.load(done.id)
        assert (trip.traveller, trip.destination, trip.lead_id) == ("sales team", "Lyon", "L1")

    async def test_a_visit_on_a_day_gone_by_is_declined(self, travel: TravelHandlers) -> None:
        done = await travel.plan_visit(commands.PlanVisit("L1", "Lyon", T0 - timedelta(days=2)))
        assert (await travel.trips.load(done.id)).status == domain.TripStatus.DECLINED


class TestPublishes:
    """What became of a visit leaves for sales; trips nobody asked for stay in travel."""

    async def last(self, store: BaseEventStore, trip_id: str) -> object | None:
        return publish((await store.read_stream(TRIPS + trip_id))[-1])

    async def test_a_visit_s_trip_confirmed_leaves_as_visit_trip_confirmed(
        self, travel: TravelHandlers, store: BaseEventStore
    ) -> None:
        done = await travel.plan_visit(commands.PlanVisit("L1", "Lyon", T0 + timedelta(days=2)))
        await booked_and_awaiting(travel, done.id)
        await travel.approve(commands.ApproveTrip(done.id, "the manager"))
        await travel.confirm_trip(domain.ConfirmTrip(done.id))
        assert await self.last(store, done.id) == contracts.VisitTripConfirmed("L1", done.id, T0)

    async def test_a_visit_s_trip_cancelled_leaves_as_visit_trip_cancelled(
        self, travel: TravelHandlers, store: BaseEventStore
    ) -> None:
        done = await travel.plan_visit(commands.PlanVisit("L1", "Lyon", T0 + timedelta(days=2)))
        await travel.cancel_trip(domain.CancelTrip(done.id, "no hotel"))
        assert await self.last(store, done.id) == contracts.VisitTripCancelled(
            "L1", done.id, "no hotel", T0
        )

    async def test_a_declined_visit_leaves_as_visit_trip_cancelled(
        self, travel: TravelHandlers, store: BaseEventStore
    ) -> None:
        done = await travel.plan_visit(commands.PlanVisit("L1", " ", T0 + timedelta(days=2)))
        assert await self.last(store, done.id) == contracts.VisitTripCancelled(
            "L1", done.id, "the visit names no city", T0
        )

    async def test_a_trip_nobody_asked_for_stays_inside(
        self, travel: TravelHandlers, store: BaseEventStore
    ) -> None:
        trip_id = await requested(travel)
        await booked_and_awaiting(travel, trip_id)
        await travel.approve(commands.ApproveTrip(trip_id, "the manager"))
        await travel.confirm_trip(domain.ConfirmTrip(trip_id))
        for record in await store.read_stream(TRIPS + trip_id):
            assert publish(record) is None


class TestStoredEventsOfTheOldShape:
    async def test_a_trip_requested_with_a_simulation_in_the_event_still_reads(
        self, store: BaseEventStore
    ) -> None:
        stored = {"trip_id": "t0", "traveller": "Grace", "destination": "Lyon"}
        raw = msgspec.json.encode(
            {
                **stored,
                "depart_on": "2026-06-01",
                "simulate": "no_hotel",
                "lead_id": None,
                "at": T0.isoformat(),
            }
        )
        obj = store.types.parse("trip-t0", 1, raw)
        event = store.types.decode_slow("trip-t0", 1, "travel.trip_requested", 1, obj, {})
        assert event == domain.TripRequested("t0", "Grace", "Lyon", DEPART, None, T0)

    async def test_a_confirmation_stored_before_it_named_the_lead_still_reads(
        self, store: BaseEventStore
    ) -> None:
        raw = msgspec.json.encode({"trip_id": "t0", "at": T0.isoformat()})
        obj = store.types.parse("trip-t0", 2, raw)
        event = store.types.decode_slow("trip-t0", 2, "travel.trip_confirmed", 1, obj, {})
        assert event == domain.TripConfirmed("t0", T0, None)


class TestTheBookingProcessesCompensations:
    async def test_cancelling_the_bookings_then_the_trip_leaves_nothing_booked(
        self, travel: TravelHandlers
    ) -> None:
        trip_id = await requested(travel)
        await booked_and_awaiting(travel, trip_id)
        await travel.cancel_flight(domain.CancelFlight(trip_id))
        await travel.cancel_hotel(domain.CancelHotel(trip_id))
        await travel.cancel_trip(domain.CancelTrip(trip_id, "no approval within 48 hours"))
        trip = await travel.trips.load(trip_id)
        assert (trip.flight, trip.hotel, trip.status) == (None, None, domain.TripStatus.CANCELLED)

    async def test_a_trip_is_confirmed_only_once_approved(self, travel: TravelHandlers) -> None:
        trip_id = await requested(travel)
        await booked_and_awaiting(travel, trip_id)
        await travel.confirm_trip(domain.ConfirmTrip(trip_id))
        assert (await travel.trips.load(trip_id)).status == domain.TripStatus.AWAITING_APPROVAL
        await travel.approve(commands.ApproveTrip(trip_id, "the manager"))
        await travel.confirm_trip(domain.ConfirmTrip(trip_id))
        assert (await travel.trips.load(trip_id)).status == domain.TripStatus.CONFIRMED
