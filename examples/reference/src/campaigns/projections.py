"""Campaigns' read model: the campaign board and the budget."""

from __future__ import annotations

from campaigns.domain import (
    ActivationRequested,
    BudgetIncreased,
    BudgetReleased,
    BudgetReserved,
    CampaignCancelled,
    CampaignCreated,
    PublicationConfirmed,
    PublicationRejected,
)
from chronik.projections import Projection, ReadModelTx, handles


class CampaignBoard(Projection):
    name = "campaign_board"
    tables = ("campaigns", "budget")

    @handles(CampaignCreated)
    async def _created(self, e: CampaignCreated, tx: ReadModelTx) -> None:
        tx.put(
            "campaigns",
            e.campaign_id,
            {
                "campaign_id": e.campaign_id,
                "name": e.name,
                "cost_cents": e.cost_cents,
                "status": "draft",
                "partner_behaviour": e.partner_behaviour,
                "partner_reference": None,
                "reason": None,
            },
        )

    @handles(ActivationRequested)
    async def _activating(self, e: ActivationRequested, tx: ReadModelTx) -> None:
        tx.patch("campaigns", e.campaign_id, {"status": "activating"})

    @handles(PublicationConfirmed)
    async def _published(self, e: PublicationConfirmed, tx: ReadModelTx) -> None:
        tx.patch(
            "campaigns",
            e.campaign_id,
            {"status": "published", "partner_reference": e.partner_reference},
        )

    @handles(PublicationRejected)
    async def _rejected(self, e: PublicationRejected, tx: ReadModelTx) -> None:
        tx.patch("campaigns", e.campaign_id, {"status": "rejected", "reason": e.reason})

    @handles(CampaignCancelled)
    async def _cancelled(self, e: CampaignCancelled, tx: ReadModelTx) -> None:
        tx.patch("campaigns", e.campaign_id, {"status": "cancelled", "reason": e.reason})

    @handles(BudgetIncreased)
    async def _increased(self, e: BudgetIncreased, tx: ReadModelTx) -> None:
        tx.increment("budget", "main", "total_cents", e.amount_cents)
        tx.increment("budget", "main", "available_cents", e.amount_cents)
        tx.increment("budget", "main", "reserved_cents", 0)

    @handles(BudgetReserved)
    async def _reserved(self, e: BudgetReserved, tx: ReadModelTx) -> None:
        tx.increment("budget", "main", "reserved_cents", e.amount_cents)
        tx.increment("budget", "main", "available_cents", -e.amount_cents)

    @handles(BudgetReleased)
    async def _released(self, e: BudgetReleased, tx: ReadModelTx) -> None:
        tx.increment("budget", "main", "reserved_cents", -e.amount_cents)
        tx.increment("budget", "main", "available_cents", e.amount_cents)
