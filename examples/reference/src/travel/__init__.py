"""Travel: business trips, booked by a process manager with a durable approval timeout.

Other contexts may import ``travel.contracts`` only.
"""

from __future__ import annotations

from typing import Any


def spec() -> Any:
    """The context's parts, for a chronik Runtime (built on demand, not at import).

    The composition root: one set of handlers per runtime, shared by the routes, the
    booking process and the consumer, with the fake suppliers configured from the
    demo's headers.
    """
    from chronik.processes import Processes
    from chronik.runtime.service import ConsumerSpec, Runtime, ServiceSpec
    from sales import contracts as sales
    from travel import domain, http, projections
    from travel.bookings import Bookings, simulation_from_headers
    from travel.contracts import LANGUAGE
    from travel.handlers import TRIPS, TravelHandlers, publish
    from travel.processes import TripBooking
    from travel.upcasting import UPCASTERS

    made: dict[int, TravelHandlers] = {}

    def travel_handlers(runtime: Runtime) -> TravelHandlers:
        if id(runtime) not in made:
            bookings = Bookings(simulation_of=simulation_from_headers(runtime.store, TRIPS))
            made[id(runtime)] = TravelHandlers(runtime.store, bookings, clock=runtime.clock)
        return made[id(runtime)]

    def workers(runtime: Runtime) -> list[Processes]:
        h = travel_handlers(runtime)
        return [
            Processes(
                runtime.store,
                [TripBooking()],
                {
                    domain.BookFlight: h.book_flight,
                    domain.BookHotel: h.book_hotel,
                    domain.RequestApproval: h.request_approval,
                    domain.CancelFlight: h.cancel_flight,
                    domain.CancelHotel: h.cancel_hotel,
                    domain.ConfirmTrip: h.confirm_trip,
                    domain.CancelTrip: h.cancel_trip,
                },
                backend=runtime.database.projections(),
                index=runtime.process_index,
                name="travel_processes",
                clock=runtime.clock,
            )
        ]

    return ServiceSpec(
        name="travel",
        event_types=domain.EVENTS,
        upcasters=UPCASTERS,
        projections=[projections.TripBoard()],
        language=LANGUAGE,
        translate=publish,
        consumers=[
            ConsumerSpec(
                "travel",
                sales.LANGUAGE,
                lambda rt: {sales.VisitNeeded: travel_handlers(rt).on_visit_needed},
            )
        ],
        workers=workers,
        routes=lambda runtime: http.routes(runtime, travel_handlers),
        aggregates={TRIPS: domain.Trip},
    )
