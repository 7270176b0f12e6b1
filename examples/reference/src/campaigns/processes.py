"""The publishing saga: reserve budget, ask the partner, compensate when it says no."""

from __future__ import annotations

from datetime import timedelta

from campaigns.domain import (
    ActivationRequested,
    BudgetRefused,
    BudgetReserved,
    CancelCampaign,
    PublicationConfirmed,
    PublicationRejected,
    PublishWithPartner,
    RejectCampaign,
    ReleaseBudget,
    ReserveBudget,
)
from chronik.processes import FailurePolicy, ProcessManager, Step, on_timeout, starts, when

#: how long the saga waits for the partner unless told otherwise (CHRONIK_PARTNER_TIMEOUT)
PARTNER_WAIT = timedelta(minutes=2)


class CampaignPublishing(ProcessManager):
    """reserving -> publishing -> published | rejected | cancelled

    A refused reservation rejects the campaign; a partner's rejection or silence
    releases the reserved budget (the compensation) and rejects or cancels it.
    """

    name = "campaign_publishing"
    correlation_key = "campaign_id"
    policy = FailurePolicy(retries=3, backoff=0.2, then="park")

    def __init__(self, partner_wait: timedelta = PARTNER_WAIT) -> None:
        if partner_wait <= timedelta(0):
            raise ValueError(f"the partner's wait must be more than 0, got {partner_wait}")
        self.partner_wait = partner_wait

    @starts(ActivationRequested)
    def activation_requested(self, e: ActivationRequested, p: Step) -> None:
        p.data["cost_cents"] = e.cost_cents
        p.send(ReserveBudget(e.campaign_id, e.cost_cents))
        p.goto("reserving")

    @when("reserving", BudgetReserved)
    def reserved(self, e: BudgetReserved, p: Step) -> None:
        p.on_failure(ReleaseBudget(e.campaign_id, e.amount_cents))
        p.send(PublishWithPartner(e.campaign_id))
        p.schedule("partner", after=self.partner_wait)
        p.goto("publishing")

    @when("reserving", BudgetRefused)
    def refused(self, e: BudgetRefused, p: Step) -> None:
        p.send(RejectCampaign(e.campaign_id, f"budget: {e.available_cents} cents available"))
        p.goto("rejected")
        p.finish()

    @when("publishing", PublicationConfirmed)
    def confirmed(self, e: PublicationConfirmed, p: Step) -> None:
        p.cancel("partner")
        p.goto("published")
        p.finish()

    @when("publishing", PublicationRejected)
    def rejected(self, e: PublicationRejected, p: Step) -> None:
        p.cancel("partner")
        p.compensate()
        p.goto("rejected")
        p.finish()

    @on_timeout("partner")
    def partner_silent(self, p: Step) -> None:
        p.compensate()
        p.send(CancelCampaign(p.instance, "the partner did not answer in time"))
        p.goto("cancelled")
        p.finish()
