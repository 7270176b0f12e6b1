"""Sales' read models: find leads by name or phone; the sales funnel; live campaigns."""

from __future__ import annotations

from typing import ClassVar

from chronik.projections import Projection, ReadModelTx, handles
from sales.domain import (
    CampaignWentLive,
    ContactDetailsChanged,
    Contacted,
    FollowUpSet,
    LeadAnonymized,
    LeadClosed,
    LeadInitialized,
    OrderSubmitted,
    PaymentConfirmed,
    Status,
    Visit,
    VisitBooked,
    VisitToReschedule,
)

_STATUS_OF = {
    Contacted: Status.CONTACTED,
    FollowUpSet: Status.FOLLOW_UP,
    OrderSubmitted: Status.ORDERED,
    PaymentConfirmed: Status.PAID,
    LeadClosed: Status.CLOSED,
}


class LeadSearch(Projection):
    """Leads by id, searchable by name or phone (partial, case-insensitive)."""

    name = "lead_search"
    tables = ("leads",)
    indexes: ClassVar[dict[str, tuple[str, ...]]] = {"leads": ("status",)}

    @handles(LeadInitialized)
    async def _initialized(self, e: LeadInitialized, tx: ReadModelTx) -> None:
        tx.put(
            "leads",
            e.lead_id,
            {
                "lead_id": e.lead_id,
                "name": e.name,
                "phone": e.phone,
                "status": Status.NEW.value,
                "contacts": 0,
                "order_id": None,
                "visit": None,
                "updated_at": e.at.isoformat(),
            },
        )

    @handles(ContactDetailsChanged)
    async def _details(self, e: ContactDetailsChanged, tx: ReadModelTx) -> None:
        tx.patch(
            "leads", e.lead_id, {"name": e.name, "phone": e.phone, "updated_at": e.at.isoformat()}
        )

    @handles(Contacted, FollowUpSet, OrderSubmitted, PaymentConfirmed, LeadClosed)
    async def _status(
        self,
        e: Contacted | FollowUpSet | OrderSubmitted | PaymentConfirmed | LeadClosed,
        tx: ReadModelTx,
    ) -> None:
        lead = await tx.get("leads", e.lead_id) or {}
        status = _next_status(lead.get("status", Status.NEW), type(e))
        changes: dict[str, object] = {"status": status, "updated_at": e.at.isoformat()}
        if isinstance(e, Contacted):
            changes["contacts"] = lead.get("contacts", 0) + 1
        if isinstance(e, OrderSubmitted):
            changes["order_id"] = e.order_id
        tx.patch("leads", e.lead_id, changes)

    @handles(LeadAnonymized)
    async def _anonymized(self, e: LeadAnonymized, tx: ReadModelTx) -> None:
        tx.patch("leads", e.lead_id, {"name": "[forgotten]", "phone": "[forgotten]"})

    @handles(VisitBooked, VisitToReschedule)
    async def _visit(self, e: VisitBooked | VisitToReschedule, tx: ReadModelTx) -> None:
        visit = Visit.BOOKED if isinstance(e, VisitBooked) else Visit.TO_RESCHEDULE
        tx.patch("leads", e.lead_id, {"visit": visit.value, "updated_at": e.at.isoformat()})


def _next_status(current: str, event: type) -> str:
    """The funnel only moves forward (contacting again does not undo a follow-up).

    ``Status`` lists the funnel's steps in order; closing ends it from any step.
    """
    order = list(Status)
    proposed = _STATUS_OF[event]
    if proposed is Status.CLOSED or order.index(proposed) > order.index(Status(current)):
        return proposed.value
    return current


class LeadAnalysis(Projection):
    """The funnel (leads per status) and follow-ups per lead."""

    name = "lead_analysis"
    tables = ("funnel", "statuses", "follow_ups")

    @handles(LeadInitialized)
    async def _new(self, e: LeadInitialized, tx: ReadModelTx) -> None:
        tx.put("statuses", e.lead_id, {"status": Status.NEW.value})
        tx.increment("funnel", "all", Status.NEW.value)

    @handles(Contacted, FollowUpSet, OrderSubmitted, PaymentConfirmed, LeadClosed)
    async def _moved(
        self,
        e: Contacted | FollowUpSet | OrderSubmitted | PaymentConfirmed | LeadClosed,
        tx: ReadModelTx,
    ) -> None:
        current = (await tx.get("statuses", e.lead_id) or {}).get("status", Status.NEW.value)
        status = _next_status(current, type(e))
        if status != current:
            tx.put("statuses", e.lead_id, {"status": status})
            tx.increment("funnel", "all", current, -1)
            tx.increment("funnel", "all", status)
        if isinstance(e, FollowUpSet):
            tx.increment("follow_ups", e.lead_id, "count")
            if e.needs_visit:
                tx.increment("follow_ups", e.lead_id, "visits")


class Promotions(Projection):
    """The campaigns that went live, which sales staff may pitch."""

    name = "promotions"
    tables = ("live",)

    @handles(CampaignWentLive)
    async def _live(self, e: CampaignWentLive, tx: ReadModelTx) -> None:
        tx.put(
            "live",
            e.campaign_id,
            {"campaign_id": e.campaign_id, "name": e.name, "since": e.at.isoformat()},
        )
