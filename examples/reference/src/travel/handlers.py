"""Travel's application layer: the booking process's commands, and sales' visits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chronik.eventstore import BaseEventStore, Repository
from chronik.messaging import MessageContext
from sales import contracts as sales
from travel.bookings import BookingFailed, Bookings
from travel.domain import (
    BookFlight,
    BookHotel,
    CancelFlight,
    CancelHotel,
    CancelTrip,
    ConfirmTrip,
    RequestApproval,
    Trip,
)


def _now() -> datetime:
    return datetime.now(UTC)


def trips(store: BaseEventStore) -> Repository[Trip]:
    return Repository(store, Trip, prefix="trip-", snapshot_every=50)


class TravelHandlers:
    """Each command is one change to one trip (one append)."""

    def __init__(self, store: BaseEventStore, bookings: Bookings) -> None:
        self.store = store
        self.bookings = bookings

    async def book_flight(self, c: BookFlight) -> None:
        repo = trips(self.store)
        trip = await repo.load(c.trip_id)
        try:
            reference = await self.bookings.book_flight(trip.destination, trip.simulate)
        except BookingFailed as exc:
            reason = str(exc)
            await repo.handle(c.trip_id, lambda t: t.flight_failed(reason, _now()))
            return
        await repo.handle(c.trip_id, lambda t: t.booked_flight(reference, _now()))

    async def book_hotel(self, c: BookHotel) -> None:
        repo = trips(self.store)
        trip = await repo.load(c.trip_id)
        try:
            reference = await self.bookings.book_hotel(trip.destination, trip.simulate)
        except BookingFailed as exc:
            reason = str(exc)
            await repo.handle(c.trip_id, lambda t: t.hotel_failed(reason, _now()))
            return
        await repo.handle(c.trip_id, lambda t: t.booked_hotel(reference, _now()))

    async def request_approval(self, c: RequestApproval) -> None:
        await trips(self.store).handle(c.trip_id, lambda t: t.ask_approval(_now()))

    async def cancel_flight(self, c: CancelFlight) -> None:
        await trips(self.store).handle(c.trip_id, lambda t: t.cancel_flight(_now()))

    async def cancel_hotel(self, c: CancelHotel) -> None:
        await trips(self.store).handle(c.trip_id, lambda t: t.cancel_hotel(_now()))

    async def confirm_trip(self, c: ConfirmTrip) -> None:
        await trips(self.store).handle(c.trip_id, lambda t: t.confirm(_now()))

    async def cancel_trip(self, c: CancelTrip) -> None:
        await trips(self.store).handle(c.trip_id, lambda t: t.cancel(c.reason, _now()))

    async def on_visit_needed(self, visit: sales.VisitNeeded, ctx: MessageContext) -> None:
        """Inbound translation: a sales visit becomes a trip request, or is declined.

        One append either way: every visit the contract allows is handled, none is
        retried into the dead letters (``Trip.for_visit`` says which visits are declined).
        """
        trip = Trip.for_visit(uuid.uuid4().hex[:12], visit.lead_id, visit.city, visit.on, _now())
        await trips(self.store).save(trip)
