"""Sales' published language: the only module other contexts may import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chronik.messaging import PublishedLanguage, public


@public("sales.order_submitted.v1")
@dataclass(frozen=True)
class OrderSubmitted:
    """A lead ordered: an amount in cents of a currency."""

    lead_id: str
    order_id: str
    amount_cents: int
    currency: str
    submitted_at: datetime


@public("sales.visit_needed.v1")
@dataclass(frozen=True)
class VisitNeeded:
    """A follow-up needs a salesperson on site: where and when."""

    lead_id: str
    city: str
    on: datetime


LANGUAGE = PublishedLanguage([OrderSubmitted, VisitNeeded])
