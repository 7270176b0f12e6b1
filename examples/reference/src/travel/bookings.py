"""Fake flight and hotel booking services (external systems the demo can make fail).

Which booking fails is the fake's configuration, not the trip's: the HTTP API takes it
as ``simulate`` and stores it as a header of the append that requests the trip
(``SIMULATE_HEADER``), never in a domain event; the fake looks it up by the trip
(``simulation_from_headers``). A real supplier has no such knob.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from chronik.eventstore import BaseEventStore

Simulate = Literal["none", "no_flight", "no_hotel"]
SIMULATIONS: tuple[str, ...] = get_args(Simulate)
#: the header of a trip's first append that says which booking the demo makes fail
SIMULATE_HEADER = "demo-simulate"

SimulationOf = Callable[[str], Awaitable[str]]


class BookingFailed(Exception):
    """The supplier said no."""


async def no_simulation(trip_id: str) -> str:
    return "none"


def simulation_from_headers(store: BaseEventStore, prefix: str) -> SimulationOf:
    """The failure the demo asked for a trip: the header of its stream's first event."""

    async def simulation_of(trip_id: str) -> str:
        first = await store.read_stream(prefix + trip_id, limit=1)
        headers = (first[0].metadata.headers or {}) if first else {}
        found = headers.get(SIMULATE_HEADER, "none")
        return found if found in SIMULATIONS else "none"

    return simulation_of


class Bookings:
    """Books flights and hotels; ``client_ref`` is the trip the booking is for."""

    def __init__(self, *, simulation_of: SimulationOf = no_simulation) -> None:
        self.simulation_of = simulation_of

    async def book_flight(self, client_ref: str, destination: str) -> str:
        if await self.simulation_of(client_ref) == "no_flight":
            raise BookingFailed(f"no seats to {destination}")
        return f"FL-{secrets.token_hex(4).upper()}"

    async def book_hotel(self, client_ref: str, destination: str) -> str:
        if await self.simulation_of(client_ref) == "no_hotel":
            raise BookingFailed(f"no rooms in {destination}")
        return f"HT-{secrets.token_hex(4).upper()}"
