"""Travel's commands from outside the booking process: what a caller or a consumer asks.

The booking process's own commands (``BookFlight`` ...) are in ``travel.domain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class RequestTrip:
    traveller: str
    destination: str
    depart_on: date


@dataclass(frozen=True)
class ApproveTrip:
    trip_id: str
    by: str


@dataclass(frozen=True)
class RejectTrip:
    trip_id: str
    by: str
    reason: str = ""


@dataclass(frozen=True)
class PlanVisit:
    """A visit sales needs (from sales' published language)."""

    lead_id: str
    city: str
    on: datetime
