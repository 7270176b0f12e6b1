"""Campaigns: advertising campaigns, their budget, and the publishing saga.

Other contexts may import ``campaigns.contracts`` only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def spec() -> Any:
    """The context's parts, for a chronik Runtime (built on demand, not at import).

    The composition root: one set of handlers per runtime, shared by the routes, the
    saga and the consumer, with the fake partner configured from the demo's headers.
    """
    from campaigns import domain, handlers, http, projections
    from campaigns.contracts import LANGUAGE
    from campaigns.partner import FakePartner, behaviour_from_headers
    from campaigns.processes import CampaignPublishing
    from campaigns.upcasting import UPCASTERS
    from chronik.processes import Processes
    from chronik.runtime.service import ConsumerSpec, Runtime, ServiceSpec
    from sales import contracts as sales

    made: dict[int, handlers.CampaignHandlers] = {}

    def campaign_handlers(runtime: Runtime) -> handlers.CampaignHandlers:
        """One set of handlers per runtime (the routes, the consumer and the saga share it)."""
        if id(runtime) not in made:
            partner = FakePartner(
                behaviour_of=behaviour_from_headers(runtime.store, handlers.CAMPAIGNS)
            )
            made[id(runtime)] = handlers.CampaignHandlers(
                runtime.store, partner, clock=runtime.clock
            )
        return made[id(runtime)]

    def workers(runtime: Runtime) -> list[Processes]:
        h = campaign_handlers(runtime)
        return [
            Processes(
                runtime.store,
                [CampaignPublishing(timedelta(seconds=runtime.settings.partner_timeout))],
                {
                    domain.ReserveBudget: h.reserve_budget,
                    domain.ReleaseBudget: h.release_budget,
                    domain.PublishWithPartner: h.publish_with_partner,
                    domain.RejectCampaign: h.reject_campaign,
                    domain.CancelCampaign: h.cancel_campaign,
                },
                backend=runtime.database.projections(),
                index=runtime.process_index,
                name="campaigns_processes",
                clock=runtime.clock,
            )
        ]

    return ServiceSpec(
        name="campaigns",
        event_types=domain.EVENTS,
        upcasters=UPCASTERS,
        projections=[projections.CampaignBoard()],
        language=LANGUAGE,
        translate=handlers.publish,
        consumers=[
            ConsumerSpec(
                "campaigns",
                sales.LANGUAGE,
                lambda rt: {sales.OrderSubmitted: campaign_handlers(rt).on_order_submitted},
            )
        ],
        workers=workers,
        routes=lambda runtime: http.routes(runtime, campaign_handlers),
        aggregates={handlers.CAMPAIGNS: domain.Campaign, handlers.BUDGETS: domain.Budget},
    )
