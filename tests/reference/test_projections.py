"""The contexts' read models, built by the projection engine from events in a store.

Each test appends the streams a context's aggregates would write, runs the context's
projections with ``ProjectionEngine`` until they pass the head, and reads the documents
the HTTP routes serve. The searches run on both embedded stores (memory and SQLite),
whose backends implement them differently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from campaigns import domain as campaigns
from campaigns.partner import BEHAVIOUR_HEADER
from campaigns.projections import CampaignBoard
from chronik.adapters import open_database
from chronik.eventstore import EventTypes, Metadata, NewEvent
from chronik.projections import Projection, ProjectionEngine, ReadModels
from sales import domain as sales
from sales.projections import LeadAnalysis, LeadSearch, Promotions
from travel import domain as travel
from travel.projections import TripBoard

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=3)

Streams = Sequence[tuple[str, Sequence[object]]]


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"


@asynccontextmanager
async def projected(
    url: str, types: Sequence[type], projections: Sequence[Projection], streams: Streams
) -> AsyncIterator[ReadModels]:
    """The read models once ``projections`` have caught up with these streams."""
    database = await open_database(url)
    store = database.event_store(EventTypes(list(types)))
    # A short idle wait: stopping waits for the runners' idle sleep.
    engine = ProjectionEngine(store, projections, backend=database.projections(), idle_wait=0.05)
    try:
        for stream_id, events in streams:
            await store.append(stream_id, list(events))
        await engine.start()
        assert await engine.wait_until(await store.head_position(), max_wait=10.0)
        yield engine.read_models
    finally:
        await engine.stop()
        await database.close()


# -- sales -------------------------------------------------------------------------------


def lead(lead_id: str, name: str, phone: str, *events: object) -> tuple[str, list[object]]:
    return f"lead-{lead_id}", [sales.LeadInitialized(lead_id, name, phone, T0), *events]


def contacted(lead_id: str, minutes: int = 1) -> sales.Contacted:
    return sales.Contacted(lead_id, "called", T0 + timedelta(minutes=minutes))


def follow_up(lead_id: str, *, visit: bool = False) -> sales.FollowUpSet:
    return sales.FollowUpSet(lead_id, LATER, visit, "Lyon" if visit else "", T0)


def ordered(lead_id: str) -> sales.OrderSubmitted:
    return sales.OrderSubmitted(lead_id, f"order-{lead_id}", 12_000, "EUR", T0)


def paid(lead_id: str) -> sales.PaymentConfirmed:
    return sales.PaymentConfirmed(lead_id, f"order-{lead_id}", T0)


def closed(lead_id: str) -> sales.LeadClosed:
    return sales.LeadClosed(lead_id, "no", T0)


LEADS: Streams = [
    lead("a", "Ada Lovelace", "+44 20 7946 0958"),
    lead("b", "Grace Hopper", "+1 555 0100", contacted("b")),
    lead("c", "Alan Turing", "+44 161 496 0000", contacted("c"), follow_up("c")),
    lead("d", "Edsger Dijkstra", "+31 20 555 1234", contacted("d"), ordered("d")),
    lead("e", "Barbara Liskov", "+1 617 555 0199", contacted("e"), ordered("e"), paid("e")),
    lead("f", "Donald Knuth", "+1 650 555 0142", contacted("f"), closed("f")),
]


def sales_projected(url: str, streams: Streams = LEADS) -> AbstractAsyncContextManager[ReadModels]:
    return projected(url, sales.EVENTS, [LeadSearch(), LeadAnalysis()], streams)


async def names_found(rm: ReadModels, field: str, text: str) -> list[str]:
    found = await rm.search("lead_search", "leads", field, text)
    return sorted(str(d["name"]) for d in found)


class TestLeadSearch:
    @pytest.mark.parametrize(
        ("text", "names"),
        [
            ("Ada", ["Ada Lovelace"]),
            ("lovelace", ["Ada Lovelace"]),
            ("OPPE", ["Grace Hopper"]),
            (
                "a",
                [
                    "Ada Lovelace",
                    "Alan Turing",
                    "Barbara Liskov",
                    "Donald Knuth",
                    "Edsger Dijkstra",
                    "Grace Hopper",
                ],
            ),
            ("ing", ["Alan Turing"]),
            ("nobody", []),
        ],
    )
    async def test_a_lead_is_found_by_part_of_its_name_whatever_the_case(
        self, store_url: str, text: str, names: list[str]
    ) -> None:
        async with sales_projected(store_url) as rm:
            assert await names_found(rm, "name", text) == names

    @pytest.mark.parametrize(
        ("text", "names"),
        [
            ("7946", ["Ada Lovelace"]),
            ("+44", ["Ada Lovelace", "Alan Turing"]),
            ("555 01", ["Barbara Liskov", "Donald Knuth", "Grace Hopper"]),
            ("0000", ["Alan Turing"]),
        ],
    )
    async def test_a_lead_is_found_by_part_of_its_phone(
        self, store_url: str, text: str, names: list[str]
    ) -> None:
        async with sales_projected(store_url) as rm:
            assert await names_found(rm, "phone", text) == names

    @pytest.mark.parametrize("text", ["%", "_", "\\", "a%e", "L_velace"])
    async def test_wildcards_in_the_text_are_taken_literally(
        self, store_url: str, text: str
    ) -> None:
        async with sales_projected(store_url) as rm:
            assert await names_found(rm, "name", text) == []

    async def test_each_lead_shows_where_it_stands(self, store_url: str) -> None:
        async with sales_projected(store_url) as rm:
            docs = await rm.find("lead_search", "leads", limit=50)
        statuses = {d["lead_id"]: (d["status"], d["contacts"], d["order_id"]) for d in docs}
        assert statuses == {
            "a": ("new", 0, None),
            "b": ("contacted", 1, None),
            "c": ("follow_up", 1, None),
            "d": ("ordered", 1, "order-d"),
            "e": ("paid", 1, "order-e"),
            "f": ("closed", 1, None),
        }

    async def test_the_status_only_moves_forward_but_contacts_are_counted(
        self, store_url: str
    ) -> None:
        streams = [lead("a", "Ada", "12345", follow_up("a"), contacted("a", 5), contacted("a", 6))]
        async with sales_projected(store_url, streams) as rm:
            doc = await rm.get("lead_search", "leads", "a")
        assert doc is not None
        assert (doc["status"], doc["contacts"]) == ("follow_up", 2)
        assert doc["updated_at"] == (T0 + timedelta(minutes=6)).isoformat()

    async def test_changed_contact_details_are_found_and_the_old_ones_are_not(
        self, store_url: str
    ) -> None:
        changed = sales.ContactDetailsChanged("a", "Ada King", "+44 1 000 0000", T0)
        async with sales_projected(store_url, [lead("a", "Ada Lovelace", "12345", changed)]) as rm:
            assert await names_found(rm, "name", "king") == ["Ada King"]
            assert await names_found(rm, "name", "lovelace") == []
            assert await names_found(rm, "phone", "12345") == []

    async def test_an_anonymized_lead_is_no_longer_found_by_name_or_phone(
        self, store_url: str
    ) -> None:
        streams = [lead("a", "Ada Lovelace", "+44 20 7946 0958", sales.LeadAnonymized("a", T0))]
        async with sales_projected(store_url, streams) as rm:
            assert await names_found(rm, "name", "ada") == []
            assert await names_found(rm, "phone", "7946") == []
            doc = await rm.get("lead_search", "leads", "a")
        assert doc is not None
        assert (doc["name"], doc["phone"]) == ("[forgotten]", "[forgotten]")


class TestLeadAnalysis:
    async def test_the_funnel_counts_the_leads_in_each_status(self, store_url: str) -> None:
        async with sales_projected(store_url) as rm:
            funnel = await rm.get("lead_analysis", "funnel", "all")
        assert funnel == {
            "new": 1,
            "contacted": 1,
            "follow_up": 1,
            "ordered": 1,
            "paid": 1,
            "closed": 1,
        }

    async def test_the_funnel_counts_a_lead_once_however_often_it_is_contacted(
        self, store_url: str
    ) -> None:
        streams = [
            lead("a", "Ada", "12345", contacted("a"), contacted("a", 2), contacted("a", 3)),
            lead("b", "Bob", "12345", follow_up("b"), contacted("b")),
        ]
        async with sales_projected(store_url, streams) as rm:
            funnel = await rm.get("lead_analysis", "funnel", "all")
        assert funnel is not None
        counts = {status: n for status, n in funnel.items() if n}
        assert counts == {"contacted": 1, "follow_up": 1}
        assert sum(funnel.values()) == 2

    async def test_follow_ups_and_visits_are_counted_per_lead(self, store_url: str) -> None:
        streams = [
            lead("a", "Ada", "12345", follow_up("a"), follow_up("a", visit=True), follow_up("a")),
            lead("b", "Bob", "12345", follow_up("b", visit=True)),
            lead("c", "Cyd", "12345", contacted("c")),
        ]
        async with sales_projected(store_url, streams) as rm:
            a = await rm.get("lead_analysis", "follow_ups", "a")
            b = await rm.get("lead_analysis", "follow_ups", "b")
            c = await rm.get("lead_analysis", "follow_ups", "c")
        assert a == {"count": 3, "visits": 1}
        assert b == {"count": 1, "visits": 1}
        assert c is None


class TestWhatTravelAndCampaignsToldSales:
    async def test_a_lead_shows_its_latest_visit_as_travel_reported_it(
        self, store_url: str
    ) -> None:
        streams = [
            lead("a", "Ada Lovelace", "12345", follow_up("a", visit=True)),
            lead(
                "b",
                "Grace Hopper",
                "12345",
                follow_up("b", visit=True),
                sales.VisitBooked("b", "t1", T0),
                sales.VisitToReschedule("b", "t1", "rejected", T0 + timedelta(hours=1)),
            ),
            lead("c", "Alan Turing", "12345", sales.VisitBooked("c", "t2", T0)),
        ]
        async with sales_projected(store_url, streams) as rm:
            docs = await rm.find("lead_search", "leads", limit=10)
        assert {d["lead_id"]: d["visit"] for d in docs} == {
            "a": None,
            "b": "to_reschedule",
            "c": "booked",
        }

    async def test_promotions_list_each_live_campaign_once(self, store_url: str) -> None:
        streams = [
            (
                "promotions-live",
                [
                    sales.CampaignWentLive("c1", "Spring sale", T0),
                    sales.CampaignWentLive("c2", "Summer sale", T0 + timedelta(days=1)),
                ],
            )
        ]
        async with projected(store_url, sales.EVENTS, [Promotions()], streams) as rm:
            live = await rm.find("promotions", "live", order_by="since")
        assert [(d["campaign_id"], d["name"]) for d in live] == [
            ("c1", "Spring sale"),
            ("c2", "Summer sale"),
        ]


# -- campaigns ---------------------------------------------------------------------------


def board(url: str, streams: Streams) -> AbstractAsyncContextManager[ReadModels]:
    return projected(url, campaigns.EVENTS, [CampaignBoard()], streams)


def created(campaign_id: str, behaviour: str = "confirm") -> NewEvent:
    """A campaign's creation, with the demo's partner behaviour as the append's header."""
    return NewEvent(
        campaigns.CampaignCreated(campaign_id, f"Ad {campaign_id}", 1_000, T0),
        metadata=Metadata(headers={BEHAVIOUR_HEADER: behaviour}),
    )


def activating(campaign_id: str) -> campaigns.ActivationRequested:
    return campaigns.ActivationRequested(campaign_id, 1_000, T0)


class TestCampaignBoard:
    async def test_the_budget_shows_total_reserved_and_available(self, store_url: str) -> None:
        budget = [
            campaigns.BudgetIncreased(1_200, "order-1", T0),
            campaigns.BudgetIncreased(5_000, "top-up", T0),
            campaigns.BudgetReserved("c1", 1_000, T0),
            campaigns.BudgetReserved("c2", 3_000, T0),
            campaigns.BudgetRefused("c3", 9_000, 2_200, T0),
            campaigns.BudgetReleased("c2", 3_000, T0),
        ]
        async with board(store_url, [("budget-main", budget)]) as rm:
            figures = await rm.get("campaign_board", "budget", "main")
        assert figures == {"total_cents": 6_200, "reserved_cents": 1_000, "available_cents": 5_200}

    async def test_a_budget_that_only_grew_has_nothing_reserved(self, store_url: str) -> None:
        budget = [campaigns.BudgetIncreased(1_200, "order-1", T0)]
        async with board(store_url, [("budget-main", budget)]) as rm:
            figures = await rm.get("campaign_board", "budget", "main")
        assert figures == {"total_cents": 1_200, "reserved_cents": 0, "available_cents": 1_200}

    async def test_each_campaign_shows_its_status_reference_and_reason(
        self, store_url: str
    ) -> None:
        streams: Streams = [
            ("campaign-c1", [created("c1")]),
            ("campaign-c2", [created("c2"), activating("c2")]),
            (
                "campaign-c3",
                [created("c3"), activating("c3"), campaigns.PublicationConfirmed("c3", "AD-7", T0)],
            ),
            (
                "campaign-c4",
                [
                    created("c4", "reject"),
                    activating("c4"),
                    campaigns.PublicationRejected("c4", "declined", T0),
                ],
            ),
            (
                "campaign-c5",
                [
                    created("c5", "silent"),
                    activating("c5"),
                    campaigns.CampaignCancelled("c5", "no answer", T0),
                ],
            ),
        ]
        async with board(store_url, streams) as rm:
            docs = await rm.find("campaign_board", "campaigns", limit=10)
            published = await rm.find("campaign_board", "campaigns", where={"status": "published"})
        shown = {d["campaign_id"]: (d["status"], d["partner_reference"], d["reason"]) for d in docs}
        assert shown == {
            "c1": ("draft", None, None),
            "c2": ("activating", None, None),
            "c3": ("published", "AD-7", None),
            "c4": ("rejected", None, "declined"),
            "c5": ("cancelled", None, "no answer"),
        }
        assert [d["campaign_id"] for d in published] == ["c3"]
        assert {d["partner_behaviour"] for d in docs} == {"confirm", "reject", "silent"}


# -- travel ------------------------------------------------------------------------------


def requested(trip_id: str) -> travel.TripRequested:
    return travel.TripRequested(trip_id, "Grace", "Lyon", date(2026, 6, 1), "L1", T0)


FLIGHT, HOTEL = "FL-100", "HT-101"


def booked(trip_id: str) -> list[object]:
    return [
        requested(trip_id),
        travel.FlightBooked(trip_id, FLIGHT, T0),
        travel.HotelBooked(trip_id, HOTEL, T0),
    ]


class TestTripBoard:
    async def test_each_trip_shows_its_status_and_bookings(self, store_url: str) -> None:
        streams: Streams = [
            ("trip-t1", [requested("t1")]),
            ("trip-t2", [requested("t2"), travel.FlightBooked("t2", FLIGHT, T0)]),
            ("trip-t3", [*booked("t3"), travel.ApprovalRequested("t3", T0)]),
            (
                "trip-t4",
                [
                    *booked("t4"),
                    travel.ApprovalRequested("t4", T0),
                    travel.TripApproved("t4", "m", T0),
                ],
            ),
            (
                "trip-t5",
                [
                    *booked("t5"),
                    travel.ApprovalRequested("t5", T0),
                    travel.TripApproved("t5", "m", T0),
                    travel.TripConfirmed("t5", T0),
                ],
            ),
        ]
        async with projected(store_url, travel.EVENTS, [TripBoard()], streams) as rm:
            docs = await rm.find("trip_board", "trips", limit=10)
        shown = {d["trip_id"]: (d["status"], d["flight"], d["hotel"]) for d in docs}
        assert shown == {
            "t1": ("requested", None, None),
            "t2": ("booking", FLIGHT, None),
            "t3": ("awaiting_approval", FLIGHT, HOTEL),
            "t4": ("approved", FLIGHT, HOTEL),
            "t5": ("confirmed", FLIGHT, HOTEL),
        }
        assert {(d["destination"], d["depart_on"], d["lead_id"]) for d in docs} == {
            ("Lyon", "2026-06-01", "L1")
        }

    async def test_a_rejected_and_cancelled_trip_shows_nothing_booked_and_why(
        self, store_url: str
    ) -> None:
        events = [
            *booked("t1"),
            travel.ApprovalRequested("t1", T0),
            travel.TripRejected("t1", "the manager", "too dear", T0),
            travel.TripCancelled("t1", "rejected by the manager: too dear", T0),
            travel.HotelCancelled("t1", HOTEL, T0),
            travel.FlightCancelled("t1", FLIGHT, T0),
        ]
        async with projected(store_url, travel.EVENTS, [TripBoard()], [("trip-t1", events)]) as rm:
            doc = await rm.get("trip_board", "trips", "t1")
        assert doc is not None
        assert (doc["status"], doc["flight"], doc["hotel"], doc["reason"]) == (
            "cancelled",
            None,
            None,
            "rejected by the manager: too dear",
        )

    async def test_a_rejected_trip_shows_the_manager_s_reason(self, store_url: str) -> None:
        events = [
            *booked("t1"),
            travel.ApprovalRequested("t1", T0),
            travel.TripRejected("t1", "the manager", "too dear", T0),
        ]
        async with projected(store_url, travel.EVENTS, [TripBoard()], [("trip-t1", events)]) as rm:
            doc = await rm.get("trip_board", "trips", "t1")
        assert doc is not None
        assert (doc["status"], doc["reason"]) == ("rejected", "too dear")

    async def test_a_declined_visit_shows_the_day_sales_asked_for_and_why(
        self, store_url: str
    ) -> None:
        honolulu = timezone(timedelta(hours=-10))
        on = datetime(9999, 12, 31, 23, 59, 59, tzinfo=honolulu)
        declined = travel.VisitDeclined("t1", "sales team", "Lyon", on, "L1", "no UTC day", T0)
        async with projected(
            store_url, travel.EVENTS, [TripBoard()], [("trip-t1", [declined])]
        ) as rm:
            doc = await rm.get("trip_board", "trips", "t1")
        assert doc is not None
        assert (doc["status"], doc["depart_on"], doc["lead_id"], doc["reason"]) == (
            "declined",
            "9999-12-31",
            "L1",
            "no UTC day",
        )

    async def test_trips_are_listed_by_status(self, store_url: str) -> None:
        streams: Streams = [
            ("trip-t1", [requested("t1")]),
            ("trip-t2", [requested("t2"), travel.TripCancelled("t2", "no flight", T0)]),
            ("trip-t3", [requested("t3"), travel.TripCancelled("t3", "no hotel", T0)]),
        ]
        async with projected(store_url, travel.EVENTS, [TripBoard()], streams) as rm:
            cancelled = await rm.find("trip_board", "trips", where={"status": "cancelled"})
            count = await rm.count("trip_board", "trips", where={"status": "requested"})
        assert sorted(d["trip_id"] for d in cancelled) == ["t2", "t3"]
        assert count == 1
