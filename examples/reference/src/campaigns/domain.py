"""Campaigns: advertising campaigns paid from a budget that sales' orders feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chronik.domain import Aggregate, DomainError, applies, command, event

BEHAVIOURS = ("confirm", "reject", "delay", "fail", "silent")


@event("campaigns.budget_increased")
@dataclass(frozen=True, slots=True)
class BudgetIncreased:
    amount_cents: int
    source: str  # an order id, or "top-up"
    at: datetime


@event("campaigns.order_not_credited")
@dataclass(frozen=True, slots=True)
class OrderNotCredited:
    """A sales order that adds nothing to the budget (see ``campaigns.acl``), and why."""

    order_id: str
    amount: int  # in the minor unit of its currency
    currency: str
    reason: str
    at: datetime


@event("campaigns.budget_reserved")
@dataclass(frozen=True, slots=True)
class BudgetReserved:
    campaign_id: str
    amount_cents: int
    at: datetime


@event("campaigns.budget_refused")
@dataclass(frozen=True, slots=True)
class BudgetRefused:
    campaign_id: str
    amount_cents: int
    available_cents: int
    at: datetime


@event("campaigns.budget_released")
@dataclass(frozen=True, slots=True)
class BudgetReleased:
    campaign_id: str
    amount_cents: int
    at: datetime


@event("campaigns.campaign_created")
@dataclass(frozen=True, slots=True)
class CampaignCreated:
    campaign_id: str
    name: str
    cost_cents: int
    partner_behaviour: str
    at: datetime


@event("campaigns.activation_requested")
@dataclass(frozen=True, slots=True)
class ActivationRequested:
    campaign_id: str
    cost_cents: int
    at: datetime


@event("campaigns.publication_confirmed")
@dataclass(frozen=True, slots=True)
class PublicationConfirmed:
    campaign_id: str
    partner_reference: str
    at: datetime


@event("campaigns.publication_rejected")
@dataclass(frozen=True, slots=True)
class PublicationRejected:
    campaign_id: str
    reason: str
    at: datetime


@event("campaigns.campaign_cancelled")
@dataclass(frozen=True, slots=True)
class CampaignCancelled:
    campaign_id: str
    reason: str
    at: datetime


EVENTS = [
    BudgetIncreased,
    OrderNotCredited,
    BudgetReserved,
    BudgetRefused,
    BudgetReleased,
    CampaignCreated,
    ActivationRequested,
    PublicationConfirmed,
    PublicationRejected,
    CampaignCancelled,
]


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
            raise DomainError("a budget grows by a positive amount")
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
    partner_behaviour: str
    status: str
    partner_reference: str | None
    reason: str | None

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.cost_cents = 0
        self.partner_behaviour = "confirm"
        self.status = "draft"
        self.partner_reference = None
        self.reason = None

    @classmethod
    def create(
        cls, campaign_id: str, name: str, cost_cents: int, partner_behaviour: str, at: datetime
    ) -> Campaign:
        if cost_cents <= 0:
            raise DomainError("a campaign costs a positive amount")
        if partner_behaviour not in BEHAVIOURS:
            raise DomainError(f"partner behaviour must be one of {', '.join(BEHAVIOURS)}")
        campaign = cls(campaign_id)
        campaign.record(CampaignCreated(campaign_id, name, cost_cents, partner_behaviour, at))
        return campaign

    def activate(self, at: datetime) -> None:
        if self.status != "draft":
            raise DomainError(f"campaign {self.id} is {self.status}: only a draft can be activated")
        self.record(ActivationRequested(self.id, self.cost_cents, at))

    def confirm(self, partner_reference: str, at: datetime) -> None:
        if self.status == "activating":
            self.record(PublicationConfirmed(self.id, partner_reference, at))

    def reject(self, reason: str, at: datetime) -> None:
        if self.status == "activating":
            self.record(PublicationRejected(self.id, reason, at))

    def cancel(self, reason: str, at: datetime) -> None:
        if self.status in ("draft", "activating"):
            self.record(CampaignCancelled(self.id, reason, at))

    @applies(CampaignCreated)
    def _created(self, e: CampaignCreated) -> None:
        self.name, self.cost_cents = e.name, e.cost_cents
        self.partner_behaviour = e.partner_behaviour

    @applies(ActivationRequested)
    def _activating(self, e: ActivationRequested) -> None:
        self.status = "activating"

    @applies(PublicationConfirmed)
    def _published(self, e: PublicationConfirmed) -> None:
        self.status, self.partner_reference = "published", e.partner_reference

    @applies(PublicationRejected)
    def _rejected(self, e: PublicationRejected) -> None:
        self.status, self.reason = "rejected", e.reason

    @applies(CampaignCancelled)
    def _cancelled(self, e: CampaignCancelled) -> None:
        self.status, self.reason = "cancelled", e.reason
