"""Sales' commands: what a caller asks of a lead, in the caller's words (typed, validated
by the handlers through the domain's value objects)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CreateLead:
    name: str
    phone: str


@dataclass(frozen=True)
class ChangeContactDetails:
    lead_id: str
    name: str
    phone: str


@dataclass(frozen=True)
class ContactLead:
    lead_id: str
    note: str = ""


@dataclass(frozen=True)
class SetFollowUp:
    lead_id: str
    on: datetime
    needs_visit: bool = False
    city: str = ""


@dataclass(frozen=True)
class SubmitOrder:
    lead_id: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class ConfirmPayment:
    lead_id: str
    order_id: str


@dataclass(frozen=True)
class CloseLead:
    lead_id: str
    reason: str = ""


@dataclass(frozen=True)
class AnonymizeLead:
    lead_id: str


@dataclass(frozen=True)
class RecordVisitBooked:
    """Travel booked the trip a visit needed (from travel's published language)."""

    lead_id: str
    trip_id: str


@dataclass(frozen=True)
class RecordVisitCancelled:
    """Travel could not make a visit happen: the lead needs another follow-up."""

    lead_id: str
    trip_id: str
    reason: str


@dataclass(frozen=True)
class NoteLiveCampaign:
    """A campaign went live (from campaigns' published language)."""

    campaign_id: str
    name: str
