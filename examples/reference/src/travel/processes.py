"""The trip booking process manager: flight, then hotel, then approval, or undo it all.

    booking_flight -> booking_hotel -> awaiting_approval -> confirmed
          |                |                  |
          +----------------+------------------+--> cancelled (what was booked is cancelled)

The approval waits at most ``APPROVAL_WAIT``: a durable timeout, which survives restarts.
"""

from __future__ import annotations

from datetime import timedelta

from chronik.processes import FailurePolicy, ProcessManager, Step, on_timeout, starts, when
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

APPROVAL_WAIT = timedelta(hours=48)


class TripBooking(ProcessManager):
    name = "trip_booking"
    correlation_key = "trip_id"
    policy = FailurePolicy(retries=3, backoff=0.2, then="park")

    @starts(TripRequested)
    def requested(self, e: TripRequested, p: Step) -> None:
        p.send(BookFlight(e.trip_id))
        p.goto("booking_flight")

    @when("booking_flight", FlightBooked)
    def flight_booked(self, e: FlightBooked, p: Step) -> None:
        p.on_failure(CancelFlight(e.trip_id))
        p.send(BookHotel(e.trip_id))
        p.goto("booking_hotel")

    @when("booking_flight", FlightBookingFailed)
    def no_flight(self, e: FlightBookingFailed, p: Step) -> None:
        p.send(CancelTrip(e.trip_id, f"no flight: {e.reason}"))
        p.goto("cancelled")
        p.finish()

    @when("booking_hotel", HotelBooked)
    def hotel_booked(self, e: HotelBooked, p: Step) -> None:
        p.on_failure(CancelHotel(e.trip_id))
        p.send(RequestApproval(e.trip_id))
        p.schedule("approval", after=APPROVAL_WAIT)
        p.goto("awaiting_approval")

    @when("booking_hotel", HotelBookingFailed)
    def no_hotel(self, e: HotelBookingFailed, p: Step) -> None:
        p.compensate()
        p.send(CancelTrip(e.trip_id, f"no hotel: {e.reason}"))
        p.goto("cancelled")
        p.finish()

    @when("awaiting_approval", TripApproved)
    def approved(self, e: TripApproved, p: Step) -> None:
        p.cancel("approval")
        p.send(ConfirmTrip(e.trip_id))
        p.goto("confirmed")
        p.finish()

    @when("awaiting_approval", TripRejected)
    def rejected(self, e: TripRejected, p: Step) -> None:
        p.cancel("approval")
        p.compensate()
        p.send(CancelTrip(e.trip_id, f"rejected by {e.by}: {e.reason}"))
        p.goto("cancelled")
        p.finish()

    @on_timeout("approval")
    def approval_expired(self, p: Step) -> None:
        p.compensate()
        p.send(CancelTrip(p.instance, "no approval within 48 hours"))
        p.goto("cancelled")
        p.finish()
