"""Campaigns: advertising campaigns paid from a budget that sales' orders feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from chronik.domain import Aggregate, DomainError, EventList, applies, command

T = TypeVar("T")

#: Every event of the context, in the order they were declared: ``@_event`` registers a
#: class here as it names it, so an event is declared once (the service, the codec and
#: the tests read this list).
EVENTS = EventList()
_event = EVENTS.event


class CampaignStatus(StrEnum):
    """Where a campaign stands: drafted, activating (the saga runs), then one of the ends."""

    DRAFT = "draft"
    ACTIVATING = "activating"
    PUBLISHED = "published"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


#: the prefix of each broken rule's problem type (RFC 9457): clients tell the rules apart
#: by it, not by the text; chronik's HTTP adapter answers a rule with the type it declares
RULES = "tag:chronik.dev,2026:reference/campaigns/"


class CostNotPositive(DomainError):
    """A campaign costs something."""

    problem_type = RULES + "cost-not-positive"

    def __init__(self, cost_cents: int) -> None:
        self.cost_cents = cost_cents
        super().__init__("a campaign costs a positive amount")


class IncreaseNotPositive(DomainError):
    """The budget grows by something."""

    problem_type = RULES + "increase-not-positive"

    def __init__(self, amount_cents: int) -> None:
        self.amount_cents = amount_cents
        super().__init__("a budget grows by a positive amount")


class CampaignNotDraft(DomainError):
    """Only a draft can be activated: a campaign is published once."""

    problem_type = RULES + "campaign-not-draft"

    def __init__(self, campaign_id: str, status: CampaignStatus) -> None:
        self.campaign_id, self.status = campaign_id, status
        super().__init__(f"campaign {campaign_id} is {status}: only a draft can be activated")


@_event("campaigns.budget_increased")
@dataclass(frozen=True, slots=True)
class BudgetIncreased:
    amount_cents: int
    source: str  # an order id, or "top-up"
    at: datetime


@_event("campaigns.order_not_credited")
@dataclass(frozen=True, slots=True)
class OrderNotCredited:
    """A sales order that adds nothing to the budget (see ``campaigns.acl``), and why."""

    order_id: str
    amount: int  # in the minor unit of its currency
    currency: str
    reason: str
    at: datetime


@_event("campaigns.budget_reserved")
@dataclass(frozen=True, slots=True)
class BudgetReserved:
    campaign_id: str
    amount_cents: int
    at: datetime


@_event("campaigns.budget_refused")
@dataclass(frozen=True, slots=True)
class BudgetRefused:
    campaign_id: str
    amount_cents: int
    available_cents: int
    at: datetime


@_event("campaigns.budget_released")
@dataclass(frozen=True, slots=True)
class BudgetReleased:
    campaign_id: str
    amount_cents: int
    at: datetime


@_event("campaigns.campaign_created", version=2)
@dataclass(frozen=True, slots=True)
class CampaignCreated:
    """Version 2: version 1 also held the demo's partner behaviour, now a header of the
    append (``campaigns.partner``); its upcaster drops the field."""

    campaign_id: str
    name: str
    cost_cents: int
    at: datetime


@_event("campaigns.activation_requested")
@dataclass(frozen=True, slots=True)
class ActivationRequested:
    campaign_id: str
    cost_cents: int
    at: datetime


@_event("campaigns.publication_confirmed")
@dataclass(frozen=True, slots=True)
class PublicationConfirmed:
    """The partner published the campaign: it is live (and campaigns says so publicly).

    ``name`` came later: a stored event without it reads as ``""``.
    """

    campaign_id: str
    partner_reference: str
    at: datetime
    name: str = ""


@_event("campaigns.publication_rejected")
@dataclass(frozen=True, slots=True)
class PublicationRejected:
    campaign_id: str
    reason: str
    at: datetime


@_event("campaigns.campaign_cancelled")
@dataclass(frozen=True, slots=True)
class CampaignCancelled:
    campaign_id: str
    reason: str
    at: datetime


# Commands the publishing saga sends.


@command("campaigns.reserve_budget")
@dataclass(frozen=True)
class ReserveBudget:
    campaign_id: str
    amount_cents: int


@command("campaigns.release_budget")
@dataclass(frozen=True)
class ReleaseBudget:
    campaign_id: str
    amount_cents: int


@command("campaigns.publish_with_partner")
@dataclass(frozen=True)
class PublishWithPartner:
    campaign_id: str


@command("campaigns.reject_campaign")
@dataclass(frozen=True)
class RejectCampaign:
    campaign_id: str
    reason: str


@command("campaigns.cancel_campaign")
@dataclass(frozen=True)
class CancelCampaign:
    campaign_id: str
    reason: str


class Budget(Aggregate):
    """The marketing budget: available money, and what each campaign holds of it."""

    total_cents: int
    held: dict[str, int]

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total_cents = 0
        self.held = {}

    @property
    def available_cents(self) -> int:
        return self.total_cents - sum(self.held.values())

    def increase(self, amount_cents: int, source: str, at: datetime) -> None:
        if amount_cents <= 0:
            raise IncreaseNotPositive(amount_cents)
        self.record(BudgetIncreased(amount_cents, source, at))

    def not_credited(
        self, order_id: str, amount: int, currency: str, reason: str, at: datetime
    ) -> None:
        """Record an order that adds nothing: the budget keeps its word on every order."""
        self.record(OrderNotCredited(order_id, amount, currency, reason, at))

    def reserve(self, campaign_id: str, amount_cents: int, at: datetime) -> None:
        """Hold money for a campaign, or record that there was not enough."""
        if campaign_id in self.held:
            return  # already held: reserving twice changes nothing
        if amount_cents > self.available_cents:
            self.record(BudgetRefused(campaign_id, amount_cents, self.available_cents, at))
        else:
            self.record(BudgetReserved(campaign_id, amount_cents, at))

    def release(self, campaign_id: str, at: datetime) -> None:
        if campaign_id in self.held:
            self.record(BudgetReleased(campaign_id, self.held[campaign_id], at))

    @applies(BudgetIncreased)
    def _increased(self, e: BudgetIncreased) -> None:
        self.total_cents += e.amount_cents

    @applies(OrderNotCredited)
    def _not_credited(self, e: OrderNotCredited) -> None:
        pass

    @applies(BudgetReserved)
    def _reserved(self, e: BudgetReserved) -> None:
        self.held = {**self.held, e.campaign_id: e.amount_cents}

    @applies(BudgetRefused)
    def _refused(self, e: BudgetRefused) -> None:
        pass

    @applies(BudgetReleased)
    def _released(self, e: BudgetReleased) -> None:
        self.held = {k: v for k, v in self.held.items() if k != e.campaign_id}


class Campaign(Aggregate):
    """A campaign: drafted, activated once, then published, rejected or cancelled."""

    name: str
    cost_cents: int
    status: CampaignStatus
    partner_reference: str | None
    reason: str | None

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.cost_cents = 0
        self.status = CampaignStatus.DRAFT
        self.partner_reference = None
        self.reason = None

    @classmethod
    def create(cls, campaign_id: str, name: str, cost_cents: int, at: datetime) -> Campaign:
        if cost_cents <= 0:
            raise CostNotPositive(cost_cents)
        campaign = cls(campaign_id)
        campaign.record(CampaignCreated(campaign_id, name, cost_cents, at))
        return campaign

    def activate(self, at: datetime) -> None:
        if self.status != CampaignStatus.DRAFT:
            raise CampaignNotDraft(self.id, self.status)
        self.record(ActivationRequested(self.id, self.cost_cents, at))

    def confirm(self, partner_reference: str, at: datetime) -> None:
        if self.status == CampaignStatus.ACTIVATING:
            self.record(PublicationConfirmed(self.id, partner_reference, at, self.name))

    def reject(self, reason: str, at: datetime) -> None:
        if self.status == CampaignStatus.ACTIVATING:
            self.record(PublicationRejected(self.id, reason, at))

    def cancel(self, reason: str, at: datetime) -> None:
        if self.status in (CampaignStatus.DRAFT, CampaignStatus.ACTIVATING):
            self.record(CampaignCancelled(self.id, reason, at))

    @applies(CampaignCreated)
    def _created(self, e: CampaignCreated) -> None:
        self.name, self.cost_cents = e.name, e.cost_cents

    @applies(ActivationRequested)
    def _activating(self, e: ActivationRequested) -> None:
        self.status = CampaignStatus.ACTIVATING

    @applies(PublicationConfirmed)
    def _published(self, e: PublicationConfirmed) -> None:
        self.status, self.partner_reference = CampaignStatus.PUBLISHED, e.partner_reference

    @applies(PublicationRejected)
    def _rejected(self, e: PublicationRejected) -> None:
        self.status, self.reason = CampaignStatus.REJECTED, e.reason

    @applies(CampaignCancelled)
    def _cancelled(self, e: CampaignCancelled) -> None:
        self.status, self.reason = CampaignStatus.CANCELLED, e.reason
