"""Travel: business trips for sales staff: flight, hotel, a manager's approval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TypeVar

from chronik.domain import Aggregate, DomainError, EventList, applies, command

T = TypeVar("T")

#: Every event of the context, in the order they were declared: ``@_event`` registers a
#: class here as it names it, so an event is declared once (the service, the codec and
#: the tests read this list).
EVENTS = EventList()
_event = EVENTS.event


class TripStatus(StrEnum):
    """Where a trip stands. ``BOOKING`` is the board's word for a trip whose flight is
    booked and whose hotel is being booked (the aggregate stays ``REQUESTED`` until it
    asks for approval)."""

    REQUESTED = "requested"
    BOOKING = "booking"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    DECLINED = "declined"


#: the prefix of each broken rule's problem type (RFC 9457): clients tell the rules apart
#: by it, not by the text; chronik's HTTP adapter answers a rule with the type it declares
RULES = "tag:chronik.dev,2026:reference/travel/"


class DepartureInPast(DomainError):
    problem_type = RULES + "departure-in-past"

    def __init__(self, depart_on: date) -> None:
        self.depart_on = depart_on
        super().__init__("a trip cannot depart in the past")


class NotAwaitingApproval(DomainError):
    """Only a trip that asked for approval can be approved or rejected, once."""

    problem_type = RULES + "not-awaiting-approval"

    def __init__(self, trip_id: str, status: TripStatus, decision: str) -> None:
        self.trip_id, self.status = trip_id, status
        super().__init__(f"trip {trip_id} is {status}: nothing to {decision}")


@_event("travel.trip_requested", version=2)
@dataclass(frozen=True, slots=True)
class TripRequested:
    """Version 2: version 1 also held the demo's ``simulate``, now a header of the append
    (``travel.bookings``); its upcaster drops the field."""

    trip_id: str
    traveller: str
    destination: str
    depart_on: date
    lead_id: str | None
    at: datetime


@_event("travel.flight_booked")
@dataclass(frozen=True, slots=True)
class FlightBooked:
    trip_id: str
    reference: str
    at: datetime


@_event("travel.flight_booking_failed")
@dataclass(frozen=True, slots=True)
class FlightBookingFailed:
    trip_id: str
    reason: str
    at: datetime


@_event("travel.hotel_booked")
@dataclass(frozen=True, slots=True)
class HotelBooked:
    trip_id: str
    reference: str
    at: datetime


@_event("travel.hotel_booking_failed")
@dataclass(frozen=True, slots=True)
class HotelBookingFailed:
    trip_id: str
    reason: str
    at: datetime


@_event("travel.approval_requested")
@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    trip_id: str
    at: datetime


@_event("travel.trip_approved")
@dataclass(frozen=True, slots=True)
class TripApproved:
    trip_id: str
    by: str
    at: datetime


@_event("travel.trip_rejected")
@dataclass(frozen=True, slots=True)
class TripRejected:
    trip_id: str
    by: str
    reason: str
    at: datetime


@_event("travel.flight_cancelled")
@dataclass(frozen=True, slots=True)
class FlightCancelled:
    trip_id: str
    reference: str
    at: datetime


@_event("travel.hotel_cancelled")
@dataclass(frozen=True, slots=True)
class HotelCancelled:
    trip_id: str
    reference: str
    at: datetime


@_event("travel.trip_confirmed")
@dataclass(frozen=True, slots=True)
class TripConfirmed:
    """``lead_id``: the lead whose visit the trip is for (came later: absent reads None)."""

    trip_id: str
    at: datetime
    lead_id: str | None = None


@_event("travel.trip_cancelled")
@dataclass(frozen=True, slots=True)
class TripCancelled:
    """``lead_id``: the lead whose visit the trip is for (came later: absent reads None)."""

    trip_id: str
    reason: str
    at: datetime
    lead_id: str | None = None


@_event("travel.visit_declined")
@dataclass(frozen=True, slots=True)
class VisitDeclined:
    """A visit sales asked for that travel cannot book: on the board, never lost."""

    trip_id: str
    traveller: str
    destination: str
    on: datetime  # the visit's time as sales gave it
    lead_id: str
    reason: str
    at: datetime


@command("travel.book_flight")
@dataclass(frozen=True)
class BookFlight:
    trip_id: str


@command("travel.book_hotel")
@dataclass(frozen=True)
class BookHotel:
    trip_id: str


@command("travel.request_approval")
@dataclass(frozen=True)
class RequestApproval:
    trip_id: str


@command("travel.cancel_flight")
@dataclass(frozen=True)
class CancelFlight:
    trip_id: str


@command("travel.cancel_hotel")
@dataclass(frozen=True)
class CancelHotel:
    trip_id: str


@command("travel.confirm_trip")
@dataclass(frozen=True)
class ConfirmTrip:
    trip_id: str


@command("travel.cancel_trip")
@dataclass(frozen=True)
class CancelTrip:
    trip_id: str
    reason: str


def _visit_day(on: datetime, today: date) -> tuple[date | None, str | None]:
    """The UTC day a visit departs on, or why travel cannot book it."""
    try:
        day = on.astimezone(UTC).date()
    except OverflowError:  # near year 1 or 9999 the UTC day is out of a date's range
        edge = "after 9999-12-31" if on.year > 1 else "before 0001-01-01"
        return None, f"its time {on.isoformat()} cannot be booked: it is {edge} in UTC"
    if day < today:
        return day, f"its day, {day.isoformat()}, has passed"
    return day, None


class Trip(Aggregate):
    """A trip: its bookings and its approval. The booking process drives it."""

    traveller: str
    destination: str
    depart_on: date | None
    lead_id: str | None
    status: TripStatus
    flight: str | None
    hotel: str | None

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.traveller = ""
        self.destination = ""
        self.depart_on = None
        self.lead_id = None
        self.status = TripStatus.REQUESTED
        self.flight = None
        self.hotel = None

    @classmethod
    def request(
        cls,
        trip_id: str,
        traveller: str,
        destination: str,
        depart_on: date,
        at: datetime,
        *,
        lead_id: str | None = None,
    ) -> Trip:
        if depart_on < at.date():
            raise DepartureInPast(depart_on)
        trip = cls(trip_id)
        trip.record(TripRequested(trip_id, traveller, destination, depart_on, lead_id, at))
        return trip

    @classmethod
    def for_visit(cls, trip_id: str, lead_id: str, city: str, on: datetime, at: datetime) -> Trip:
        """A trip of the sales team for a visit sales needs, or the visit declined.

        Every visit the published language allows is taken: one on a day travel can
        book becomes a trip request (departing on the visit's day, in UTC), however far
        ahead; any other is declined with the reason (the board shows it), not refused,
        so the message is handled and not retried.
        """
        traveller = "sales team"
        day, reason = _visit_day(on, at.date())
        if reason is None and not city.strip():
            reason = "the visit names no city"
        if reason is not None or day is None:
            trip = cls(trip_id)
            trip.record(VisitDeclined(trip_id, traveller, city, on, lead_id, reason or "", at))
            return trip
        return cls.request(trip_id, traveller, city, day, at, lead_id=lead_id)

    @property
    def over(self) -> bool:
        return self.status in (TripStatus.CONFIRMED, TripStatus.CANCELLED, TripStatus.DECLINED)

    def booked_flight(self, reference: str, at: datetime) -> None:
        if not self.over and self.flight is None:
            self.record(FlightBooked(self.id, reference, at))

    def flight_failed(self, reason: str, at: datetime) -> None:
        if not self.over:
            self.record(FlightBookingFailed(self.id, reason, at))

    def booked_hotel(self, reference: str, at: datetime) -> None:
        if not self.over and self.hotel is None:
            self.record(HotelBooked(self.id, reference, at))

    def hotel_failed(self, reason: str, at: datetime) -> None:
        if not self.over:
            self.record(HotelBookingFailed(self.id, reason, at))

    def ask_approval(self, at: datetime) -> None:
        if not self.over:
            self.record(ApprovalRequested(self.id, at))

    def approve(self, by: str, at: datetime) -> None:
        if self.status != TripStatus.AWAITING_APPROVAL:
            raise NotAwaitingApproval(self.id, self.status, "approve")
        self.record(TripApproved(self.id, by, at))

    def reject(self, by: str, reason: str, at: datetime) -> None:
        if self.status != TripStatus.AWAITING_APPROVAL:
            raise NotAwaitingApproval(self.id, self.status, "reject")
        self.record(TripRejected(self.id, by, reason, at))

    def cancel_flight(self, at: datetime) -> None:
        if self.flight is not None:
            self.record(FlightCancelled(self.id, self.flight, at))

    def cancel_hotel(self, at: datetime) -> None:
        if self.hotel is not None:
            self.record(HotelCancelled(self.id, self.hotel, at))

    def confirm(self, at: datetime) -> None:
        if self.status == TripStatus.APPROVED:
            self.record(TripConfirmed(self.id, at, self.lead_id))

    def cancel(self, reason: str, at: datetime) -> None:
        if not self.over:
            self.record(TripCancelled(self.id, reason, at, self.lead_id))

    @applies(TripRequested)
    def _requested(self, e: TripRequested) -> None:
        self.traveller, self.destination = e.traveller, e.destination
        self.depart_on, self.lead_id = e.depart_on, e.lead_id

    @applies(FlightBooked)
    def _flight(self, e: FlightBooked) -> None:
        self.flight = e.reference

    @applies(HotelBooked)
    def _hotel(self, e: HotelBooked) -> None:
        self.hotel = e.reference

    @applies(FlightBookingFailed, HotelBookingFailed)
    def _failed(self, e: FlightBookingFailed | HotelBookingFailed) -> None:
        pass

    @applies(ApprovalRequested)
    def _awaiting(self, e: ApprovalRequested) -> None:
        self.status = TripStatus.AWAITING_APPROVAL

    @applies(TripApproved)
    def _approved(self, e: TripApproved) -> None:
        self.status = TripStatus.APPROVED

    @applies(TripRejected)
    def _rejected(self, e: TripRejected) -> None:
        self.status = TripStatus.REJECTED

    @applies(FlightCancelled)
    def _flight_cancelled(self, e: FlightCancelled) -> None:
        self.flight = None

    @applies(HotelCancelled)
    def _hotel_cancelled(self, e: HotelCancelled) -> None:
        self.hotel = None

    @applies(TripConfirmed)
    def _confirmed(self, e: TripConfirmed) -> None:
        self.status = TripStatus.CONFIRMED

    @applies(TripCancelled)
    def _cancelled(self, e: TripCancelled) -> None:
        self.status = TripStatus.CANCELLED

    @applies(VisitDeclined)
    def _declined(self, e: VisitDeclined) -> None:
        self.traveller, self.destination = e.traveller, e.destination
        self.lead_id = e.lead_id
        self.status = TripStatus.DECLINED
