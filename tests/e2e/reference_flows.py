"""The reference system's flows as HTTP calls, shared by the embedded and the split runs.

Each step is what a user of the API does (``chronik demo`` seeds the same way), plus
the wait for what follows in another context: an order's share reaching the budget,
a visit becoming a trip, a saga or process settling. ``picture`` reads everything a
user can see, to compare before a crash and after the restart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reference_system import Api, Json, System, Written, eventually

#: campaigns' marketing share of each order in EUR, in percent (campaigns.acl)
SHARE_PERCENT = 10


def share_of(amount_cents: int) -> int:
    """What an order in EUR adds to the budget: the share rounded half up, at least 1."""
    return max(1, (amount_cents * SHARE_PERCENT + 50) // 100)


def soon(days: int = 3) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def departure(days: int = 10) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


# -- sales ---------------------------------------------------------------------------


async def new_lead(system: System, name: str, phone: str) -> Written:
    return await system.sales.post("/leads", {"name": name, "phone": phone})


async def order(system: System, lead_id: str, amount_cents: int) -> Written:
    body = {"amount_cents": amount_cents, "currency": "EUR"}
    return await system.sales.post(f"/leads/{lead_id}/orders", body)


async def ordering_lead(system: System, name: str, amount_cents: int) -> tuple[str, str]:
    """A new lead who orders at once: the lead's id and the order's id."""
    lead = await new_lead(system, name, "+49 30 901820")
    ordered = await order(system, lead.id, amount_cents)
    view = await system.sales.get(f"/leads/{lead.id}", after=ordered.position)
    assert view["status"] == "ordered", view
    return lead.id, str(view["order_id"])


async def visit(system: System, lead_id: str, city: str, on: datetime) -> Written:
    """A follow-up on site: sales publishes visit_needed, travel books a trip."""
    body = {"on": on.isoformat(), "needs_visit": True, "city": city}
    return await system.sales.post(f"/leads/{lead_id}/follow-up", body)


async def lead_visit_is(system: System, lead_id: str, visit: str, within: float = 20.0) -> Json:
    """Wait until travel's word on the lead's visit reached sales: ``booked`` or
    ``to_reschedule`` (travel publishes it, sales consumes it)."""
    found: Json = await eventually(
        lambda: system.sales.get(f"/leads/{lead_id}"),
        lambda lead: lead["visit"] == visit,
        f"lead {lead_id}'s visit {visit}",
        within,
    )
    return found


async def visit_events(system: System, lead_id: str) -> list[str]:
    """The types of what travel told sales about the lead's visits, from its history."""
    history = await system.sales.get(f"/leads/{lead_id}/history")
    return [h["type"] for h in history if h["type"].startswith("sales.visit_")]


async def promoted(system: System, campaign_id: str, within: float = 20.0) -> list[Json]:
    """Wait until sales lists the campaign among those live (campaigns publishes it)."""
    found: list[Json] = await eventually(
        lambda: system.sales.get("/promotions"),
        lambda live: campaign_id in {p["campaign_id"] for p in live},
        f"campaign {campaign_id} promoted by sales",
        within,
    )
    return found


# -- campaigns -----------------------------------------------------------------------


async def budget(system: System) -> Json:
    found: Json = await system.campaigns.get("/budget")
    return found


async def budget_reaches(
    system: System, total: int, reserved: int = 0, within: float = 20.0
) -> Json:
    """Wait until the budget read model shows ``total`` and ``reserved``; it must, exactly."""
    wanted = {"total_cents": total, "reserved_cents": reserved, "available_cents": total - reserved}
    return await eventually(
        lambda: budget(system), lambda b: b == wanted, f"budget {wanted}", within
    )


async def activated_campaign(
    system: System, name: str, cost_cents: int, behaviour: str = "confirm"
) -> str:
    """Create a campaign and activate it (the publishing saga starts); its id."""
    body = {"name": name, "cost_cents": cost_cents, "partner_behaviour": behaviour}
    created = await system.campaigns.post("/campaigns", body)
    draft = await system.campaigns.get(f"/campaigns/{created.id}", after=created.position)
    assert draft["status"] == "draft" and draft["partner_behaviour"] == behaviour, draft
    await system.campaigns.post(f"/campaigns/{created.id}/activate")
    return created.id


async def settled_campaign(system: System, campaign_id: str, status: str) -> tuple[Json, Json]:
    """Wait until the campaign shows ``status`` and its saga finished: both views."""
    campaign = await eventually(
        lambda: system.campaigns.find(f"/campaigns/{campaign_id}"),
        lambda c: c is not None and c["status"] == status,
        f"campaign {campaign_id} {status}",
    )
    publishing = await eventually(
        lambda: system.campaigns.find(f"/campaigns/{campaign_id}/publishing"),
        lambda p: p is not None and p["finished"],
        f"the publishing of {campaign_id} finished",
    )
    return campaign, publishing


# -- travel --------------------------------------------------------------------------


async def trips_of(system: System, lead_id: str) -> list[Json]:
    trips: list[Json] = await system.travel.get("/trips", params={"limit": 200})
    return [t for t in trips if t["lead_id"] == lead_id]


async def trip_of(system: System, lead_id: str, status: str, within: float = 20.0) -> Json:
    """The one trip travel booked for a lead's visit, once it shows ``status``."""
    [trip] = await eventually(
        lambda: trips_of(system, lead_id),
        lambda ts: len(ts) == 1 and ts[0]["status"] == status,
        f"one trip for lead {lead_id}, {status}",
        within,
    )
    return trip


async def trip_settles(system: System, trip_id: str, status: str) -> tuple[Json, Json]:
    """Wait until the trip shows ``status`` and its booking process too: both views."""
    trip = await eventually(
        lambda: system.travel.find(f"/trips/{trip_id}"),
        lambda t: t is not None and t["status"] == status,
        f"trip {trip_id} {status}",
    )
    booking = await eventually(
        lambda: system.travel.find(f"/trips/{trip_id}/booking"),
        lambda b: b is not None and b["status"] == status,
        f"the booking of {trip_id} {status}",
    )
    return trip, booking


async def requested_trip(system: System, destination: str, simulate: str = "none") -> Written:
    body = {
        "traveller": "Dorothy",
        "destination": destination,
        "depart_on": departure(),
        "simulate": simulate,
    }
    return await system.travel.post("/trips", body)


def awaits_approval_for_two_days(booking: Json) -> None:
    """The booking waits for approval with one durable timeout, due in 48 hours."""
    assert booking["status"] == "awaiting_approval" and not booking["finished"], booking
    [timeout] = booking["timeouts"].values()
    assert timeout["name"] == "approval"
    due = datetime.fromisoformat(timeout["due"])
    assert timedelta(hours=47) < due - datetime.now(UTC) <= timedelta(hours=48), due


# -- all a user can see ----------------------------------------------------------------


async def _by_id(api: Api, path: str, key: str) -> dict[str, Json]:
    docs: list[Json] = await api.get(path, params={"limit": 200})
    return {d[key]: d for d in docs}


async def picture(system: System) -> dict[str, Any]:
    """Every lead, campaign and trip, their histories and processes, the funnel, the budget."""
    leads = await _by_id(system.sales, "/leads", "lead_id")
    campaigns = await _by_id(system.campaigns, "/campaigns", "campaign_id")
    trips = await _by_id(system.travel, "/trips", "trip_id")
    return {
        "leads": leads,
        "histories": {i: await system.sales.get(f"/leads/{i}/history") for i in leads},
        "states": {i: await system.sales.get(f"/leads/{i}/state") for i in leads},
        "funnel": await system.sales.get("/funnel"),
        "campaigns": campaigns,
        "publishing": {
            i: await system.campaigns.find(f"/campaigns/{i}/publishing") for i in campaigns
        },
        "budget": await budget(system),
        "trips": trips,
        "bookings": {i: await system.travel.find(f"/trips/{i}/booking") for i in trips},
    }
