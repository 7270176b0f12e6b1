"""Campaigns' read model: the campaign board and the budget."""

from __future__ import annotations

from campaigns.domain import (
    ActivationRequested,
    BudgetIncreased,
    BudgetReleased,
    BudgetReserved,
    CampaignCancelled,
    CampaignCreated,
    CampaignStatus,
    PublicationConfirmed,
    PublicationRejected,
)
from campaigns.partner import BEHAVIOUR_HEADER
from chronik.projections import Projection, ReadModelTx, handles


class CampaignBoard(Projection):
    name = "campaign_board"
    tables = ("campaigns", "budget")

    @handles(CampaignCreated)
    async def _created(self, e: CampaignCreated, tx: ReadModelTx) -> None:
        # The demo's choice for the fake partner is a header of the append, not an event's.
        headers = (tx.current.metadata.headers if tx.current is not None else None) or {}
        tx.put(
            "campaigns",
            e.campaign_id,
            {
                "campaign_id": e.campaign_id,
                "name": e.name,
                "cost_cents": e.cost_cents,
                "status": CampaignStatus.DRAFT.value,
                "partner_behaviour": headers.get(BEHAVIOUR_HEADER, "confirm"),
                "partner_reference": None,
                "reason": None,
            },
        )

    @handles(ActivationRequested)
    async def _activating(self, e: ActivationRequested, tx: ReadModelTx) -> None:
        tx.patch("campaigns", e.campaign_id, {"status": CampaignStatus.ACTIVATING.value})

    @handles(PublicationConfirmed)
    async def _published(self, e: PublicationConfirmed, tx: ReadModelTx) -> None:
        tx.patch(
            "campaigns",
            e.campaign_id,
            {"status": CampaignStatus.PUBLISHED.value, "partner_reference": e.partner_reference},
        )

    @handles(PublicationRejected)
    async def _rejected(self, e: PublicationRejected, tx: ReadModelTx) -> None:
        tx.patch(
            "campaigns",
            e.campaign_id,
            {"status": CampaignStatus.REJECTED.value, "reason": e.reason},
        )

    @handles(CampaignCancelled)
    async def _cancelled(self, e: CampaignCancelled, tx: ReadModelTx) -> None:
        tx.patch(
            "campaigns",
            e.campaign_id,
            {"status": CampaignStatus.CANCELLED.value, "reason": e.reason},
        )

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
