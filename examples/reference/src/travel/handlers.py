"""Travel's application layer: one handler per use case, the booking process's commands,
sales' visits, and what leaves the context.

Handlers take typed commands (``travel.commands``, and the process's in
``travel.domain``), change one trip each and save it. The time comes from the injected
clock, new ids from the injected factory: unit tests run them on the memory store
(tests/reference/test_travel_handlers.py). HTTP, the booking process and the consumer of
sales' visits call the same handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

from chronik.eventstore import AppendResult, BaseEventStore, Metadata, RecordedEvent, Repository
from chronik.messaging import MessageContext
from chronik.processes import Clock, SystemClock
from sales import contracts as sales
from travel import commands, contracts
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
    TripCancelled,
    TripConfirmed,
    VisitDeclined,
)

#: the stream of trip X is ``trip-X``: the one place travel spells it
TRIPS = "trip-"

NewId = Callable[[], str]


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def trips(store: BaseEventStore) -> Repository[Trip]:
    return Repository(store, Trip, prefix=TRIPS, snapshot_every=50)


class Changed(NamedTuple):
    """Which trip a command changed and where its append landed."""

    id: str
    result: AppendResult


def publish(recorded: RecordedEvent) -> object | None:
    """The translation out: what became of a visit sales asked for. Other trips stay here."""
    event = recorded.event
    if isinstance(event, TripConfirmed) and event.lead_id is not None:
        return contracts.VisitTripConfirmed(event.lead_id, event.trip_id, event.at)
    if isinstance(event, TripCancelled) and event.lead_id is not None:
        return contracts.VisitTripCancelled(event.lead_id, event.trip_id, event.reason, event.at)
    if isinstance(event, VisitDeclined):
        return contracts.VisitTripCancelled(event.lead_id, event.trip_id, event.reason, event.at)
    return None


class TravelHandlers:
    """Each command is one change to one trip (one append)."""

    def __init__(
        self,
        store: BaseEventStore,
        bookings: Bookings,
        *,
        clock: Clock | None = None,
        new_id: NewId = new_id,
    ) -> None:
        self.trips = trips(store)
        self.bookings = bookings
        self.clock = clock or SystemClock()
        self.new_id = new_id

    # -- use cases ---------------------------------------------------------------------

    async def request_trip(
        self, c: commands.RequestTrip, *, metadata: Metadata | None = None
    ) -> Changed:
        """Start the booking process (``metadata``: headers for the fakes, such as the demo's)."""
        trip_id = self.new_id()
        trip = Trip.request(trip_id, c.traveller, c.destination, c.depart_on, self.clock.now())
        result = await self.trips.save(trip, metadata=metadata)
        assert result is not None  # a new trip always has an event
        return Changed(trip_id, result)

    async def approve(self, c: commands.ApproveTrip) -> Changed:
        return await self._change(c.trip_id, lambda t: t.approve(c.by, self.clock.now()))

    async def reject(self, c: commands.RejectTrip) -> Changed:
        return await self._change(c.trip_id, lambda t: t.reject(c.by, c.reason, self.clock.now()))

    async def plan_visit(self, c: commands.PlanVisit) -> Changed:
        """A visit sales needs becomes a trip request, or is declined (one append either way).

        ``Trip.for_visit`` says which visits are declined: every visit the contract allows
        is handled, none is retried into the dead letters.
        """
        trip_id = self.new_id()
        trip = Trip.for_visit(trip_id, c.lead_id, c.city, c.on, self.clock.now())
        result = await self.trips.save(trip)
        assert result is not None
        return Changed(trip_id, result)

    async def _change(self, trip_id: str, act: Callable[[Trip], object]) -> Changed:
        _, result = await self.trips.handle(trip_id, act)
        assert result is not None  # approving and rejecting append or refuse
        return Changed(trip_id, result)

    # -- the booking process's commands --------------------------------------------------

    async def book_flight(self, c: BookFlight) -> None:
        trip = await self.trips.load(c.trip_id)
        try:
            reference = await self.bookings.book_flight(c.trip_id, trip.destination)
        except BookingFailed as exc:
            reason = str(exc)
            await self.trips.handle(c.trip_id, lambda t: t.flight_failed(reason, self.clock.now()))
            return
        await self.trips.handle(c.trip_id, lambda t: t.booked_flight(reference, self.clock.now()))

    async def book_hotel(self, c: BookHotel) -> None:
        trip = await self.trips.load(c.trip_id)
        try:
            reference = await self.bookings.book_hotel(c.trip_id, trip.destination)
        except BookingFailed as exc:
            reason = str(exc)
            await self.trips.handle(c.trip_id, lambda t: t.hotel_failed(reason, self.clock.now()))
            return
        await self.trips.handle(c.trip_id, lambda t: t.booked_hotel(reference, self.clock.now()))

    async def request_approval(self, c: RequestApproval) -> None:
        await self.trips.handle(c.trip_id, lambda t: t.ask_approval(self.clock.now()))

    async def cancel_flight(self, c: CancelFlight) -> None:
        await self.trips.handle(c.trip_id, lambda t: t.cancel_flight(self.clock.now()))

    async def cancel_hotel(self, c: CancelHotel) -> None:
        await self.trips.handle(c.trip_id, lambda t: t.cancel_hotel(self.clock.now()))

    async def confirm_trip(self, c: ConfirmTrip) -> None:
        await self.trips.handle(c.trip_id, lambda t: t.confirm(self.clock.now()))

    async def cancel_trip(self, c: CancelTrip) -> None:
        await self.trips.handle(c.trip_id, lambda t: t.cancel(c.reason, self.clock.now()))

    # -- sales' published language -------------------------------------------------------

    async def on_visit_needed(self, visit: sales.VisitNeeded, ctx: MessageContext) -> None:
        """Inbound translation: a sales visit becomes ``PlanVisit``."""
        await self.plan_visit(commands.PlanVisit(visit.lead_id, visit.city, visit.on))
