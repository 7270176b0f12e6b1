"""Campaigns' application layer: one handler per use case, the saga's commands, the consumer.

Handlers take typed commands (``campaigns.commands``, and the saga's in
``campaigns.domain``), change one aggregate each and save it. The time comes from the
injected clock, new ids from the injected factory: unit tests run them on the memory
store (tests/reference/test_campaigns_handlers.py). HTTP, the saga and the consumer of
sales' orders call the same handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

from campaigns import acl, commands, contracts
from campaigns.domain import (
    Budget,
    Campaign,
    CancelCampaign,
    PublicationConfirmed,
    PublishWithPartner,
    RejectCampaign,
    ReleaseBudget,
    ReserveBudget,
)
from campaigns.partner import FakePartner, PartnerUnavailable, PlacementReceipt
from chronik.eventstore import AppendResult, BaseEventStore, Metadata, RecordedEvent, Repository
from chronik.messaging import MessageContext
from chronik.processes import Clock, SystemClock
from sales import contracts as sales

#: the streams of campaigns (``campaign-X``) and of the budget: the one place they are spelt
CAMPAIGNS = "campaign-"
BUDGETS = "budget-"
#: the one budget's id (its stream is ``budget-main``)
BUDGET = "main"
#: a budget append may meet many concurrent writers (each order, each saga)
BUDGET_RETRIES = 20
#: Every order appends to the one budget stream, so it grows without end: a snapshot
#: every this many events bounds what a load reads (README: "The hot budget").
BUDGET_SNAPSHOT_EVERY = 20

NewId = Callable[[], str]


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def budgets(store: BaseEventStore) -> Repository[Budget]:
    return Repository(store, Budget, prefix=BUDGETS, snapshot_every=BUDGET_SNAPSHOT_EVERY)


def campaigns(store: BaseEventStore) -> Repository[Campaign]:
    return Repository(store, Campaign, prefix=CAMPAIGNS, snapshot_every=50)


class Changed(NamedTuple):
    """Which aggregate a command changed and where its append landed."""

    id: str
    result: AppendResult


def publish(recorded: RecordedEvent) -> object | None:
    """The translation out: a campaign the partner published is live."""
    event = recorded.event
    if isinstance(event, PublicationConfirmed):
        return contracts.CampaignLive(event.campaign_id, event.name, event.at)
    return None


class CampaignHandlers:
    """The use cases of campaigns, the publishing saga's commands, and sales' orders."""

    def __init__(
        self,
        store: BaseEventStore,
        partner: FakePartner,
        *,
        clock: Clock | None = None,
        new_id: NewId = new_id,
    ) -> None:
        self.campaigns = campaigns(store)
        self.budgets = budgets(store)
        self.partner = partner
        self.clock = clock or SystemClock()
        self.new_id = new_id

    # -- use cases ---------------------------------------------------------------------

    async def create_campaign(
        self, c: commands.CreateCampaign, *, metadata: Metadata | None = None
    ) -> Changed:
        """A draft campaign (``metadata``: headers for the fakes, such as the demo's)."""
        campaign_id = self.new_id()
        campaign = Campaign.create(campaign_id, c.name, c.cost_cents, self.clock.now())
        result = await self.campaigns.save(campaign, metadata=metadata)
        assert result is not None  # a new campaign always has an event
        return Changed(campaign_id, result)

    async def activate(self, c: commands.ActivateCampaign) -> Changed:
        """Start the publishing saga: reserve budget, ask the partner, compensate on no."""
        _, result = await self.campaigns.handle(
            c.campaign_id, lambda x: x.activate(self.clock.now())
        )
        assert result is not None  # activating appends or refuses
        return Changed(c.campaign_id, result)

    async def top_up(self, c: commands.TopUpBudget) -> Changed:
        _, result = await self.budgets.handle(
            BUDGET,
            lambda b: b.increase(c.amount_cents, "top-up", self.clock.now()),
            retries=BUDGET_RETRIES,
            create=True,
        )
        assert result is not None  # an increase always appends
        return Changed(BUDGET, result)

    async def credit_order(self, c: commands.CreditOrder) -> None:
        """A sales order grows the budget, or is recorded with why it does not (one append)."""
        now, cents = self.clock.now(), c.credit_cents

        def credit(budget: Budget) -> None:
            if cents is None:
                budget.not_credited(c.order_id, c.amount, c.currency, c.reason, now)
            else:
                budget.increase(cents, c.order_id, now)

        await self.budgets.handle(BUDGET, credit, retries=BUDGET_RETRIES, create=True)

    # -- the publishing saga's commands --------------------------------------------------

    async def reserve_budget(self, c: ReserveBudget) -> None:
        await self.budgets.handle(
            BUDGET,
            lambda b: b.reserve(c.campaign_id, c.amount_cents, self.clock.now()),
            retries=BUDGET_RETRIES,
            create=True,
        )

    async def release_budget(self, c: ReleaseBudget) -> None:
        await self.budgets.handle(
            BUDGET, lambda b: b.release(c.campaign_id, self.clock.now()), retries=BUDGET_RETRIES
        )

    async def publish_with_partner(self, c: PublishWithPartner) -> None:
        campaign = await self.campaigns.load(c.campaign_id)
        try:
            receipt = await self.partner.place(acl.to_placement(campaign), self._answered)
        except PartnerUnavailable as exc:
            receipt = PlacementReceipt("DECLINED", None, f"UNAVAILABLE: {exc}")
        await self._answered(c.campaign_id, receipt)

    async def _answered(self, campaign_id: str, receipt: PlacementReceipt) -> None:
        kind, detail = acl.outcome(receipt)
        if kind == "confirmed":
            await self.campaigns.handle(campaign_id, lambda x: x.confirm(detail, self.clock.now()))
        elif kind == "rejected":
            await self.campaigns.handle(campaign_id, lambda x: x.reject(detail, self.clock.now()))

    async def reject_campaign(self, c: RejectCampaign) -> None:
        await self.campaigns.handle(c.campaign_id, lambda x: x.reject(c.reason, self.clock.now()))

    async def cancel_campaign(self, c: CancelCampaign) -> None:
        await self.campaigns.handle(c.campaign_id, lambda x: x.cancel(c.reason, self.clock.now()))

    # -- sales' published language -------------------------------------------------------

    async def on_order_submitted(self, order: sales.OrderSubmitted, ctx: MessageContext) -> None:
        """Inbound translation: the ACL reads the order, the handler credits it.

        An order the ACL does not credit (another currency) is recorded on the budget
        with the reason: handled once, never retried into the dead letters.
        """
        credit = acl.budget_from_order(order)
        await self.credit_order(
            commands.CreditOrder(
                order.order_id,
                order.amount_cents,
                order.currency,
                credit.cents if isinstance(credit, acl.Credit) else None,
                credit.reason if isinstance(credit, acl.NotCredited) else "",
            )
        )
