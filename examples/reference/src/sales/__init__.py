"""Sales: telemarketing leads, from first call to payment (a bounded context).

Other contexts may import ``sales.contracts`` only.
"""

from __future__ import annotations

from typing import Any


def spec() -> Any:
    """The context's parts, for a chronik Runtime (built on demand, not at import).

    The composition root: one set of handlers per runtime, shared by the routes and
    the consumers of travel's and campaigns' public events.
    """
    from campaigns import contracts as campaigns
    from chronik.runtime.service import ConsumerSpec, Runtime, ServiceSpec
    from sales import domain, handlers, http, projections
    from sales.contracts import LANGUAGE
    from travel import contracts as travel

    made: dict[int, handlers.LeadHandlers] = {}

    def lead_handlers(runtime: Runtime) -> handlers.LeadHandlers:
        if id(runtime) not in made:
            made[id(runtime)] = handlers.LeadHandlers(runtime.store, clock=runtime.clock)
        return made[id(runtime)]

    return ServiceSpec(
        name="sales",
        event_types=domain.EVENTS,
        projections=[
            projections.LeadSearch(),
            projections.LeadAnalysis(),
            projections.Promotions(),
        ],
        language=LANGUAGE,
        translate=handlers.publish,
        consumers=[
            ConsumerSpec(
                "sales-visits",
                travel.LANGUAGE,
                lambda rt: {
                    travel.VisitTripConfirmed: lead_handlers(rt).on_visit_trip_confirmed,
                    travel.VisitTripCancelled: lead_handlers(rt).on_visit_trip_cancelled,
                },
            ),
            ConsumerSpec(
                "sales-promotions",
                campaigns.LANGUAGE,
                lambda rt: {campaigns.CampaignLive: lead_handlers(rt).on_campaign_live},
            ),
        ],
        routes=lambda runtime: http.routes(runtime, lead_handlers),
        aggregates={handlers.PREFIX: domain.Lead, handlers.PROMOTIONS: domain.Promotions},
    )
