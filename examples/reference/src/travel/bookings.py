"""Fake flight and hotel booking services (external systems the demo can make fail)."""

from __future__ import annotations

import secrets


class BookingFailed(Exception):
    """The supplier said no."""


class Bookings:
    async def book_flight(self, destination: str, simulate: str) -> str:
        if simulate == "no_flight":
            raise BookingFailed(f"no seats to {destination}")
        return f"FL-{secrets.token_hex(4).upper()}"

    async def book_hotel(self, destination: str, simulate: str) -> str:
        if simulate == "no_hotel":
            raise BookingFailed(f"no rooms in {destination}")
        return f"HT-{secrets.token_hex(4).upper()}"
