"""Fake flight and hotel booking services (external systems the demo can make fail)."""

from __future__ import annotations

import itertools


class BookingFailed(Exception):
    """The supplier said no."""


class Bookings:
    def __init__(self) -> None:
        self._numbers = itertools.count(100)

    async def book_flight(self, destination: str, simulate: str) -> str:
        if simulate == "no_flight":
            raise BookingFailed(f"no seats to {destination}")
        return f"FL-{next(self._numbers)}"

    async def book_hotel(self, destination: str, simulate: str) -> str:
        if simulate == "no_hotel":
            raise BookingFailed(f"no rooms in {destination}")
        return f"HT-{next(self._numbers)}"
