"""Travel's Trip aggregate, given past events, when a command, then events."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from chronik.domain import DomainError
from chronik.testing.scenario import Scenario
from travel.domain import (
    EVENTS,
    ApprovalRequested,
    DepartureInPast,
    FlightBooked,
    FlightBookingFailed,
    FlightCancelled,
    HotelBooked,
    HotelBookingFailed,
    HotelCancelled,
    Trip,
    TripApproved,
    TripCancelled,
    TripConfirmed,
    TripRejected,
    TripRequested,
    VisitDeclined,
)

TRIP = "t1"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
DEPART = date(2026, 6, 1)

REQUESTED = TripRequested(TRIP, "Grace", "Lyon", DEPART, None, T0)
FLIGHT = FlightBooked(TRIP, "FL-100", T0)
HOTEL = HotelBooked(TRIP, "HT-101", T0)
AWAITING = ApprovalRequested(TRIP, T0)
APPROVED = TripApproved(TRIP, "the manager", T0)
REJECTED = TripRejected(TRIP, "the manager", "too dear", T0)

#: every status a trip reaches, by the events after its request
HISTORIES: dict[str, tuple[object, ...]] = {
    "requested": (),
    "booked": (FLIGHT, HOTEL),
    "awaiting_approval": (FLIGHT, HOTEL, AWAITING),
    "approved": (FLIGHT, HOTEL, AWAITING, APPROVED),
    "rejected": (FLIGHT, HOTEL, AWAITING, REJECTED),
    "confirmed": (FLIGHT, HOTEL, AWAITING, APPROVED, TripConfirmed(TRIP, T0)),
    "cancelled": (FLIGHT, TripCancelled(TRIP, "no hotel", T0)),
}


def trip(status: str, *more: object) -> Scenario[Trip]:
    return Scenario(Trip, TRIP).given(REQUESTED, *HISTORIES[status], *more)


class TestRequest:
    def test_a_trip_is_requested_with_its_destination_and_date(self) -> None:
        Scenario(Trip, TRIP).when_created(
            lambda: Trip.request(TRIP, "Grace", "Lyon", DEPART, T0)
        ).then(REQUESTED).then_state(
            traveller="Grace",
            destination="Lyon",
            depart_on=DEPART,
            lead_id=None,
            status="requested",
            flight=None,
            hotel=None,
        )

    def test_a_trip_for_a_lead_remembers_the_lead(self) -> None:
        Scenario(Trip, TRIP).when_created(
            lambda: Trip.request(TRIP, "sales team", "Lyon", DEPART, T0, lead_id="L1")
        ).then(TripRequested(TRIP, "sales team", "Lyon", DEPART, "L1", T0))

    def test_a_trip_may_depart_today(self) -> None:
        Scenario(Trip, TRIP).when_created(
            lambda: Trip.request(TRIP, "Grace", "Lyon", T0.date(), T0)
        ).then_state(depart_on=T0.date())

    @pytest.mark.parametrize("days", [1, 365])
    def test_a_trip_cannot_depart_in_the_past(self, days: int) -> None:
        past = T0.date() - timedelta(days=days)
        Scenario(Trip, TRIP).when_created(
            lambda: Trip.request(TRIP, "Grace", "Lyon", past, T0)
        ).then_raises(DepartureInPast, match="cannot depart in the past")

    def test_no_trip_event_carries_the_demos_simulation(self) -> None:
        for cls in EVENTS:
            assert "simulate" not in {f.name for f in dataclasses.fields(cls)}, cls


class TestVisits:
    def test_a_visit_becomes_a_trip_of_the_sales_team_on_its_day_in_utc(self) -> None:
        on = datetime(2026, 6, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))  # 31 May, UTC
        Scenario(Trip, TRIP).when_created(lambda: Trip.for_visit(TRIP, "L1", "Lyon", on, T0)).then(
            TripRequested(TRIP, "sales team", "Lyon", date(2026, 5, 31), "L1", T0)
        )

    @pytest.mark.parametrize(
        ("on", "city", "reason"),
        [
            (
                datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-1))),
                "Lyon",
                "it is after 9999-12-31 in UTC",
            ),
            (
                datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
                "Lyon",
                "it is before 0001-01-01 in UTC",
            ),
            (T0 - timedelta(days=1), "Lyon", "its day, 2026-05-03, has passed"),
            (T0 + timedelta(days=1), "  ", "the visit names no city"),
        ],
        ids=["after 9999", "before 0001", "passed", "no city"],
    )
    def test_a_visit_travel_cannot_book_is_declined_with_the_reason(
        self, on: datetime, city: str, reason: str
    ) -> None:
        Scenario(Trip, TRIP).when_created(
            lambda: Trip.for_visit(TRIP, "L1", city, on, T0)
        ).then_state(status="declined", over=True)
        declined = Trip.for_visit(TRIP, "L1", city, on, T0).pending_events
        assert len(declined) == 1 and isinstance(declined[0], VisitDeclined)
        assert (declined[0].on, declined[0].lead_id) == (on, "L1")
        assert reason in declined[0].reason


class TestBookings:
    def test_a_booked_flight_is_recorded(self) -> None:
        trip("requested").when(lambda t: t.booked_flight("FL-100", T1)).then(
            FlightBooked(TRIP, "FL-100", T1)
        ).then_state(flight="FL-100")

    def test_a_second_flight_booking_is_ignored(self) -> None:
        trip("requested", FLIGHT).when(lambda t: t.booked_flight("FL-200", T1)).then_nothing()

    def test_a_booked_hotel_is_recorded(self) -> None:
        trip("requested", FLIGHT).when(lambda t: t.booked_hotel("HT-101", T1)).then(
            HotelBooked(TRIP, "HT-101", T1)
        ).then_state(hotel="HT-101")

    def test_a_second_hotel_booking_is_ignored(self) -> None:
        trip("booked").when(lambda t: t.booked_hotel("HT-200", T1)).then_nothing()

    def test_failures_are_recorded_with_their_reason(self) -> None:
        trip("requested").when(lambda t: t.flight_failed("no seats to Lyon", T1)).then(
            FlightBookingFailed(TRIP, "no seats to Lyon", T1)
        )
        trip("requested", FLIGHT).when(lambda t: t.hotel_failed("no rooms in Lyon", T1)).then(
            HotelBookingFailed(TRIP, "no rooms in Lyon", T1)
        )

    @pytest.mark.parametrize("status", ["confirmed", "cancelled"])
    @pytest.mark.parametrize(
        "command",
        [
            lambda t: t.booked_flight("FL-300", T1),
            lambda t: t.booked_hotel("HT-300", T1),
            lambda t: t.flight_failed("late", T1),
            lambda t: t.hotel_failed("late", T1),
            lambda t: t.ask_approval(T1),
        ],
        ids=["flight", "hotel", "flight failed", "hotel failed", "ask approval"],
    )
    def test_a_trip_that_is_over_takes_no_more_bookings(
        self, status: str, command: Callable[[Trip], object]
    ) -> None:
        trip(status).when(command).then_nothing()

    def test_asking_for_approval_awaits_it(self) -> None:
        trip("booked").when(lambda t: t.ask_approval(T1)).then(
            ApprovalRequested(TRIP, T1)
        ).then_state(status="awaiting_approval")


class TestApproval:
    def test_a_trip_awaiting_approval_can_be_approved(self) -> None:
        trip("awaiting_approval").when(lambda t: t.approve("the manager", T1)).then(
            TripApproved(TRIP, "the manager", T1)
        ).then_state(status="approved")

    def test_a_trip_awaiting_approval_can_be_rejected_with_a_reason(self) -> None:
        trip("awaiting_approval").when(lambda t: t.reject("the manager", "too dear", T1)).then(
            TripRejected(TRIP, "the manager", "too dear", T1)
        ).then_state(status="rejected")

    @pytest.mark.parametrize(
        "status", ["requested", "booked", "approved", "rejected", "confirmed", "cancelled"]
    )
    def test_only_a_trip_awaiting_approval_can_be_approved(self, status: str) -> None:
        shown = "requested" if status == "booked" else status
        trip(status).when(lambda t: t.approve("the manager", T1)).then_raises(
            DomainError, match=f"trip t1 is {shown}: nothing to approve"
        )

    @pytest.mark.parametrize(
        "status", ["requested", "booked", "approved", "rejected", "confirmed", "cancelled"]
    )
    def test_only_a_trip_awaiting_approval_can_be_rejected(self, status: str) -> None:
        shown = "requested" if status == "booked" else status
        trip(status).when(lambda t: t.reject("the manager", "no", T1)).then_raises(
            DomainError, match=f"trip t1 is {shown}: nothing to reject"
        )


class TestConfirm:
    def test_an_approved_trip_is_confirmed(self) -> None:
        trip("approved").when(lambda t: t.confirm(T1)).then(TripConfirmed(TRIP, T1)).then_state(
            status="confirmed"
        )

    @pytest.mark.parametrize(
        "status", ["requested", "awaiting_approval", "rejected", "confirmed", "cancelled"]
    )
    def test_a_trip_that_is_not_approved_is_not_confirmed(self, status: str) -> None:
        trip(status).when(lambda t: t.confirm(T1)).then_nothing()


class TestCancellations:
    def test_a_booked_flight_is_cancelled_by_its_reference(self) -> None:
        trip("booked").when(lambda t: t.cancel_flight(T1)).then(
            FlightCancelled(TRIP, "FL-100", T1)
        ).then_state(flight=None, hotel="HT-101")

    def test_a_booked_hotel_is_cancelled_by_its_reference(self) -> None:
        trip("booked").when(lambda t: t.cancel_hotel(T1)).then(
            HotelCancelled(TRIP, "HT-101", T1)
        ).then_state(hotel=None, flight="FL-100")

    def test_there_is_no_flight_to_cancel_before_one_was_booked(self) -> None:
        trip("requested").when(lambda t: t.cancel_flight(T1)).then_nothing()

    def test_there_is_no_hotel_to_cancel_before_one_was_booked(self) -> None:
        trip("requested", FLIGHT).when(lambda t: t.cancel_hotel(T1)).then_nothing()

    def test_a_cancelled_flight_is_not_cancelled_again(self) -> None:
        trip("booked", FlightCancelled(TRIP, "FL-100", T0)).when(
            lambda t: t.cancel_flight(T1)
        ).then_nothing()

    def test_a_cancelled_hotel_is_not_cancelled_again(self) -> None:
        trip("booked", HotelCancelled(TRIP, "HT-101", T0)).when(
            lambda t: t.cancel_hotel(T1)
        ).then_nothing()

    def test_what_was_booked_is_still_cancelled_once_the_trip_is_cancelled(self) -> None:
        # The process may cancel the trip before its bookings: they must still go.
        trip("cancelled").when(lambda t: t.cancel_flight(T1)).then(
            FlightCancelled(TRIP, "FL-100", T1)
        )

    @pytest.mark.parametrize("status", ["requested", "awaiting_approval", "rejected"])
    def test_a_trip_that_is_not_over_can_be_cancelled(self, status: str) -> None:
        trip(status).when(lambda t: t.cancel("no approval", T1)).then(
            TripCancelled(TRIP, "no approval", T1)
        ).then_state(status="cancelled")

    @pytest.mark.parametrize("status", ["confirmed", "cancelled"])
    def test_a_trip_that_is_over_is_not_cancelled_again(self, status: str) -> None:
        trip(status).when(lambda t: t.cancel("late", T1)).then_nothing()
