"""Travel's published language: the only module other contexts may import.

Travel tells sales what became of a visit sales asked for (``sales.visit_needed.v1``):
its trip confirmed, or no trip after all. Trips nobody asked for stay private.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chronik.messaging import PublishedLanguage, public


@public("travel.visit_trip_confirmed.v1")
@dataclass(frozen=True)
class VisitTripConfirmed:
    """The trip of a lead's visit is booked and approved: the visit will happen."""

    lead_id: str
    trip_id: str
    confirmed_at: datetime


@public("travel.visit_trip_cancelled.v1")
@dataclass(frozen=True)
class VisitTripCancelled:
    """No trip for a lead's visit: declined, failed to book, rejected or never approved."""

    lead_id: str
    trip_id: str
    reason: str
    cancelled_at: datetime


LANGUAGE = PublishedLanguage([VisitTripConfirmed, VisitTripCancelled])
