"""Sales' published language: the only module other contexts may import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from chronik.messaging import PublishedLanguage, constraint, public

#: The largest order amount sales takes, in minor units (``sales.domain.Money``).
MAX_AMOUNT = 10**12

#: A visit is due at most this long after the follow-up that asked for it: sales refuses
#: any other date (``sales.domain.FOLLOW_UP_HORIZON``), so a consumer can plan for it.
VISIT_HORIZON = timedelta(days=730)


@public("sales.order_submitted.v1")
@dataclass(frozen=True)
class OrderSubmitted:
    """A lead ordered: an amount in the minor unit of a currency."""

    lead_id: str
    order_id: str
    amount_cents: Annotated[
        int,
        constraint(
            gt=0,
            le=MAX_AMOUNT,
            description=(
                "The amount in the currency's minor unit as ISO 4217 counts it: cents of "
                "EUR, yen of JPY (no minor unit), fils of KWD (three digits)."
            ),
        ),
    ]
    currency: Annotated[
        str,
        constraint(
            pattern="^[A-Z]{3}$",
            description="A three-letter code, as in ISO 4217 (sales does not check the list).",
        ),
    ]
    submitted_at: datetime


@public("sales.visit_needed.v1")
@dataclass(frozen=True)
class VisitNeeded:
    """A follow-up needs a salesperson on site: where and when."""

    lead_id: str
    city: str
    on: Annotated[
        datetime,
        constraint(
            tz=True,
            description=(
                "When the visit is due: a date-time with a timezone, after the moment the "
                "follow-up was set (about the envelope's time) and at most "
                f"{VISIT_HORIZON.days} days after it."
            ),
        ),
    ]


LANGUAGE = PublishedLanguage([OrderSubmitted, VisitNeeded])
