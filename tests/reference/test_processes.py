"""The campaign publishing saga and the trip booking process manager, on a virtual clock.

Each test gives an instance its past triggers, then one event (or time passing), and
checks the commands it sends, in the order they go, its status and its pending timeouts.
No store, no sleeping. A step that compensates and then cancels the whole sends the
compensations (the latest first) before the cancellation.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns.domain import (
    ActivationRequested,
    BudgetRefused,
    BudgetReserved,
    CancelCampaign,
    PublicationConfirmed,
    PublicationRejected,
    PublishWithPartner,
    RejectCampaign,
    ReleaseBudget,
    ReserveBudget,
)
from campaigns.processes import PARTNER_WAIT, CampaignPublishing
from chronik.testing.scenario import ProcessScenario
from travel.domain import (
    BookFlight,
    BookHotel,
    CancelFlight,
    CancelHotel,
    CancelTrip,
    ConfirmTrip,
    FlightBooked,
    FlightBookingFailed,
    HotelBooked,
    HotelBookingFailed,
    RequestApproval,
    TripApproved,
    TripRejected,
    TripRequested,
)
from travel.processes import APPROVAL_WAIT, TripBooking

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)

# -- campaigns: the publishing saga ------------------------------------------------------

C1 = "c1"
ACTIVATION = ActivationRequested(C1, 500, T0)
RESERVED = BudgetReserved(C1, 500, T0)


def publishing(*history: object) -> ProcessScenario:
    return ProcessScenario(CampaignPublishing(), start=T0).given(*history)


class TestCampaignPublishing:
    def test_an_activation_reserves_the_campaign_s_cost(self) -> None:
        publishing().when(ACTIVATION).then_commands(ReserveBudget(C1, 500)).then_status(
            "reserving", finished=False
        ).then_data(cost_cents=500).then_timeouts()

    def test_a_reservation_asks_the_partner_and_waits_for_it_at_most_partner_wait(
        self,
    ) -> None:
        publishing(ACTIVATION).when(RESERVED).then_commands(PublishWithPartner(C1)).then_status(
            "publishing"
        ).then_timeouts("partner").then_due("partner", T0 + PARTNER_WAIT)

    def test_a_refused_reservation_rejects_the_campaign_and_ends(self) -> None:
        publishing(ACTIVATION).when(BudgetRefused(C1, 500, 100, T0)).then_commands(
            RejectCampaign(C1, "budget: 100 cents available")
        ).then_status("rejected", finished=True).then_timeouts()

    def test_a_confirmation_publishes_it_and_cancels_the_partner_timeout(self) -> None:
        scenario = publishing(ACTIVATION, RESERVED).when(PublicationConfirmed(C1, "AD-1", T0))
        scenario.then_commands().then_status("published", finished=True).then_timeouts()
        scenario.when_time_passes(PARTNER_WAIT * 2).then_commands().then_ignored()

    def test_a_partner_rejection_releases_the_budget(self) -> None:
        publishing(ACTIVATION, RESERVED).when(
            PublicationRejected(C1, "declined", T0)
        ).then_commands(ReleaseBudget(C1, 500)).then_status(
            "rejected", finished=True
        ).then_timeouts()

    def test_the_budget_is_released_once_however_often_the_partner_says_no(self) -> None:
        scenario = publishing(ACTIVATION, RESERVED, PublicationRejected(C1, "declined", T0))
        scenario.when(PublicationRejected(C1, "declined again", T0)).then_ignored()
        scenario.when_time_passes(PARTNER_WAIT * 2).then_commands().then_ignored()

    def test_the_partner_timeout_does_not_fire_before_partner_wait(self) -> None:
        publishing(ACTIVATION, RESERVED).when_time_passes(
            PARTNER_WAIT - TICK
        ).then_commands().then_ignored().then_status("publishing").then_timeouts("partner")

    def test_a_silent_partner_gets_the_budget_released_then_the_campaign_cancelled(
        self,
    ) -> None:
        publishing(ACTIVATION, RESERVED).when_time_passes(PARTNER_WAIT + TICK).then_commands(
            ReleaseBudget(C1, 500), CancelCampaign(C1, "the partner did not answer in time")
        ).then_status("cancelled", finished=True).then_timeouts()

    def test_a_late_answer_after_the_timeout_is_ignored(self) -> None:
        scenario = publishing(ACTIVATION, RESERVED).when_time_passes(PARTNER_WAIT + TICK)
        scenario.when(PublicationConfirmed(C1, "AD-1", T0)).then_ignored().then_status("cancelled")

    def test_a_refused_reservation_has_no_budget_to_release_later(self) -> None:
        scenario = publishing(ACTIVATION, BudgetRefused(C1, 500, 100, T0))
        scenario.when(PublicationRejected(C1, "declined", T0)).then_ignored()
        scenario.when_time_passes(PARTNER_WAIT * 2).then_ignored()

    @pytest.mark.parametrize(
        ("history", "event"),
        [
            ((), PublicationConfirmed(C1, "AD-1", T0)),
            ((), RESERVED),
            ((ACTIVATION,), PublicationConfirmed(C1, "AD-1", T0)),
            ((ACTIVATION,), PublicationRejected(C1, "declined", T0)),
            ((ACTIVATION, RESERVED), BudgetReserved(C1, 500, T0)),
            ((ACTIVATION, RESERVED), BudgetRefused(C1, 500, 0, T0)),
            ((ACTIVATION, RESERVED), ACTIVATION),
            ((ACTIVATION, RESERVED, PublicationConfirmed(C1, "AD-1", T0)), RESERVED),
        ],
        ids=[
            "confirmation, never activated",
            "reservation, never activated",
            "confirmation while reserving",
            "rejection while reserving",
            "second reservation while publishing",
            "refusal while publishing",
            "second activation",
            "reservation once published",
        ],
    )
    def test_an_event_in_the_wrong_state_is_ignored(
        self, history: tuple[object, ...], event: object
    ) -> None:
        scenario = publishing(*history)
        status = scenario.state.status if scenario.state is not None else "new"
        scenario.when(event).then_ignored().then_commands().then_status(status)


# -- travel: the trip booking process ----------------------------------------------------

TRIP = "t1"
REQUESTED = TripRequested(TRIP, "Grace", "Lyon", date(2026, 6, 1), None, T0)
FLIGHT = FlightBooked(TRIP, "FL-100", T0)
HOTEL = HotelBooked(TRIP, "HT-101", T0)
APPROVED = TripApproved(TRIP, "the manager", T0)
REJECTED = TripRejected(TRIP, "the manager", "too dear", T0)
TIMED_OUT = CancelTrip(TRIP, "no approval within 48 hours")


def booking(*history: object) -> ProcessScenario:
    return ProcessScenario(TripBooking(), start=T0).given(*history)


class TestTripBooking:
    def test_a_request_books_the_flight_first(self) -> None:
        booking().when(REQUESTED).then_commands(BookFlight(TRIP)).then_status(
            "booking_flight"
        ).then_timeouts()

    def test_a_booked_flight_books_the_hotel(self) -> None:
        booking(REQUESTED).when(FLIGHT).then_commands(BookHotel(TRIP)).then_status(
            "booking_hotel"
        ).then_timeouts()

    def test_a_booked_hotel_asks_for_approval_within_48_hours(self) -> None:
        booking(REQUESTED, FLIGHT).when(HOTEL).then_commands(RequestApproval(TRIP)).then_status(
            "awaiting_approval"
        ).then_timeouts("approval").then_due("approval", T0 + timedelta(hours=48))
        assert timedelta(hours=48) == APPROVAL_WAIT

    def test_the_happy_path_ends_confirmed(self) -> None:
        scenario = booking()
        scenario.when(REQUESTED).then_commands(BookFlight(TRIP))
        scenario.when(FLIGHT).then_commands(BookHotel(TRIP))
        scenario.when(HOTEL).then_commands(RequestApproval(TRIP))
        scenario.when(APPROVED).then_commands(ConfirmTrip(TRIP)).then_status(
            "confirmed", finished=True
        ).then_timeouts()

    def test_an_approval_cancels_the_approval_timeout(self) -> None:
        scenario = booking(REQUESTED, FLIGHT, HOTEL, APPROVED)
        scenario.when_time_passes(APPROVAL_WAIT * 2).then_commands().then_ignored()

    def test_no_flight_cancels_the_trip_and_nothing_else(self) -> None:
        booking(REQUESTED).when(FlightBookingFailed(TRIP, "no seats to Lyon", T0)).then_commands(
            CancelTrip(TRIP, "no flight: no seats to Lyon")
        ).then_status("cancelled", finished=True).then_timeouts()

    def test_no_hotel_cancels_the_flight_then_the_trip(self) -> None:
        booking(REQUESTED, FLIGHT).when(HotelBookingFailed(TRIP, "no rooms", T0)).then_commands(
            CancelFlight(TRIP), CancelTrip(TRIP, "no hotel: no rooms")
        ).then_status("cancelled", finished=True).then_timeouts()

    def test_a_rejection_cancels_the_hotel_then_the_flight_then_the_trip(self) -> None:
        booking(REQUESTED, FLIGHT, HOTEL).when(REJECTED).then_commands(
            CancelHotel(TRIP),
            CancelFlight(TRIP),
            CancelTrip(TRIP, "rejected by the manager: too dear"),
        ).then_status("cancelled", finished=True).then_timeouts()

    def test_nothing_fires_after_47_hours_and_everything_is_undone_after_49(self) -> None:
        scenario = booking(REQUESTED, FLIGHT, HOTEL)
        scenario.when_time_passes(timedelta(hours=47)).then_commands().then_ignored()
        scenario.then_status("awaiting_approval", finished=False).then_timeouts("approval")
        scenario.when_time_passes(timedelta(hours=2)).then_commands(
            CancelHotel(TRIP), CancelFlight(TRIP), TIMED_OUT
        ).then_status("cancelled", finished=True).then_timeouts()

    def test_the_approval_timeout_fires_at_48_hours_not_a_microsecond_before(self) -> None:
        scenario = booking(REQUESTED, FLIGHT, HOTEL)
        scenario.when_time_passes(APPROVAL_WAIT - TICK).then_ignored()
        scenario.when_time_passes(TICK).then_commands(
            CancelHotel(TRIP), CancelFlight(TRIP), TIMED_OUT
        ).then_status("cancelled", finished=True)

    def test_a_decision_after_the_timeout_is_ignored(self) -> None:
        scenario = booking(REQUESTED, FLIGHT, HOTEL).when_time_passes(timedelta(hours=49))
        scenario.when(APPROVED).then_ignored().then_commands().then_status("cancelled")
        scenario.when(REJECTED).then_ignored().then_commands()

    def test_the_compensations_are_sent_once(self) -> None:
        scenario = booking(REQUESTED, FLIGHT, HOTEL, REJECTED)
        scenario.when_time_passes(timedelta(hours=49)).then_commands().then_ignored()
        scenario.when(REJECTED).then_ignored()

    @pytest.mark.parametrize(
        ("history", "event", "status"),
        [
            ((), FLIGHT, "new"),
            ((REQUESTED,), HOTEL, "booking_flight"),
            ((REQUESTED,), APPROVED, "booking_flight"),
            ((REQUESTED,), HotelBookingFailed(TRIP, "no rooms", T0), "booking_flight"),
            ((REQUESTED, FLIGHT), FLIGHT, "booking_hotel"),
            ((REQUESTED, FLIGHT), REJECTED, "booking_hotel"),
            (
                (REQUESTED, FLIGHT, HOTEL),
                FlightBookingFailed(TRIP, "late", T0),
                "awaiting_approval",
            ),
            ((REQUESTED, FLIGHT, HOTEL), REQUESTED, "awaiting_approval"),
            ((REQUESTED, FLIGHT, HOTEL, APPROVED), REJECTED, "confirmed"),
            ((REQUESTED, FlightBookingFailed(TRIP, "no seats", T0)), FLIGHT, "cancelled"),
        ],
        ids=[
            "flight before any request",
            "hotel while booking the flight",
            "approval while booking the flight",
            "no hotel while booking the flight",
            "second flight",
            "rejection while booking the hotel",
            "no flight while awaiting approval",
            "second request",
            "rejection once confirmed",
            "flight once cancelled",
        ],
    )
    def test_an_event_in_the_wrong_state_is_ignored(
        self, history: tuple[object, ...], event: object, status: str
    ) -> None:
        booking(*history).when(event).then_ignored().then_commands().then_status(status)
