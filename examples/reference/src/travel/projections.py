"""Travel's read model: the trip board."""

from __future__ import annotations

from chronik.projections import Projection, ReadModelTx, handles
from travel.domain import (
    ApprovalRequested,
    FlightBooked,
    FlightCancelled,
    HotelBooked,
    HotelCancelled,
    TripApproved,
    TripCancelled,
    TripConfirmed,
    TripRejected,
    TripRequested,
    TripStatus,
    VisitDeclined,
)


class TripBoard(Projection):
    name = "trip_board"
    tables = ("trips",)

    @handles(TripRequested)
    async def _requested(self, e: TripRequested, tx: ReadModelTx) -> None:
        tx.put(
            "trips",
            e.trip_id,
            {
                "trip_id": e.trip_id,
                "traveller": e.traveller,
                "destination": e.destination,
                "depart_on": e.depart_on.isoformat(),
                "status": TripStatus.REQUESTED.value,
                "flight": None,
                "hotel": None,
                "lead_id": e.lead_id,
                "reason": None,
            },
        )

    @handles(FlightBooked)
    async def _flight(self, e: FlightBooked, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"flight": e.reference, "status": TripStatus.BOOKING.value})

    @handles(HotelBooked)
    async def _hotel(self, e: HotelBooked, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"hotel": e.reference})

    @handles(FlightCancelled)
    async def _flight_cancelled(self, e: FlightCancelled, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"flight": None})

    @handles(HotelCancelled)
    async def _hotel_cancelled(self, e: HotelCancelled, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"hotel": None})

    @handles(ApprovalRequested)
    async def _awaiting(self, e: ApprovalRequested, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"status": TripStatus.AWAITING_APPROVAL.value})

    @handles(TripApproved)
    async def _approved(self, e: TripApproved, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"status": TripStatus.APPROVED.value})

    @handles(TripRejected)
    async def _rejected(self, e: TripRejected, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"status": TripStatus.REJECTED.value, "reason": e.reason})

    @handles(TripConfirmed)
    async def _confirmed(self, e: TripConfirmed, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"status": TripStatus.CONFIRMED.value})

    @handles(TripCancelled)
    async def _cancelled(self, e: TripCancelled, tx: ReadModelTx) -> None:
        tx.patch("trips", e.trip_id, {"status": TripStatus.CANCELLED.value, "reason": e.reason})

    @handles(VisitDeclined)
    async def _declined(self, e: VisitDeclined, tx: ReadModelTx) -> None:
        tx.put(
            "trips",
            e.trip_id,
            {
                "trip_id": e.trip_id,
                "traveller": e.traveller,
                "destination": e.destination,
                "depart_on": e.on.date().isoformat(),  # the day as sales gave it
                "status": TripStatus.DECLINED.value,
                "flight": None,
                "hotel": None,
                "lead_id": e.lead_id,
                "reason": e.reason,
            },
        )
