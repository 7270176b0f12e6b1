"""What the console's browser tests find in the reference system: made through its API.

``seed`` runs once per session (the ``embedded`` fixture) and returns the ids the tests
look for. Add to it what a new page's test needs; keep it quick.
"""

from __future__ import annotations

from reference_flows import budget_reaches, order, share_of, soon, trip_of, visit
from reference_system import System

#: the order that sets off the causation chain from sales to campaigns' budget
ORDER_CENTS = 12_345


async def seed(system: System) -> dict[str, str]:
    """A lead contacted, who ordered and is to be visited (four versions of their stream;
    the visit books a trip that waits for approval), and the order's share in the budget."""
    lead = await system.sales.post("/leads", {"name": "Ada Lovelace", "phone": "+44 20 7946"})
    await system.sales.post(f"/leads/{lead.id}/contact", {"note": "wants a demo"})
    await order(system, lead.id, ORDER_CENTS)
    await budget_reaches(system, share_of(ORDER_CENTS))
    await visit(system, lead.id, "Berlin", soon(days=4))
    trip = await trip_of(system, lead.id, "awaiting_approval")
    return {
        "lead_id": lead.id,
        "lead_name": "Ada Lovelace",
        "budget_cents": str(share_of(ORDER_CENTS)),
        "trip_id": str(trip["trip_id"]),
    }
