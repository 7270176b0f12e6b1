"""Travel over HTTP: each route translates a request into a command or a query, and back.

The use cases live in ``travel.handlers`` and the questions in ``travel.views``; a
broken rule (a ``DomainError`` subclass) answers 409 with the problem type it declares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from chronik.eventstore import Metadata
from chronik.http.app import CommandResult, consistent_with, run_command
from chronik.http.auth import PERSONAL_DATA
from chronik.processes import ProcessesAdmin
from chronik.runtime.service import Runtime
from travel import commands, domain
from travel.bookings import SIMULATE_HEADER, Simulate
from travel.handlers import TRIPS, Changed, TravelHandlers
from travel.views import TripViews


class NewTrip(BaseModel):
    traveller: str = Field(min_length=1, max_length=200, examples=["Grace"])
    destination: str = Field(min_length=1, max_length=100, examples=["Lyon"])
    depart_on: date
    simulate: Simulate = Field(
        "none",
        description=(
            "Make a booking of the demo's fake suppliers fail (the unhappy paths on demand): "
            "a setting of the fakes, kept beside the trip's first event, never in it"
        ),
    )


class Decision(BaseModel):
    by: str = Field(min_length=1, max_length=200, examples=["the manager"])
    reason: str = Field("", max_length=500)


class TripView(BaseModel):
    trip_id: str
    traveller: str
    destination: str
    depart_on: str
    status: domain.TripStatus
    flight: str | None = None
    hotel: str | None = None
    lead_id: str | None = None
    reason: str | None = None


class BookingView(BaseModel):
    status: str
    finished: bool
    steps: int
    timeouts: dict[str, Any]


def routes(runtime: Runtime, handlers: Callable[[Runtime], TravelHandlers]) -> APIRouter:
    router = APIRouter()

    # Made when asked: the routes are made before the runtime opened its store.
    def views() -> TripViews:
        admin = ProcessesAdmin(runtime.database.projections(), runtime.store)
        return TripViews(runtime.engine.read_models, admin)

    consistent = consistent_with(["trip_board"])

    def command(
        request: Request, response: Response, work: Callable[[], Awaitable[Changed]]
    ) -> Awaitable[CommandResult]:
        return run_command(request, response, work, id_of=lambda s: s.removeprefix(TRIPS))

    @router.post(
        "/trips",
        status_code=201,
        response_model=CommandResult,
        responses={409: {"description": "The departure is in the past"}},
    )
    async def request_trip(body: NewTrip, request: Request, response: Response) -> CommandResult:
        """Start the booking process: flight, hotel, approval (48 hours at most)."""
        c = commands.RequestTrip(body.traveller, body.destination, body.depart_on)
        demo = Metadata(headers={SIMULATE_HEADER: body.simulate})
        return await command(
            request, response, lambda: handlers(runtime).request_trip(c, metadata=demo)
        )

    @router.post("/trips/{trip_id}/approve", response_model=CommandResult)
    async def approve(
        trip_id: str, body: Decision, request: Request, response: Response
    ) -> CommandResult:
        c = commands.ApproveTrip(trip_id, body.by)
        return await command(request, response, lambda: handlers(runtime).approve(c))

    @router.post("/trips/{trip_id}/reject", response_model=CommandResult)
    async def reject(
        trip_id: str, body: Decision, request: Request, response: Response
    ) -> CommandResult:
        c = commands.RejectTrip(trip_id, body.by, body.reason)
        return await command(request, response, lambda: handlers(runtime).reject(c))

    @router.get(
        "/trips",
        response_model=list[TripView],
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def list_trips(
        status: domain.TripStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[TripView]:
        return [TripView.model_validate(d) for d in await views().trips(status, limit)]

    @router.get(
        "/trips/{trip_id}",
        response_model=TripView,
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def get_trip(trip_id: str) -> TripView:
        return TripView.model_validate(await views().trip(trip_id))

    @router.get("/trips/{trip_id}/booking", response_model=BookingView)
    async def booking(trip_id: str) -> BookingView:
        """Where the booking process stands: its state, steps and pending timeout."""
        p = await views().booking(trip_id)
        return BookingView(status=p.status, finished=p.finished, steps=p.steps, timeouts=p.timeouts)

    return router
