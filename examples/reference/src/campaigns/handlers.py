"""Campaigns' application layer: commands, the saga's command handlers, the sales consumer."""

from __future__ import annotations

from datetime import UTC, datetime

from campaigns import acl
from campaigns.domain import (
    Budget,
    Campaign,
    CancelCampaign,
    PublishWithPartner,
    RejectCampaign,
    ReleaseBudget,
    ReserveBudget,
)
from campaigns.partner import FakePartner, PartnerUnavailable, PlacementReceipt
from chronik.eventstore import BaseEventStore, Repository
from chronik.messaging import MessageContext
from sales import contracts as sales

BUDGET = "main"


def _now() -> datetime:
    return datetime.now(UTC)


def budgets(store: BaseEventStore) -> Repository[Budget]:
    return Repository(store, Budget, prefix="budget-")


def campaigns(store: BaseEventStore) -> Repository[Campaign]:
    return Repository(store, Campaign, prefix="campaign-", snapshot_every=50)


class CampaignHandlers:
    """Handlers for the saga's commands and for sales' public events."""

    def __init__(self, store: BaseEventStore, partner: FakePartner) -> None:
        self.store = store
        self.partner = partner

    async def reserve_budget(self, c: ReserveBudget) -> None:
        await budgets(self.store).handle(
            BUDGET,
            lambda b: b.reserve(c.campaign_id, c.amount_cents, _now()),
            retries=20,
            create=True,
        )

    async def release_budget(self, c: ReleaseBudget) -> None:
        await budgets(self.store).handle(
            BUDGET, lambda b: b.release(c.campaign_id, _now()), retries=20
        )

    async def publish_with_partner(self, c: PublishWithPartner) -> None:
        repo = campaigns(self.store)
        campaign = await repo.load(c.campaign_id)
        try:
            receipt = await self.partner.place(acl.to_placement(campaign), self._answered)
        except PartnerUnavailable as exc:
            receipt = PlacementReceipt("DECLINED", None, f"UNAVAILABLE: {exc}")
        await self._apply(c.campaign_id, receipt)

    async def _answered(self, campaign_id: str, receipt: PlacementReceipt) -> None:
        await self._apply(campaign_id, receipt)

    async def _apply(self, campaign_id: str, receipt: PlacementReceipt) -> None:
        kind, detail = acl.outcome(receipt)
        repo = campaigns(self.store)
        if kind == "confirmed":
            await repo.handle(campaign_id, lambda c: c.confirm(detail, _now()))
        elif kind == "rejected":
            await repo.handle(campaign_id, lambda c: c.reject(detail, _now()))

    async def reject_campaign(self, c: RejectCampaign) -> None:
        await campaigns(self.store).handle(c.campaign_id, lambda x: x.reject(c.reason, _now()))

    async def cancel_campaign(self, c: CancelCampaign) -> None:
        await campaigns(self.store).handle(c.campaign_id, lambda x: x.cancel(c.reason, _now()))

    async def on_order_submitted(self, order: sales.OrderSubmitted, ctx: MessageContext) -> None:
        """Inbound translation: a sales order grows the marketing budget (one append).

        An order the ACL does not credit (another currency) is recorded on the budget
        with the reason: handled once, never retried into the dead letters.
        """
        credit = acl.budget_from_order(order)
        if isinstance(credit, acl.Credit):
            cents = credit.cents
            await budgets(self.store).handle(
                BUDGET, lambda b: b.increase(cents, order.order_id, _now()), retries=20, create=True
            )
            return
        reason = credit.reason
        await budgets(self.store).handle(
            BUDGET,
            lambda b: b.not_credited(
                order.order_id, order.amount_cents, order.currency, reason, _now()
            ),
            retries=20,
            create=True,
        )

    async def top_up(self, amount_cents: int) -> None:
        await budgets(self.store).handle(
            BUDGET, lambda b: b.increase(amount_cents, "top-up", _now()), retries=20, create=True
        )
