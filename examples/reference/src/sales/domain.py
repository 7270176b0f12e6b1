"""Sales: telemarketing leads (LDDD ch. 7). Plain Python: no clock, no ids, no storage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

from chronik.domain import Aggregate, DomainError, EventList, Personal, ValueObject, applies

#: Every event of the context, in the order they were declared: ``@_event`` registers a
#: class here as it names it, so an event is declared once (the service, the codec and
#: the tests read this list).
EVENTS = EventList()
_event = EVENTS.event


T = TypeVar("T")

_PHONE = re.compile(r"\+?[0-9 ()\-]{5,20}")
#: A name holds at least one character that is not white space. The class is spelled out
#: so that every regex dialect reads it alike: Python's, the JSON Schema (ECMAScript) of
#: the HTTP document, and pydantic's (Rust) each mean something else by ``\s``.
NAME_PATTERN = r"[^\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class ContactDetails(ValueObject):
    """Who to call and where; both personal."""

    name: str
    phone: str

    def validate(self) -> None:
        if not _NAME.search(self.name) or len(self.name) > 200:
            self.refuse("name", "must be 1-200 characters")
        if not _PHONE.fullmatch(self.phone):
            self.refuse(
                "phone", "must be 5-20 digits, spaces, '-', '(', ')', after an optional '+'"
            )


#: The largest order amount, in minor units (the published language promises it).
MAX_CENTS = 10**12


@dataclass(frozen=True, slots=True)
class Money(ValueObject):
    """An amount in the minor unit of a currency (cents of EUR, yen of JPY)."""

    cents: int
    currency: str

    def validate(self) -> None:
        if not 0 < self.cents <= MAX_CENTS:
            self.refuse("cents", f"must be positive and at most {MAX_CENTS}")
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            self.refuse("currency", "must be a three-letter ISO code, like EUR")


#: How far ahead a follow-up may be set. Sales' published language promises it to the
#: contexts that act on a visit (``sales.contracts.VISIT_HORIZON``): a date sales lets
#: out is one another context can plan for.
FOLLOW_UP_HORIZON = timedelta(days=730)


# The rules a lead keeps, each a DomainError of its own: callers tell them apart by class,
# never by the text, and HTTP clients by the problem type each declares (chronik's HTTP
# adapter answers a broken rule with it).

#: the prefix of each rule's problem type (RFC 9457)
RULES = "tag:chronik.dev,2026:reference/sales/"


class LeadAlreadyClosed(DomainError):
    """Nothing happens to a closed lead."""

    problem_type = RULES + "lead-closed"

    def __init__(self, lead_id: str) -> None:
        self.lead_id = lead_id
        super().__init__(f"lead {lead_id} is closed")


class LeadForgotten(DomainError):
    """An anonymized lead takes no contact details again: forgotten stays forgotten."""

    problem_type = RULES + "lead-forgotten"

    def __init__(self, lead_id: str) -> None:
        self.lead_id = lead_id
        super().__init__(
            f"lead {lead_id} was anonymized at their request: it takes no contact details"
        )


class FollowUpOutOfRange(DomainError):
    """A follow-up date that is not in the future, lies beyond the horizon, or has no timezone."""

    problem_type = RULES + "follow-up-out-of-range"

    def __init__(self, on: datetime, at: datetime) -> None:
        self.on = on
        self.at = at
        super().__init__(
            f"a follow-up must be in the future and at most {FOLLOW_UP_HORIZON.days} days ahead, "
            f"with a timezone (it is {at:%Y-%m-%d %H:%M})"
        )


class VisitWithoutCity(DomainError):
    """A follow-up on site says where."""

    problem_type = RULES + "visit-without-city"

    def __init__(self) -> None:
        super().__init__("a follow-up visit needs a city")


class OrderAlreadySubmitted(DomainError):
    """A lead orders once."""

    problem_type = RULES + "order-already-submitted"

    def __init__(self, lead_id: str, order_id: str) -> None:
        self.lead_id, self.order_id = lead_id, order_id
        super().__init__(f"lead {lead_id} already has order {order_id}")


class NoOrderToPay(DomainError):
    """A payment confirms an order: there is none yet."""

    problem_type = RULES + "no-order-to-pay"

    def __init__(self, lead_id: str) -> None:
        self.lead_id = lead_id
        super().__init__(f"lead {lead_id} has no order to pay")


class NotThisLeadsOrder(DomainError):
    """A payment confirms the order the lead submitted, not another."""

    problem_type = RULES + "not-this-leads-order"

    def __init__(self, order_id: str, expected: str) -> None:
        self.order_id, self.expected = order_id, expected
        super().__init__(f"order {order_id} is not this lead's order ({expected})")


class OrderAlreadyPaid(DomainError):
    """An order is paid once."""

    problem_type = RULES + "order-already-paid"

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id} is paid already")


class Status(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    FOLLOW_UP = "follow_up"
    ORDERED = "ordered"
    PAID = "paid"
    CLOSED = "closed"


@_event("sales.lead_initialized", subject="lead_id")
@dataclass(frozen=True, slots=True)
class LeadInitialized:
    lead_id: str
    name: Annotated[str, Personal()]
    phone: Annotated[str, Personal()]
    at: datetime


@_event("sales.contact_details_changed", subject="lead_id")
@dataclass(frozen=True, slots=True)
class ContactDetailsChanged:
    lead_id: str
    name: Annotated[str, Personal()]
    phone: Annotated[str, Personal()]
    at: datetime


@_event("sales.contacted")
@dataclass(frozen=True, slots=True)
class Contacted:
    lead_id: str
    note: str
    at: datetime


@_event("sales.follow_up_set")
@dataclass(frozen=True, slots=True)
class FollowUpSet:
    lead_id: str
    on: datetime
    needs_visit: bool
    city: str
    at: datetime


@_event("sales.order_submitted")
@dataclass(frozen=True, slots=True)
class OrderSubmitted:
    lead_id: str
    order_id: str
    amount_cents: int
    currency: str
    at: datetime


@_event("sales.payment_confirmed")
@dataclass(frozen=True, slots=True)
class PaymentConfirmed:
    lead_id: str
    order_id: str
    at: datetime


@_event("sales.lead_closed")
@dataclass(frozen=True, slots=True)
class LeadClosed:
    lead_id: str
    reason: str
    at: datetime


@_event("sales.lead_anonymized", subject="lead_id", forgets=True)
@dataclass(frozen=True, slots=True)
class LeadAnonymized:
    """The lead asked to be forgotten: their personal data is erased everywhere.

    Storing it forgets the lead (their key) in the same transaction.
    """

    lead_id: str
    at: datetime


@_event("sales.visit_booked")
@dataclass(frozen=True, slots=True)
class VisitBooked:
    """Travel booked the trip of a visit this lead needs (told by travel's public event)."""

    lead_id: str
    trip_id: str
    at: datetime


@_event("sales.visit_to_reschedule")
@dataclass(frozen=True, slots=True)
class VisitToReschedule:
    """Travel could not make the visit happen: the lead needs another follow-up."""

    lead_id: str
    trip_id: str
    reason: str
    at: datetime


class Visit(StrEnum):
    """Where the lead's latest visit stands, as travel told sales."""

    BOOKED = "booked"
    TO_RESCHEDULE = "to_reschedule"


class Lead(Aggregate):
    """A sales lead: contacted, followed up, ordering, paying, closed.

    Invariants: nothing happens to a closed lead; a follow-up is in the future and
    within ``FOLLOW_UP_HORIZON``; an order is submitted once; a payment confirms the
    order that was submitted; an anonymized lead gets no contact details again
    (forgotten stays forgotten). What travel tells of a visit is recorded in any state:
    it happened elsewhere, and sales keeps its word on every message.
    """

    name: str
    phone: str
    anonymized: bool
    status: Status
    contacts: int
    follow_ups: int
    order_id: str | None
    order_cents: int
    visit: Visit | None
    visit_trip: str | None

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.phone = ""
        self.anonymized = False
        self.status = Status.NEW
        self.contacts = 0
        self.follow_ups = 0
        self.order_id = None
        self.order_cents = 0
        self.visit = None
        self.visit_trip = None

    @classmethod
    def initialize(cls, lead_id: str, details: ContactDetails, at: datetime) -> Lead:
        lead = cls(lead_id)
        lead.record(LeadInitialized(lead_id, details.name, details.phone, at))
        return lead

    def _open(self) -> None:
        if self.status == Status.CLOSED:
            raise LeadAlreadyClosed(self.id)

    def change_contact_details(self, details: ContactDetails, at: datetime) -> None:
        self._open()
        if self.anonymized:
            raise LeadForgotten(self.id)
        if (details.name, details.phone) != (self.name, self.phone):
            self.record(ContactDetailsChanged(self.id, details.name, details.phone, at))

    def contact(self, note: str, at: datetime) -> None:
        self._open()
        self.record(Contacted(self.id, note, at))

    def set_follow_up(self, on: datetime, needs_visit: bool, city: str, at: datetime) -> None:
        self._open()
        # Compared as instants, which never overflows (converting one near year 1 or 9999
        # to UTC would): a date outside the window is refused before it could leave sales.
        if on.utcoffset() is None or not at < on <= at + FOLLOW_UP_HORIZON:
            raise FollowUpOutOfRange(on, at)
        if needs_visit and not city.strip():
            raise VisitWithoutCity()
        self.record(FollowUpSet(self.id, on, needs_visit, city, at))

    def submit_order(self, order_id: str, amount: Money, at: datetime) -> None:
        self._open()
        if self.order_id is not None:
            raise OrderAlreadySubmitted(self.id, self.order_id)
        self.record(OrderSubmitted(self.id, order_id, amount.cents, amount.currency, at))

    def confirm_payment(self, order_id: str, at: datetime) -> None:
        self._open()
        if self.order_id is None:
            raise NoOrderToPay(self.id)
        if order_id != self.order_id:
            raise NotThisLeadsOrder(order_id, self.order_id)
        if self.status == Status.PAID:
            raise OrderAlreadyPaid(order_id)
        self.record(PaymentConfirmed(self.id, order_id, at))

    def anonymize(self, at: datetime) -> None:
        """Forget who the lead is (allowed even when closed); the history stays."""
        self.record(LeadAnonymized(self.id, at))

    def close(self, reason: str, at: datetime) -> None:
        self._open()
        self.record(LeadClosed(self.id, reason, at))

    def visit_booked(self, trip_id: str, at: datetime) -> None:
        """Record travel's word that the visit's trip is booked (a fact: even if closed)."""
        if (self.visit, self.visit_trip) != (Visit.BOOKED, trip_id):
            self.record(VisitBooked(self.id, trip_id, at))

    def visit_cancelled(self, trip_id: str, reason: str, at: datetime) -> None:
        """Record that the visit will not happen: the lead is to be followed up again."""
        if (self.visit, self.visit_trip) != (Visit.TO_RESCHEDULE, trip_id):
            self.record(VisitToReschedule(self.id, trip_id, reason, at))

    @applies(LeadInitialized, ContactDetailsChanged)
    def _details(self, e: LeadInitialized | ContactDetailsChanged) -> None:
        self.name, self.phone = e.name, e.phone

    @applies(Contacted)
    def _contacted(self, e: Contacted) -> None:
        self.contacts += 1
        if self.status == Status.NEW:
            self.status = Status.CONTACTED

    @applies(FollowUpSet)
    def _follow_up(self, e: FollowUpSet) -> None:
        self.follow_ups += 1
        if self.status in (Status.NEW, Status.CONTACTED):
            self.status = Status.FOLLOW_UP

    @applies(OrderSubmitted)
    def _ordered(self, e: OrderSubmitted) -> None:
        self.order_id, self.order_cents = e.order_id, e.amount_cents
        self.status = Status.ORDERED

    @applies(PaymentConfirmed)
    def _paid(self, e: PaymentConfirmed) -> None:
        self.status = Status.PAID

    @applies(LeadClosed)
    def _closed(self, e: LeadClosed) -> None:
        self.status = Status.CLOSED

    @applies(VisitBooked)
    def _visit_booked(self, e: VisitBooked) -> None:
        self.visit, self.visit_trip = Visit.BOOKED, e.trip_id

    @applies(VisitToReschedule)
    def _visit_to_reschedule(self, e: VisitToReschedule) -> None:
        self.visit, self.visit_trip = Visit.TO_RESCHEDULE, e.trip_id

    @applies(LeadAnonymized)
    def _anonymized(self, e: LeadAnonymized) -> None:
        self.name = self.phone = ""
        self.anonymized = True


@_event("sales.campaign_went_live")
@dataclass(frozen=True, slots=True)
class CampaignWentLive:
    """A campaign went live (told by campaigns' public event): sales may pitch it."""

    campaign_id: str
    name: str
    at: datetime


class Promotions(Aggregate):
    """The campaigns sales staff may mention to leads: those that went live.

    One stream (``PROMOTIONS``) holds them; hearing of a campaign twice changes nothing.
    """

    live: dict[str, str]

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.live = {}

    def went_live(self, campaign_id: str, name: str, at: datetime) -> None:
        if campaign_id not in self.live:
            self.record(CampaignWentLive(campaign_id, name, at))

    @applies(CampaignWentLive)
    def _live(self, e: CampaignWentLive) -> None:
        self.live = {**self.live, e.campaign_id: e.name}
