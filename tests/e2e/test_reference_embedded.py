"""The reference system embedded: ``chronik serve`` with sales, campaigns and travel in one process.

Each test drives one flow over HTTP against a real subprocess on its own SQLite data
directory, kills it with SIGKILL at a quiet moment, starts it again on the same
directory, checks that everything a user could see is still there, and goes on with
the flow. The last test kills the process right after writes were acknowledged, while
their effects in the other contexts are still on their way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reference_flows import (
    activated_campaign,
    awaits_approval_for_two_days,
    budget_reaches,
    lead_visit_is,
    new_lead,
    order,
    ordering_lead,
    picture,
    promoted,
    requested_trip,
    settled_campaign,
    share_of,
    soon,
    trip_of,
    trip_settles,
    visit,
    visit_events,
)
from reference_system import Api, Launcher, Service, System, event_types, launched

pytestmark = pytest.mark.slow


@dataclass
class Embedded:
    service: Service
    system: System
    data_dir: Path

    @property
    def where(self) -> list[str]:
        """The CLI's option naming this process's store."""
        return ["--data-dir", str(self.data_dir)]

    async def crash_and_restart(self) -> None:
        """SIGKILL, then ``chronik serve`` again on the same data directory."""
        self.service.kill()
        await self.service.restart()
        await self.system.reconnect()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    with launched(tmp_path / "logs") as launcher:
        yield launcher


@pytest.fixture
async def embedded(launcher: Launcher, tmp_path: Path) -> AsyncIterator[Embedded]:
    data_dir = tmp_path / "data"
    env = {"CHRONIK_APP": "reference:specs", "CHRONIK_DATA_DIR": str(data_dir)}
    service = launcher.serve("reference", env)
    await service.wait_ready()
    system = System.embedded(service.url)
    try:
        yield Embedded(service, system, data_dir)
    finally:
        await system.close()


async def test_a_lead_goes_through_the_funnel_survives_a_crash_and_is_forgotten(
    embedded: Embedded,
) -> None:
    sales = embedded.system.sales
    kath = await new_lead(embedded.system, "Katherine Johnson", "+1 757 555 0100")
    dorothy = await new_lead(embedded.system, "Dorothy Vaughan", "+1 804 555 0199")
    await sales.post(f"/leads/{kath.id}/contact", {"note": "wants the orbital tables"})
    await sales.post(
        f"/leads/{kath.id}/follow-up", {"on": soon().isoformat(), "needs_visit": False}
    )
    ordered = await order(embedded.system, kath.id, 120_000)
    order_id = (await sales.get(f"/leads/{kath.id}", after=ordered.position))["order_id"]
    paid = await sales.post(f"/leads/{kath.id}/payment", {"order_id": order_id})

    lead = await sales.get(f"/leads/{kath.id}", after=paid.position)
    assert lead | {"updated_at": None} == {
        "lead_id": kath.id,
        "name": "Katherine Johnson",
        "phone": "+1 757 555 0100",
        "status": "paid",
        "contacts": 1,
        "order_id": order_id,
        "visit": None,
        "updated_at": None,
    }

    async def found(q: str) -> list[str]:
        return sorted(d["lead_id"] for d in await sales.get("/leads", params={"q": q}))

    assert await found("kATH") == [kath.id]
    assert await found("555 0100") == [kath.id]
    assert await found("555 01") == sorted([kath.id, dorothy.id])
    assert await found("nobody") == []
    paid_ones = await sales.get("/leads", params={"q": "555 01", "status": "paid"})
    assert [d["lead_id"] for d in paid_ones] == [kath.id]
    funnel = await sales.get("/funnel", after=paid.position)
    assert {k: v for k, v in funnel["counts"].items() if v} == {"new": 1, "paid": 1}

    expected = [  # version: status, contacts, follow-ups, order, cents
        (1, "new", 0, 0, None, 0),
        (2, "contacted", 1, 0, None, 0),
        (3, "follow_up", 1, 1, None, 0),
        (4, "ordered", 1, 1, order_id, 120_000),
        (5, "paid", 1, 1, order_id, 120_000),
    ]
    for version, status, contacts, follow_ups, order_of, cents in expected:
        state = await sales.get(f"/leads/{kath.id}/state", params={"version": version})
        assert state == {
            "lead_id": kath.id,
            "version": version,
            "status": status,
            "name": "Katherine Johnson",
            "phone": "+1 757 555 0100",
            "contacts": contacts,
            "follow_ups": follow_ups,
            "order_id": order_of,
            "order_cents": cents,
            "visit": None,
            "visit_trip": None,
        }
    history = await sales.get(f"/leads/{kath.id}/history")
    assert [(h["version"], h["type"]) for h in history] == [
        (1, "sales.lead_initialized"),
        (2, "sales.contacted"),
        (3, "sales.follow_up_set"),
        (4, "sales.order_submitted"),
        (5, "sales.payment_confirmed"),
    ]
    positions = [h["position"] for h in history]
    assert positions == sorted(positions) and positions[-1] == paid.position
    assert history[3]["data"]["amount_cents"] == 120_000
    as_of = await sales.get(f"/leads/{kath.id}/state", params={"at": history[1]["recorded_at"]})
    assert (as_of["version"], as_of["status"]) == (2, "contacted")

    before = await picture(embedded.system)
    await embedded.crash_and_restart()
    assert await picture(embedded.system) == before

    forgotten = await sales.post(f"/leads/{kath.id}/anonymize")
    lead = await sales.get(f"/leads/{kath.id}", after=forgotten.position)
    assert (lead["name"], lead["phone"], lead["status"]) == ("[forgotten]", "[forgotten]", "paid")
    assert await found("kath") == []
    assert await found("555 01") == [dorothy.id]
    history = await sales.get(f"/leads/{kath.id}/history")
    assert history[0]["data"]["name"] == "[forgotten]"
    assert history[-1]["type"] == "sales.lead_anonymized"
    then = await sales.get(f"/leads/{kath.id}/state", params={"version": 1})
    assert (then["name"], then["phone"]) == ("[forgotten]", "[forgotten]")
    assert (await sales.get(f"/leads/{dorothy.id}"))["name"] == "Dorothy Vaughan"

    await embedded.crash_and_restart()
    lead = await sales.get(f"/leads/{kath.id}")
    assert (lead["name"], lead["phone"]) == ("[forgotten]", "[forgotten]")
    assert await found("kath") == []


async def test_an_order_grows_the_budget_that_a_published_campaign_reserves(
    embedded: Embedded,
) -> None:
    system = embedded.system
    await ordering_lead(system, "Ada Lovelace", 250_000)
    await budget_reaches(system, total=share_of(250_000))

    spring = await activated_campaign(system, "Spring sale", 20_000)
    campaign, publishing = await settled_campaign(system, spring, "published")
    assert campaign["partner_reference"].startswith("AD-") and campaign["reason"] is None
    assert publishing == {"status": "published", "finished": True, "steps": 3, "timeouts": {}}
    await budget_reaches(system, total=25_000, reserved=20_000)
    refused = await system.campaigns.refused(f"/campaigns/{spring}/activate")
    assert refused.status_code == 409

    before = await picture(embedded.system)
    await embedded.crash_and_restart()
    assert await picture(embedded.system) == before

    await ordering_lead(system, "Grace Hopper", 100_000)
    await budget_reaches(system, total=35_000, reserved=20_000)
    summer = await activated_campaign(system, "Summer sale", 15_000)
    await settled_campaign(system, summer, "published")
    await budget_reaches(system, total=35_000, reserved=35_000)
    broke = await activated_campaign(system, "One cent too many", 1)
    campaign, publishing = await settled_campaign(system, broke, "rejected")
    assert campaign["reason"] == "budget: 0 cents available"
    assert (publishing["status"], publishing["steps"]) == ("rejected", 2)
    await budget_reaches(system, total=35_000, reserved=35_000)


async def test_a_campaign_the_partner_declines_or_cannot_take_gives_its_budget_back(
    embedded: Embedded,
) -> None:
    system = embedded.system
    await system.campaigns.post("/budget/top-up", {"amount_cents": 50_000})
    await budget_reaches(system, total=50_000)

    bold = await activated_campaign(system, "Too bold", 10_000, behaviour="reject")
    down = await activated_campaign(system, "Partner down", 15_000, behaviour="fail")
    campaign, publishing = await settled_campaign(system, bold, "rejected")
    assert campaign["reason"] == "the partner declined (CONTENT_POLICY)"
    assert publishing == {"status": "rejected", "finished": True, "steps": 3, "timeouts": {}}
    campaign, publishing = await settled_campaign(system, down, "rejected")
    assert "UNAVAILABLE" in campaign["reason"]
    assert publishing == {"status": "rejected", "finished": True, "steps": 3, "timeouts": {}}
    await budget_reaches(system, total=50_000, reserved=0)
    # Reserved, then released: the saga's compensation, not a refusal.
    budget_events = await event_types("budget-main", embedded.where)
    assert sorted(budget_events) == sorted(
        ["campaigns.budget_increased"]
        + ["campaigns.budget_reserved", "campaigns.budget_released"] * 2
    )

    before = await picture(embedded.system)
    await embedded.crash_and_restart()
    assert await picture(embedded.system) == before

    everything = await activated_campaign(system, "All in", 50_000)
    await settled_campaign(system, everything, "published")
    await budget_reaches(system, total=50_000, reserved=50_000)


async def test_a_visit_books_a_trip_that_is_approved_after_a_crash_or_undone_without_a_hotel(
    embedded: Embedded,
) -> None:
    system = embedded.system
    lead = await new_lead(system, "Grace Hopper", "+1 202 555 0143")
    on = soon(days=4)
    await visit(system, lead.id, "Lyon", on)
    trip = await trip_of(system, lead.id, "awaiting_approval")
    assert trip["traveller"] == "sales team" and trip["destination"] == "Lyon"
    assert trip["depart_on"] == on.date().isoformat()
    assert trip["flight"].startswith("FL-") and trip["hotel"].startswith("HT-")
    trip, booking = await trip_settles(system, trip["trip_id"], "awaiting_approval")
    awaits_approval_for_two_days(booking)
    assert booking["steps"] == 3

    nowhere = await requested_trip(system, "Nowhere", simulate="no_hotel")
    cancelled, booking = await trip_settles(system, nowhere.id, "cancelled")
    assert cancelled["reason"] == "no hotel: no rooms in Nowhere"
    assert (cancelled["flight"], cancelled["hotel"]) == (None, None)
    assert booking == {"status": "cancelled", "finished": True, "steps": 3, "timeouts": {}}
    # The flight was booked, then cancelled: the compensation. (The step sends its own
    # command, CancelTrip, before the compensations it runs, so the last two come in
    # either order as far as the user is concerned.)
    types = await event_types(f"trip-{nowhere.id}", embedded.where)
    assert types[:3] == [
        "travel.trip_requested",
        "travel.flight_booked",
        "travel.hotel_booking_failed",
    ]
    assert sorted(types[3:]) == ["travel.flight_cancelled", "travel.trip_cancelled"]

    before = await picture(embedded.system)
    await embedded.crash_and_restart()
    assert await picture(embedded.system) == before

    await system.travel.post(f"/trips/{trip['trip_id']}/approve", {"by": "the manager"})
    confirmed, booking = await trip_settles(system, trip["trip_id"], "confirmed")
    assert (confirmed["flight"], confirmed["hotel"]) == (trip["flight"], trip["hotel"])
    assert booking == {"status": "confirmed", "finished": True, "steps": 4, "timeouts": {}}
    again = await system.travel.refused(f"/trips/{trip['trip_id']}/approve", {"by": "someone"})
    assert again.status_code == 409


async def test_writes_acknowledged_just_before_a_crash_take_effect_once_after_the_restart(
    embedded: Embedded,
) -> None:
    system = embedded.system
    top_up = await system.campaigns.post("/budget/top-up", {"amount_cents": 5_000})
    await system.campaigns.get("/budget", after=top_up.position)
    bulk = [await new_lead(system, f"Lead {i}", "+49 30 901820") for i in range(20)]
    for called in bulk[:10]:
        await system.sales.post(f"/leads/{called.id}/contact", {"note": "called"})
    lead = await new_lead(system, "Alan Turing", "+44 161 496 0000")

    # Each of these starts work in another context; the process dies right after them.
    await order(system, lead.id, 100_000)
    on = soon(days=5)
    await visit(system, lead.id, "Manchester", on)
    autumn = await activated_campaign(system, "Autumn sale", 5_000)
    direct = await requested_trip(system, "Bletchley")
    embedded.service.kill()
    await embedded.service.restart()
    await embedded.system.reconnect()

    await settled_campaign(system, autumn, "published")
    await budget_reaches(system, total=5_000 + 10_000, reserved=5_000)
    trip = await trip_of(system, lead.id, "awaiting_approval")
    assert trip["depart_on"] == on.date().isoformat()
    _, booking = await trip_settles(system, direct.id, "awaiting_approval")
    awaits_approval_for_two_days(booking)

    assert sorted(await event_types("budget-main", embedded.where)) == [
        "campaigns.budget_increased",
        "campaigns.budget_increased",
        "campaigns.budget_reserved",
    ]
    assert len(await system.travel.get("/trips")) == 2
    funnel = await system.sales.get("/funnel")
    assert {k: v for k, v in funnel["counts"].items() if v} == {
        "new": 10,
        "contacted": 10,
        "ordered": 1,  # a follow-up after the order does not move the lead back
    }
    assert len(await system.sales.get("/leads", params={"limit": 200})) == 21


async def test_the_demo_seeds_every_flow_and_keeps_its_data_across_a_crash(
    launcher: Launcher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "demo"
    # Wide enough that the console does not wrap the lines it prints.
    demo = launcher.serve("demo", {"COLUMNS": "1000"}, ("demo", "--data-dir", str(data_dir)))
    await demo.wait_ready()
    await demo.wait_for_output("seeded example data")
    system = System.embedded(demo.url)
    try:
        leads = {d["name"]: d for d in await system.sales.get("/leads")}
        assert {name: d["status"] for name, d in leads.items()} == {
            "Ada Lovelace": "ordered",
            "Grace Hopper": "follow_up",
            "Alan Turing": "closed",
        }
        await budget_reaches(system, total=50_000 + share_of(250_000), reserved=20_000)
        campaigns = {d["name"]: d["campaign_id"] for d in await system.campaigns.get("/campaigns")}
        await settled_campaign(system, campaigns["Spring sale"], "published")
        await settled_campaign(system, campaigns["Too bold"], "rejected")
        await trip_of(system, leads["Grace Hopper"]["lead_id"], "awaiting_approval")
        [nowhere] = [t for t in await system.travel.get("/trips") if t["traveller"] == "Alan"]
        await trip_settles(system, nowhere["trip_id"], "cancelled")

        before = await picture(system)
        demo.kill()
        await demo.restart()
        await system.reconnect()
        await demo.wait_for_output(f"kept the data in {data_dir} (3 leads)")
        assert await picture(system) == before
    finally:
        await system.close()


async def test_commands_retried_with_their_idempotency_key_get_the_first_answer(
    embedded: Embedded,
) -> None:
    system = embedded.system
    wrong: list[str] = []

    async def twice(api: Api, path: str, body: dict[str, object]) -> httpx.Response:
        """The POST, and its retry after a lost answer (same key, same body)."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        first = await api.client.post(path, json=body, headers=headers)
        assert first.is_success, first.text
        again = await api.client.post(path, json=body, headers=headers)
        replayed = again.headers.get("idempotent-replayed") == "true"
        if (again.status_code, again.text, replayed) != (first.status_code, first.text, True):
            wrong.append(f"{path}: {again.status_code} {again.text}")
        return first

    lead = await twice(system.sales, "/leads", {"name": "Ada", "phone": "+44 20 7946 0958"})
    lead_id = lead.json()["id"]
    await twice(system.sales, f"/leads/{lead_id}/contact", {"note": "called"})
    await twice(
        system.sales, f"/leads/{lead_id}/orders", {"amount_cents": 100_000, "currency": "EUR"}
    )
    order_id = (await system.sales.get(f"/leads/{lead_id}/state"))["order_id"]
    await twice(system.sales, f"/leads/{lead_id}/payment", {"order_id": order_id})
    created = await twice(system.campaigns, "/campaigns", {"name": "Once", "cost_cents": 5_000})
    campaign_id = created.json()["id"]
    await twice(system.campaigns, f"/campaigns/{campaign_id}/activate", {})
    await settled_campaign(system, campaign_id, "published")
    # Whatever the retries answered, each command took effect once.
    await budget_reaches(system, total=share_of(100_000), reserved=5_000)
    history = await system.sales.get(f"/leads/{lead_id}/history")
    assert [h["type"] for h in history] == [
        "sales.lead_initialized",
        "sales.contacted",
        "sales.order_submitted",
        "sales.payment_confirmed",
    ]
    assert wrong == []


async def test_partner_and_booking_references_stay_unique_across_a_restart(
    embedded: Embedded,
) -> None:
    system = embedded.system
    await system.campaigns.post("/budget/top-up", {"amount_cents": 2_000})
    references: list[str] = []

    async def publish_and_book(name: str) -> None:
        campaign_id = await activated_campaign(system, name, 1_000)
        campaign, _ = await settled_campaign(system, campaign_id, "published")
        trip = await requested_trip(system, name)
        booked, _ = await trip_settles(system, trip.id, "awaiting_approval")
        references.extend([campaign["partner_reference"], booked["flight"], booked["hotel"]])

    await publish_and_book("Before")
    await embedded.crash_and_restart()
    await publish_and_book("After")
    assert sorted(set(references)) == sorted(references), references


async def test_travel_and_campaigns_answer_sales_through_public_events_across_a_crash(
    embedded: Embedded,
) -> None:
    """The flows back to sales: a visit's trip confirmed or cancelled, a campaign live.

    The process is killed right after the approval and the activation were acknowledged,
    while their effects are still on their way to sales: they arrive after the restart,
    once each.
    """
    system = embedded.system
    on = soon(days=5)
    grace = await new_lead(system, "Grace Hopper", "+1 202 555 0143")
    alan = await new_lead(system, "Alan Turing", "+44 161 496 0000")
    await visit(system, grace.id, "Lyon", on)
    await visit(system, alan.id, "Porto", on)
    graces = await trip_of(system, grace.id, "awaiting_approval")
    alans = await trip_of(system, alan.id, "awaiting_approval")
    assert (await system.sales.get(f"/leads/{grace.id}"))["visit"] is None

    await system.campaigns.post("/budget/top-up", {"amount_cents": 30_000})
    await system.travel.post(f"/trips/{alans['trip_id']}/reject", {"by": "the manager"})
    launch = await activated_campaign(system, "Launch", 20_000)
    await system.travel.post(f"/trips/{graces['trip_id']}/approve", {"by": "the manager"})
    await embedded.crash_and_restart()

    lead = await lead_visit_is(system, grace.id, "booked")
    assert lead["status"] == "follow_up"
    await lead_visit_is(system, alan.id, "to_reschedule")
    state = await system.sales.get(f"/leads/{alan.id}/state")
    assert (state["visit"], state["visit_trip"]) == ("to_reschedule", alans["trip_id"])
    await settled_campaign(system, launch, "published")
    [live] = await promoted(system, launch)
    assert live["name"] == "Launch"

    await asyncio.sleep(2.0)  # a message delivered twice would have landed by now
    assert await visit_events(system, grace.id) == ["sales.visit_booked"]
    assert await visit_events(system, alan.id) == ["sales.visit_to_reschedule"]
    assert [p["campaign_id"] for p in await system.sales.get("/promotions")] == [launch]
    assert await event_types("promotions-live", embedded.where) == ["sales.campaign_went_live"]
