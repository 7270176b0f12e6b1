"""Travel over HTTP: request trips, approve or reject them, follow their booking."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from chronik.errors import StreamNotFoundError
from chronik.http.app import CommandResult, run_command, wait_consistent
from chronik.http.auth import PERSONAL_DATA
from chronik.processes import ProcessesAdmin, process_stream
from chronik.runtime.service import Runtime
from travel.domain import Trip
from travel.handlers import trips
from travel.processes import TripBooking


class NewTrip(BaseModel):
    traveller: str = Field(min_length=1, max_length=200, examples=["Grace"])
    destination: str = Field(min_length=1, max_length=100, examples=["Lyon"])
    depart_on: date
    simulate: Literal["none", "no_flight", "no_hotel"] = Field(
        "none", description="Make a booking fail: the unhappy paths on demand"
    )


class Decision(BaseModel):
    by: str = Field(min_length=1, max_length=200, examples=["the manager"])
    reason: str = Field("", max_length=500)


class TripView(BaseModel):
    trip_id: str
    traveller: str
    destination: str
    depart_on: str
    status: str
    flight: str | None = None
    hotel: str | None = None
    lead_id: str | None = None
    reason: str | None = None


class BookingView(BaseModel):
    status: str
    finished: bool
    steps: int
    timeouts: dict[str, Any]


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    store = runtime.store

    def processes() -> ProcessesAdmin:
        # Made when asked: the routes are made before the runtime opened its database.
        return ProcessesAdmin(runtime.database.projections(), runtime.store)

    def id_of(stream_id: str) -> str:
        return stream_id.removeprefix("trip-")

    async def consistent(request: Request) -> None:
        await wait_consistent(request, ["trip_board"])

    @router.post("/trips", status_code=201, response_model=CommandResult)
    async def request_trip(body: NewTrip, request: Request, response: Response) -> Any:
        """Start the booking process: flight, hotel, approval (48 hours at most)."""

        async def work() -> tuple[str, Any]:
            trip_id = uuid.uuid4().hex[:12]
            trip = Trip.request(
                trip_id,
                body.traveller,
                body.destination,
                body.depart_on,
                datetime.now(UTC),
                simulate=body.simulate,
            )
            return trip_id, await trips(store).save(trip)

        return await run_command(request, response, work, id_of=id_of)

    @router.post("/trips/{trip_id}/approve", response_model=CommandResult)
    async def approve(trip_id: str, body: Decision, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            _, result = await trips(store).handle(
                trip_id, lambda t: t.approve(body.by, datetime.now(UTC))
            )
            return trip_id, result

        return await run_command(request, response, work, id_of=id_of)

    @router.post("/trips/{trip_id}/reject", response_model=CommandResult)
    async def reject(trip_id: str, body: Decision, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            _, result = await trips(store).handle(
                trip_id, lambda t: t.reject(body.by, body.reason, datetime.now(UTC))
            )
            return trip_id, result

        return await run_command(request, response, work, id_of=id_of)

    @router.get(
        "/trips",
        response_model=list[TripView],
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def list_trips(
        status: Annotated[str | None, Query(max_length=30)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Any:
        where = {"status": status} if status else None
        return await runtime.engine.read_models.find(
            "trip_board", "trips", where=where, limit=limit
        )

    @router.get(
        "/trips/{trip_id}",
        response_model=TripView,
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def get_trip(trip_id: str) -> Any:
        doc = await runtime.engine.read_models.get("trip_board", "trips", trip_id)
        if doc is None:
            raise StreamNotFoundError(f"trip-{trip_id}")
        return doc

    @router.get("/trips/{trip_id}/booking", response_model=BookingView)
    async def booking(trip_id: str) -> Any:
        """Where the booking process stands: its state, steps and pending timeout."""
        process = await processes().instance(TripBooking.name, trip_id)
        if process is None:
            raise StreamNotFoundError(process_stream(TripBooking.name, trip_id))
        return BookingView(
            status=process.status,
            finished=process.finished,
            steps=process.steps,
            timeouts=process.timeouts,
        )

    return router
