"""Travel's queries: the trip board, and where a trip's booking process stands."""

from __future__ import annotations

from typing import Any

from chronik.errors import StreamNotFoundError
from chronik.processes import InstanceView, ProcessesAdmin, process_stream
from chronik.projections import ReadModels
from travel.domain import TripStatus
from travel.handlers import TRIPS
from travel.processes import TripBooking

Doc = dict[str, Any]


class TripViews:
    def __init__(self, read_models: ReadModels, processes: ProcessesAdmin) -> None:
        self.read_models = read_models
        self.processes = processes

    async def trips(self, status: TripStatus | None, limit: int) -> list[Doc]:
        where = {"status": status.value} if status else None
        return await self.read_models.find("trip_board", "trips", where=where, limit=limit)

    async def trip(self, trip_id: str) -> Doc:
        doc = await self.read_models.get("trip_board", "trips", trip_id)
        if doc is None:
            raise StreamNotFoundError(TRIPS + trip_id)
        return doc

    async def booking(self, trip_id: str) -> InstanceView:
        """Where the booking process stands: its state, steps and pending timeout."""
        process = await self.processes.instance(TripBooking.name, trip_id)
        if process is None:
            raise StreamNotFoundError(process_stream(TripBooking.name, trip_id))
        return process
