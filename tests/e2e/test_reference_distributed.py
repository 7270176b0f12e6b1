"""The reference system split as in production, on PostgreSQL and NATS JetStream.

As deploy/local/run-distributed.sh does, with ports, schemas and a broker namespace of
the test's own: one ``chronik serve`` per context (its own schema; http, projections,
consumers and processes) and one ``chronik relay`` process per context, moving the
outbox to NATS. Orders and visits cross from sales to campaigns and travel, and what
became of the visits and the campaigns crosses back to sales, through outbox, relay,
broker and inbox; a relay or a service is killed with SIGKILL in the middle of a flow
and started again: nothing is lost and nothing happens twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from reference_flows import (
    activated_campaign,
    awaits_approval_for_two_days,
    budget,
    budget_reaches,
    lead_visit_is,
    new_lead,
    ordering_lead,
    picture,
    promoted,
    requested_trip,
    settled_campaign,
    share_of,
    soon,
    trip_of,
    trip_settles,
    trips_of,
    visit,
    visit_events,
)
from reference_system import (
    BASE_ENV,
    CHRONIK,
    Api,
    Relay,
    Service,
    System,
    event_types,
    launched,
    stream_events,
)

from conftest import service_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
CONTEXTS = ("sales", "campaigns", "travel")


@dataclass
class Split:
    """Three services and their relays, each context on its own schema."""

    services: dict[str, Service]
    relays: dict[str, Relay]
    stores: dict[str, str]
    system: System

    def where(self, context: str) -> list[str]:
        """The CLI's option naming a context's store."""
        return ["--store-url", self.stores[context]]

    async def outbox_pending(self, context: str) -> int:
        """``chronik outbox status``: messages the relay has not published yet."""
        process = await asyncio.create_subprocess_exec(
            CHRONIK,
            "outbox",
            "status",
            *self.where(context),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=BASE_ENV,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        [line] = [x for x in out.decode().splitlines() if x.startswith("pending")]
        return int(line.split()[1])

    async def restart_service(self, context: str) -> None:
        await self.services[context].restart()
        await getattr(self.system, context).reconnect()


def nats_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection((NATS_HOST, NATS_PORT), 3):
        return True
    return False


async def forget_namespace(namespace: str) -> None:
    """Remove the test's durable consumers and messages from the shared JetStream stream."""
    import nats
    import nats.js.errors

    client = await nats.connect(servers=[f"nats://{NATS_HOST}:{NATS_PORT}"], connect_timeout=3)
    try:
        js = client.jetstream(timeout=5)
        durables = [
            f"{namespace}-campaigns-sales",
            f"{namespace}-travel-sales",
            f"{namespace}-sales-visits-travel",
            f"{namespace}-sales-promotions-campaigns",
        ]
        for durable in durables:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer("CHRONIK", durable)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.purge_stream("CHRONIK", subject=f"chronik.{namespace}.>")
    finally:
        await client.close()


async def drop_schemas(postgres_url: str, schemas: list[str]) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("SET lock_timeout = '10s'")
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
async def split(postgres_url: str, tmp_path: Path) -> AsyncIterator[Split]:
    if not nats_reachable():
        service_missing(f"NATS is not reachable at {NATS_HOST}:{NATS_PORT}")
    run = uuid.uuid4().hex[:10]
    namespace = f"t{run}"
    broker_url = f"nats://{NATS_HOST}:{NATS_PORT}?namespace={namespace}"
    schemas = {context: f"{context}_{run}" for context in CONTEXTS}
    stores = {context: f"{postgres_url}?schema={schemas[context]}" for context in CONTEXTS}
    try:
        with launched(tmp_path / "logs") as launcher:
            services = {
                context: launcher.serve(
                    context,
                    {
                        "CHRONIK_APP": f"{context}:spec",
                        "CHRONIK_EVENT_STORE_URL": stores[context],
                        "CHRONIK_BROKER_URL": broker_url,
                        "CHRONIK_RUN": "http,projections,consumers,processes",
                    },
                )
                for context in CONTEXTS
            }
            relays = {
                context: launcher.relay(f"{context}-relay", stores[context], broker_url)
                for context in CONTEXTS
            }
            for service in services.values():
                await service.wait_ready()
            for relay in relays.values():
                await relay.wait_started()
            system = System(*(Api(services[context].url) for context in CONTEXTS))
            try:
                yield Split(services, relays, stores, system)
            finally:
                await system.close()
    finally:
        await forget_namespace(namespace)
        await drop_schemas(postgres_url, list(schemas.values()))


async def test_orders_grow_the_budget_exactly_once_across_a_relay_crash_then_fund_a_campaign(
    split: Split,
) -> None:
    system = split.system
    amounts = [20_000 + 10_000 * i for i in range(24)]
    orders: list[str] = []

    async def place(amount: int) -> None:
        _, order_id = await ordering_lead(system, f"Customer {len(orders)}", amount)
        orders.append(order_id)

    def total(count: int) -> int:
        return sum(share_of(a) for a in amounts[:count])

    for amount in amounts[:4]:
        await place(amount)
    await budget_reaches(system, total=total(4))

    # The relay dies while orders keep coming (and while it may be publishing some).
    for index, amount in enumerate(amounts[4:], start=4):
        await place(amount)
        if index == 7:
            split.relays["sales"].kill()
    assert split.relays["sales"].process is not None
    assert split.relays["sales"].process.returncode == -9
    await asyncio.sleep(1.0)
    assert (await budget(system))["total_cents"] < total(len(amounts))
    assert await split.outbox_pending("sales") > 0

    await split.relays["sales"].restart()
    await budget_reaches(system, total=total(len(amounts)), within=30)
    assert await split.outbox_pending("sales") == 0
    await asyncio.sleep(2.0)  # redeliveries, if any, would land by now
    await budget_reaches(system, total=total(len(amounts)), within=0)
    increases = [
        e["data"]
        for e in await stream_events("budget-main", split.where("campaigns"))
        if e["type"] == "campaigns.budget_increased"
    ]
    assert sorted(i["source"] for i in increases) == sorted(orders)
    assert sorted(i["amount_cents"] for i in increases) == sorted(map(share_of, amounts))

    everything = total(len(amounts))
    launch = await activated_campaign(system, "Launch", everything - 1)
    campaign, publishing = await settled_campaign(system, launch, "published")
    assert campaign["partner_reference"].startswith("AD-")
    assert publishing == {"status": "published", "finished": True, "steps": 3, "timeouts": {}}
    await budget_reaches(system, total=everything, reserved=everything - 1)
    bold = await activated_campaign(system, "Too bold", 1, behaviour="reject")
    campaign, _ = await settled_campaign(system, bold, "rejected")
    assert campaign["reason"] == "the partner declined (CONTENT_POLICY)"
    await budget_reaches(system, total=everything, reserved=everything - 1)


async def test_visits_book_trips_once_across_a_relay_crash_and_a_travel_service_crash(
    split: Split,
) -> None:
    system = split.system
    grace = await new_lead(system, "Grace Hopper", "+1 202 555 0143")
    on = soon(days=4)
    await visit(system, grace.id, "Lyon", on)
    trip = await trip_of(system, grace.id, "awaiting_approval")
    assert (trip["destination"], trip["depart_on"]) == ("Lyon", on.date().isoformat())
    assert trip["flight"].startswith("FL-") and trip["hotel"].startswith("HT-")

    # Visits recorded while the sales relay is down reach travel once it is back, once.
    split.relays["sales"].kill()
    waiting = [await new_lead(system, f"Visited {i}", "+33 1 4020 5050") for i in range(3)]
    for lead in waiting:
        await visit(system, lead.id, "Porto", on)
    await asyncio.sleep(1.0)
    for lead in waiting:
        assert await trips_of(system, lead.id) == []
    await split.relays["sales"].restart()
    for lead in waiting:
        await trip_of(system, lead.id, "awaiting_approval", within=30)
    await asyncio.sleep(2.0)
    for lead in waiting:
        assert len(await trips_of(system, lead.id)) == 1

    # The travel service dies with trips awaiting approval; they wait on after the restart.
    _, booking = await trip_settles(system, trip["trip_id"], "awaiting_approval")
    awaits_approval_for_two_days(booking)
    before = await picture(system)
    split.services["travel"].kill()
    await split.restart_service("travel")
    assert await picture(system) == before

    await system.travel.post(f"/trips/{trip['trip_id']}/approve", {"by": "the manager"})
    _, booking = await trip_settles(system, trip["trip_id"], "confirmed")
    assert booking == {"status": "confirmed", "finished": True, "steps": 4, "timeouts": {}}

    nowhere = await requested_trip(system, "Nowhere", simulate="no_hotel")
    cancelled, booking = await trip_settles(system, nowhere.id, "cancelled")
    assert cancelled["reason"] == "no hotel: no rooms in Nowhere"
    assert (cancelled["flight"], cancelled["hotel"]) == (None, None)
    assert booking == {"status": "cancelled", "finished": True, "steps": 3, "timeouts": {}}
    types = await event_types(f"trip-{nowhere.id}", split.where("travel"))
    assert types[:3] == [
        "travel.trip_requested",
        "travel.flight_booked",
        "travel.hotel_booking_failed",
    ]
    assert sorted(types[3:]) == ["travel.flight_cancelled", "travel.trip_cancelled"]


async def test_visit_outcomes_and_live_campaigns_reach_sales_once_across_relay_and_sales_crashes(
    split: Split,
) -> None:
    """The flows back: travel and campaigns publish, sales consumes.

    Travel's relay dies while trips are decided, campaigns' relay while a campaign goes
    live, and the sales service (its consumers) while the messages are on the broker:
    everything reaches sales after the restarts, once.
    """
    system = split.system
    on = soon(days=5)
    leads = [await new_lead(system, f"Visited {i}", "+33 1 4020 5050") for i in range(4)]
    for lead in leads:
        await visit(system, lead.id, "Lyon", on)
    trips = [(await trip_of(system, lead.id, "awaiting_approval"))["trip_id"] for lead in leads]

    # Decisions made while travel's relay is down wait in its outbox.
    split.relays["travel"].kill()
    for index, trip_id in enumerate(trips):
        decision = "approve" if index % 2 == 0 else "reject"
        await system.travel.post(f"/trips/{trip_id}/{decision}", {"by": "the manager"})
    for trip_id in trips:
        await trip_settles(
            system, trip_id, "confirmed" if trips.index(trip_id) % 2 == 0 else "cancelled"
        )
    await asyncio.sleep(1.0)
    assert await split.outbox_pending("travel") >= 4
    for lead in leads:
        assert await visit_events(system, lead.id) == []

    # A campaign goes live while campaigns' relay is down; then the sales service dies
    # too, and the relays come back while it is gone: the broker keeps the messages.
    await system.campaigns.post("/budget/top-up", {"amount_cents": 30_000})
    split.relays["campaigns"].kill()
    launch = await activated_campaign(system, "Launch", 20_000)
    await settled_campaign(system, launch, "published")
    assert await split.outbox_pending("campaigns") >= 1
    split.services["sales"].kill()
    await split.relays["travel"].restart()
    await split.relays["campaigns"].restart()
    await split.restart_service("sales")

    for index, lead in enumerate(leads):
        await lead_visit_is(system, lead.id, "booked" if index % 2 == 0 else "to_reschedule", 30)
    [live] = await promoted(system, launch, within=30)
    assert live["name"] == "Launch"
    assert await split.outbox_pending("travel") == 0
    assert await split.outbox_pending("campaigns") == 0
    await asyncio.sleep(2.0)  # redeliveries, if any, would land by now
    for index, lead in enumerate(leads):
        expected = "sales.visit_booked" if index % 2 == 0 else "sales.visit_to_reschedule"
        assert await visit_events(system, lead.id) == [expected]
    assert await event_types("promotions-live", split.where("sales")) == [
        "sales.campaign_went_live"
    ]
