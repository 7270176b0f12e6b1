"""Sales: telemarketing leads, from first call to payment (a bounded context).

Other contexts may import ``sales.contracts`` only.
"""

from __future__ import annotations

from typing import Any


def spec() -> Any:
    """The context's parts, for a chronik Runtime (built on demand, not at import)."""
    from chronik.runtime.service import ServiceSpec
    from sales import domain, handlers, http, projections
    from sales.contracts import LANGUAGE

    return ServiceSpec(
        name="sales",
        event_types=domain.EVENTS,
        projections=[projections.LeadSearch(), projections.LeadAnalysis()],
        language=LANGUAGE,
        translate=handlers.publish,
        routes=http.routes,
        aggregates={handlers.PREFIX: domain.Lead},
    )
