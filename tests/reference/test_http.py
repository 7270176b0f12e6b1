"""Each reference context over HTTP, in process: commands, their processes, their reads.

A runtime of one context on the memory store runs every role; a client talks to its app
through httpx's ASGI transport. A read sends back the position of the last write as
``Chronik-Min-Position`` to read its own writes; what a process does in the background
is awaited by polling, with a deadline.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import pytest

import campaigns
import sales
import travel
from chronik.errors import DomainError, StoreUnavailableError, SubjectForgottenError
from chronik.http.app import create_app
from chronik.http.problems import PROBLEM
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import Settings
from sales import handlers as sales_handlers
from sales.commands import ContactLead, CreateLead
from sales.domain import ContactDetailsChanged

Json = Any


def settings(**values: Any) -> Settings:
    """Settings of these values and defaults, whatever the environment says."""
    return Settings.model_validate({"event_store_url": "memory://", "run": "all", **values})


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each kind."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    return f"{postgres_url}?schema={schema}"


async def ready(runtime: Runtime, within: float = 10.0) -> None:
    """Wait until the runtime says it is ready (its projections have started)."""
    deadline = asyncio.get_running_loop().time() + within
    while reasons := await runtime.readiness():
        assert asyncio.get_running_loop().time() < deadline, reasons
        await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(
    spec: ServiceSpec, *, settle: bool = True, store_url: str = "memory://"
) -> AsyncIterator[Service]:
    runtime = Runtime(settings(event_store_url=store_url), [spec])
    await runtime.start()
    if settle:
        await ready(runtime)
    transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ref") as client:
            yield Service(runtime, client)
    finally:
        await runtime.stop()


class Service:
    """A started runtime and a client of its app, remembering the last write's position."""

    def __init__(self, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.client = client
        self.position = "0"

    async def write(self, method: str, path: str, body: Json = None, *, expect: int = 200) -> Json:
        response = await self.client.request(method, path, json=body)
        assert response.status_code == expect, (method, path, response.text)
        if response.status_code < 300:
            self.position = response.headers["chronik-position"]
        return response.json()

    async def read(self, path: str, *, expect: int = 200) -> Json:
        response = await self.client.get(path, headers={"Chronik-Min-Position": self.position})
        assert response.status_code == expect, (path, response.text)
        return response.json()

    async def eventually(
        self, path: str, done: Callable[[Json], bool], *, within: float = 10.0
    ) -> Json:
        """The document at ``path`` once ``done`` holds (a process works in the background)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            response = await self.client.get(path)
            seen = response.json()
            if response.status_code == 200 and done(seen):
                return seen
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{path} never got there: {seen}")
            await asyncio.sleep(0.05)


def status_is(*statuses: str) -> Callable[[Json], bool]:
    return lambda doc: doc.get("status") in statuses


def in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


# -- sales -------------------------------------------------------------------------------


async def new_lead(svc: Service) -> str:
    body = {"name": "Ada", "phone": "12345"}
    lead: str = (await svc.write("POST", "/leads", body, expect=201))["id"]
    return lead


class TestSales:
    async def test_a_lead_is_found_by_part_of_its_name_or_phone_whatever_the_case(self) -> None:
        async with serving(sales.spec()) as svc:
            ada = await svc.write(
                "POST", "/leads", {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"}, expect=201
            )
            await svc.write(
                "POST", "/leads", {"name": "Grace Hopper", "phone": "+1 555 0100"}, expect=201
            )
            by_name = await svc.read("/leads?q=LOVEL")
            by_phone = await svc.read("/leads?q=7946")
            everyone = await svc.read("/leads?q=e")
        assert [d["lead_id"] for d in by_name] == [ada["id"]]
        assert [d["lead_id"] for d in by_phone] == [ada["id"]]
        assert sorted(d["name"] for d in everyone) == ["Ada Lovelace", "Grace Hopper"]

    async def test_a_lead_goes_from_call_to_payment_and_the_funnel_follows(self) -> None:
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            await svc.write("POST", f"/leads/{lead}/contact", {"note": "interested"})
            await svc.write("POST", f"/leads/{lead}/follow-up", {"on": in_days(2)})
            await svc.write(
                "POST", f"/leads/{lead}/orders", {"amount_cents": 12_000, "currency": "EUR"}
            )
            order = (await svc.read(f"/leads/{lead}"))["order_id"]
            await svc.write("POST", f"/leads/{lead}/payment", {"order_id": order})
            view = await svc.read(f"/leads/{lead}")
            funnel = await svc.read("/funnel")
            state = await svc.read(f"/leads/{lead}/state")
            as_of_2 = await svc.read(f"/leads/{lead}/state?version=2")
        assert (view["status"], view["contacts"]) == ("paid", 1)
        assert {k: v for k, v in funnel["counts"].items() if v} == {"paid": 1}
        assert (state["status"], state["version"], state["follow_ups"]) == ("paid", 5, 1)
        assert (as_of_2["status"], as_of_2["order_id"]) == ("contacted", None)

    async def test_a_rule_the_lead_refuses_is_a_409_problem(self) -> None:
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            await svc.write("POST", f"/leads/{lead}/close", {"reason": "no"})
            refused = await svc.client.post(f"/leads/{lead}/contact", json={"note": "hello?"})
            past = await svc.client.post(f"/leads/{lead}/anonymize")
        assert refused.status_code == 409
        assert refused.headers["content-type"] == PROBLEM
        assert "closed" in refused.json()["detail"]
        assert past.status_code == 200  # anonymizing works even when closed

    @pytest.mark.parametrize(
        "on", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00", "in 731 days"]
    )
    async def test_a_follow_up_date_outside_the_published_window_is_a_409_naming_the_rule(
        self, on: str
    ) -> None:
        # Travel turns a visit into a trip: sales lets out no date it could not book.
        when = in_days(731) if on == "in 731 days" else on
        body = {"on": when, "needs_visit": True, "city": "Lyon"}
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            refused = await svc.client.post(f"/leads/{lead}/follow-up", json=body)
            history = await svc.read(f"/leads/{lead}/history")
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert "in the future and at most 730 days ahead" in refused.json()["detail"]
        assert [e["type"] for e in history] == ["sales.lead_initialized"]

    async def test_a_phone_that_is_no_phone_number_is_a_422_naming_the_field(self) -> None:
        # The request model carries ContactDetails' rule, so the document says it too.
        async with serving(sales.spec()) as svc:
            refused = await svc.client.post("/leads", json={"name": "Ada", "phone": "call me"})
        assert refused.status_code == 422
        [error] = refused.json()["errors"]
        assert error["loc"] == ["body", "phone"]
        assert "pattern" in error["msg"]

    async def test_an_anonymized_lead_reads_as_forgotten(self) -> None:
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            await svc.write("POST", f"/leads/{lead}/anonymize")
            view = await svc.read(f"/leads/{lead}")
            found = await svc.read("/leads?q=ada")
            history = await svc.read(f"/leads/{lead}/history")
        assert (view["name"], view["phone"]) == ("[forgotten]", "[forgotten]")
        assert found == []
        assert "Ada" not in str(history)

    async def test_an_anonymized_lead_refuses_new_contact_details_and_reads_as_forgotten(
        self, store_url: str
    ) -> None:
        async with serving(sales.spec(), store_url=store_url) as svc:
            lead = await new_lead(svc)
            await svc.write("POST", f"/leads/{lead}/anonymize")
            refused = await svc.client.put(
                f"/leads/{lead}/contact-details", json={"name": "Ada King", "phone": "54321"}
            )
            # Other commands go on; reads never fail on the forgotten data.
            await svc.write("POST", f"/leads/{lead}/contact", {"note": "still a customer"})
            history = await svc.read(f"/leads/{lead}/history")
            state = await svc.read(f"/leads/{lead}/state")
            first = await svc.read(f"/leads/{lead}/state?version=1")
            view = await svc.read(f"/leads/{lead}")
            assert await svc.runtime.readiness() == []
        assert refused.status_code == 409
        assert refused.headers["content-type"] == PROBLEM
        assert "anonymized" in refused.json()["detail"]
        assert [h["type"] for h in history] == [
            "sales.lead_initialized",
            "sales.lead_anonymized",
            "sales.contacted",
        ]
        assert (history[0]["data"]["name"], history[0]["data"]["phone"]) == (
            "[forgotten]",
            "[forgotten]",
        )
        assert (state["version"], state["name"], state["contacts"]) == (3, "", 1)
        assert (first["name"], first["phone"]) == ("[forgotten]", "[forgotten]")
        assert (view["name"], view["contacts"]) == ("[forgotten]", 1)

    async def test_anonymizing_forgets_with_its_event_so_a_retry_cannot_leave_the_name(
        self, store_url: str
    ) -> None:
        async with serving(sales.spec(), store_url=store_url) as svc:
            lead = await new_lead(svc)
            store = svc.runtime.store

            async def blocked(subject: str) -> None:
                raise StoreUnavailableError("the key table is locked")

            # A forget run as a step of its own fails here, as when its delete was
            # blocked and the service killed; the retry replays the first answer.
            store.forget = blocked  # type: ignore[method-assign]
            key = {"Idempotency-Key": "forget-me-1"}
            first = await svc.client.post(f"/leads/{lead}/anonymize", headers=key)
            retried = await svc.client.post(f"/leads/{lead}/anonymize", headers=key)
            history = await svc.read(f"/leads/{lead}/history")
            unfinished = await store.check_forgetting()
            # The store itself refuses the lead's personal data from now on.
            renamed = ContactDetailsChanged(lead, "Ada King", "54321", datetime.now(UTC))
            with pytest.raises(SubjectForgottenError):
                await store.append(sales_handlers.PREFIX + lead, [renamed])
        assert (first.status_code, retried.status_code) == (200, 200)
        assert history[0]["data"]["name"] == "[forgotten]"
        assert unfinished == []

    async def test_searching_with_a_status_and_a_limit_finds_the_lead_of_that_status(
        self,
    ) -> None:
        async with serving(sales.spec()) as svc:
            ids = iter(["a1", "z9"])
            h = sales_handlers.LeadHandlers(svc.runtime.store, new_id=lambda: next(ids))
            await h.create_lead(CreateLead("Ada Able", "12345"))
            await h.create_lead(CreateLead("Ada Zed", "12345"))
            _, done = await h.contact(ContactLead("z9", "hi"))
            svc.position = str(done.position)
            found = await svc.read("/leads?q=ada&status=contacted&limit=1")
        assert [d["lead_id"] for d in found] == ["z9"]

    async def test_an_order_of_a_boolean_amount_is_refused(self) -> None:
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            order = await svc.client.post(
                f"/leads/{lead}/orders", json={"amount_cents": True, "currency": "EUR"}
            )
        assert order.status_code == 422, order.text

    async def test_the_state_as_of_a_version_and_a_time_is_not_refused(self) -> None:
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            answer = await svc.client.get(
                f"/leads/{lead}/state", params={"version": 1, "at": later}
            )
        assert answer.status_code == 200, answer.text

    @pytest.mark.parametrize("store", ["memory", "sqlite"])
    async def test_the_state_at_any_time_is_the_lead_then_or_a_404_never_a_500(
        self, store: str, tmp_path: Path
    ) -> None:
        url = "memory://" if store == "memory" else f"sqlite:///{tmp_path}/sales.db"
        async with serving(sales.spec(), store_url=url) as svc:
            lead = await new_lead(svc)
            await svc.write("POST", f"/leads/{lead}/contact", {"note": "interested"})
            answers = {
                at: await svc.client.get(f"/leads/{lead}/state", params={"at": at})
                for at in (
                    "9999-12-31T23:59:59-10:00",
                    "9999-12-31T23:59:59.999999+00:00",
                    "0001-01-01T00:00:00+10:00",
                    "0001-01-01T00:00:00Z",
                )
            }
            with_version = await svc.client.get(
                f"/leads/{lead}/state", params={"at": "9999-12-31T23:59:59-10:00", "version": 1}
            )
        future, last, past, first = answers.values()
        assert (future.status_code, future.json()["version"]) == (200, 2), future.text
        assert (last.status_code, last.json()["version"]) == (200, 2), last.text
        assert (with_version.status_code, with_version.json()["version"]) == (200, 1)
        for before in (past, first):
            assert before.status_code == 404, before.text
            assert before.headers["content-type"] == PROBLEM


# -- campaigns ---------------------------------------------------------------------------


async def new_campaign(svc: Service, behaviour: str, cost: int = 5_000) -> str:
    body = {"name": f"{behaviour} campaign", "cost_cents": cost, "partner_behaviour": behaviour}
    campaign: str = (await svc.write("POST", "/campaigns", body, expect=201))["id"]
    return campaign


class TestCampaigns:
    async def test_an_activated_campaign_is_published_and_its_cost_reserved(self) -> None:
        async with serving(campaigns.spec()) as svc:
            await svc.write("POST", "/budget/top-up", {"amount_cents": 20_000})
            campaign = await new_campaign(svc, "confirm")
            await svc.write("POST", f"/campaigns/{campaign}/activate")
            published = await svc.eventually(f"/campaigns/{campaign}", status_is("published"))
            process = await svc.eventually(
                f"/campaigns/{campaign}/publishing", lambda p: p["finished"]
            )
            budget = await svc.read("/budget")
        assert published["partner_reference"]
        assert (process["status"], process["timeouts"]) == ("published", {})
        assert budget == {"total_cents": 20_000, "reserved_cents": 5_000, "available_cents": 15_000}

    @pytest.mark.parametrize("behaviour", ["reject", "fail"])
    async def test_a_partner_that_says_no_gets_the_budget_released(self, behaviour: str) -> None:
        async with serving(campaigns.spec()) as svc:
            await svc.write("POST", "/budget/top-up", {"amount_cents": 20_000})
            campaign = await new_campaign(svc, behaviour)
            await svc.write("POST", f"/campaigns/{campaign}/activate")
            rejected = await svc.eventually(f"/campaigns/{campaign}", status_is("rejected"))
            budget = await svc.eventually("/budget", lambda b: b["reserved_cents"] == 0)
        assert "the partner declined" in rejected["reason"]
        assert budget == {"total_cents": 20_000, "reserved_cents": 0, "available_cents": 20_000}

    async def test_a_campaign_dearer_than_the_budget_is_rejected_without_reserving(self) -> None:
        async with serving(campaigns.spec()) as svc:
            await svc.write("POST", "/budget/top-up", {"amount_cents": 1_000})
            campaign = await new_campaign(svc, "confirm", cost=5_000)
            await svc.write("POST", f"/campaigns/{campaign}/activate")
            rejected = await svc.eventually(f"/campaigns/{campaign}", status_is("rejected"))
            budget = await svc.read("/budget")
        assert rejected["reason"] == "budget: 1000 cents available"
        assert budget["reserved_cents"] == 0

    async def test_a_campaign_is_activated_once(self) -> None:
        async with serving(campaigns.spec()) as svc:
            campaign = await new_campaign(svc, "silent")
            await svc.write("POST", f"/campaigns/{campaign}/activate")
            again = await svc.client.post(f"/campaigns/{campaign}/activate")
        assert again.status_code == 409
        assert "only a draft can be activated" in again.json()["detail"]

    async def test_a_silent_partner_leaves_the_partner_timeout_pending(self) -> None:
        async with serving(campaigns.spec()) as svc:
            await svc.write("POST", "/budget/top-up", {"amount_cents": 20_000})
            campaign = await new_campaign(svc, "silent")
            await svc.write("POST", f"/campaigns/{campaign}/activate")
            process = await svc.eventually(
                f"/campaigns/{campaign}/publishing", status_is("publishing")
            )
        assert [t["name"] for t in process["timeouts"].values()] == ["partner"]

    async def test_a_boolean_amount_is_refused(self) -> None:
        async with serving(campaigns.spec()) as svc:
            top_up = await svc.client.post("/budget/top-up", json={"amount_cents": True})
            create = await svc.client.post(
                "/campaigns",
                json={"name": "Ad", "cost_cents": True, "partner_behaviour": "confirm"},
            )
        assert (top_up.status_code, create.status_code) == (422, 422)


# -- travel ------------------------------------------------------------------------------


async def new_trip(svc: Service, simulate: str = "none") -> str:
    body = {
        "traveller": "Grace",
        "destination": "Lyon",
        "depart_on": (datetime.now(UTC).date() + timedelta(days=30)).isoformat(),
        "simulate": simulate,
    }
    trip: str = (await svc.write("POST", "/trips", body, expect=201))["id"]
    return trip


class TestTravel:
    async def test_an_approved_trip_is_confirmed_with_its_bookings(self) -> None:
        async with serving(travel.spec()) as svc:
            trip = await new_trip(svc)
            awaiting = await svc.eventually(f"/trips/{trip}", status_is("awaiting_approval"))
            booking = await svc.read(f"/trips/{trip}/booking")
            await svc.write("POST", f"/trips/{trip}/approve", {"by": "the manager"})
            confirmed = await svc.eventually(f"/trips/{trip}", status_is("confirmed"))
            finished = await svc.eventually(f"/trips/{trip}/booking", lambda b: b["finished"])
        assert awaiting["flight"] and awaiting["hotel"]
        assert [t["name"] for t in booking["timeouts"].values()] == ["approval"]
        assert (confirmed["flight"], confirmed["hotel"]) == (awaiting["flight"], awaiting["hotel"])
        assert (finished["status"], finished["timeouts"]) == ("confirmed", {})

    async def test_a_rejected_trip_is_cancelled_with_nothing_left_booked(self) -> None:
        async with serving(travel.spec()) as svc:
            trip = await new_trip(svc)
            await svc.eventually(f"/trips/{trip}", status_is("awaiting_approval"))
            await svc.write("POST", f"/trips/{trip}/reject", {"by": "the manager", "reason": "no"})
            cancelled = await svc.eventually(
                f"/trips/{trip}",
                lambda t: t["status"] == "cancelled" and t["flight"] is None and t["hotel"] is None,
            )
        assert cancelled["reason"] == "rejected by the manager: no"

    @pytest.mark.parametrize(
        ("simulate", "reason"),
        [("no_flight", "no flight: no seats to Lyon"), ("no_hotel", "no hotel: no rooms in Lyon")],
    )
    async def test_a_failed_booking_cancels_the_trip(self, simulate: str, reason: str) -> None:
        async with serving(travel.spec()) as svc:
            trip = await new_trip(svc, simulate)
            cancelled = await svc.eventually(
                f"/trips/{trip}", lambda t: t["status"] == "cancelled" and t["flight"] is None
            )
        assert (cancelled["reason"], cancelled["hotel"]) == (reason, None)

    async def test_a_trip_not_awaiting_approval_cannot_be_approved(self) -> None:
        async with serving(travel.spec()) as svc:
            trip = await new_trip(svc, "no_flight")
            await svc.eventually(f"/trips/{trip}", status_is("cancelled"))
            refused = await svc.client.post(f"/trips/{trip}/approve", json={"by": "the manager"})
        assert refused.status_code == 409
        assert refused.json()["detail"] == f"trip {trip} is cancelled: nothing to approve"

    async def test_a_trip_departing_in_the_past_is_refused(self) -> None:
        async with serving(travel.spec()) as svc:
            refused = await svc.client.post(
                "/trips", json={"traveller": "G", "destination": "L", "depart_on": "2000-01-01"}
            )
        assert refused.status_code == 409
        assert refused.json()["detail"] == "a trip cannot depart in the past"


# -- what any context's reads and documents promise --------------------------------------

READS: list[tuple[Callable[[], ServiceSpec], str]] = [
    (sales.spec, "/leads"),
    (sales.spec, "/funnel"),
    (campaigns.spec, "/budget"),
    (campaigns.spec, "/campaigns"),
    (travel.spec, "/trips"),
]


@pytest.mark.parametrize(("spec", "path"), READS, ids=[p for _, p in READS])
async def test_a_read_right_after_the_start_is_never_a_server_error(
    spec: Callable[[], ServiceSpec], path: str
) -> None:
    async with serving(spec(), settle=False) as svc:
        answer = await svc.client.get(path)
    assert answer.status_code in (200, 503), answer.text
    assert answer.status_code == 200 or answer.headers["retry-after"]


async def document(spec: ServiceSpec) -> Json:
    async with serving(spec) as svc:
        return await svc.read("/openapi.json")


@pytest.mark.parametrize(
    "body",
    [{"name": "Ada", "phone": "abcde"}, {"name": "   ", "phone": "12345"}],
    ids=["letters for a phone", "a blank name"],
)
async def test_the_lead_document_refuses_what_the_lead_refuses(body: dict[str, str]) -> None:
    schema = await document(sales.spec())
    new_lead = {**schema["components"]["schemas"]["NewLead"], "components": schema["components"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, new_lead)


class TestBrokenRulesHaveProblemTypes:
    """Each broken rule answers 409 with a problem type of its own: clients branch on it."""

    async def test_contacting_a_closed_lead_answers_lead_closed(self) -> None:
        async with serving(sales.spec()) as svc:
            lead = await new_lead(svc)
            await svc.write("POST", f"/leads/{lead}/close", {"reason": "no"})
            refused = await svc.client.post(f"/leads/{lead}/contact", json={"note": "hi"})
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == "tag:chronik.dev,2026:reference/sales/lead-closed"
        assert problem["detail"] == f"lead {lead} is closed"

    async def test_activating_a_campaign_twice_answers_campaign_not_draft(self) -> None:
        async with serving(campaigns.spec()) as svc:
            body = {"name": "Ad", "cost_cents": 100}
            campaign = (await svc.write("POST", "/campaigns", body, expect=201))["id"]
            await svc.write("POST", f"/campaigns/{campaign}/activate")
            refused = await svc.client.post(f"/campaigns/{campaign}/activate")
        assert refused.status_code == 409
        assert (
            refused.json()["type"] == "tag:chronik.dev,2026:reference/campaigns/campaign-not-draft"
        )

    async def test_approving_a_trip_not_awaiting_approval_answers_not_awaiting_approval(
        self,
    ) -> None:
        async with serving(travel.spec(), settle=False) as svc:
            depart = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
            body = {"traveller": "Grace", "destination": "Lyon", "depart_on": depart}
            trip = (await svc.write("POST", "/trips", body, expect=201))["id"]
            await svc.eventually(f"/trips/{trip}", status_is("awaiting_approval"))
            await svc.write("POST", f"/trips/{trip}/approve", {"by": "the manager"})
            refused = await svc.client.post(f"/trips/{trip}/approve", json={"by": "the manager"})
        assert refused.status_code == 409
        assert (
            refused.json()["type"] == "tag:chronik.dev,2026:reference/travel/not-awaiting-approval"
        )

    @pytest.mark.parametrize("context", ["sales", "campaigns", "travel"])
    def test_every_rule_of_a_context_declares_a_type_of_its_own(self, context: str) -> None:
        domain = importlib.import_module(f"{context}.domain")
        rules = [
            kind
            for kind in vars(domain).values()
            if isinstance(kind, type)
            and issubclass(kind, DomainError)
            and kind.__module__ == domain.__name__
        ]
        assert rules, context
        types = [rule.problem_type for rule in rules]
        base = f"tag:chronik.dev,2026:reference/{context}/"
        assert all(t.startswith(base) and t != base for t in types), types
        assert len(set(types)) == len(types), types

    async def test_an_unknown_status_is_refused_naming_the_choices(self) -> None:
        async with serving(sales.spec()) as svc:
            refused = await svc.client.get("/leads", params={"status": "lost"})
        assert refused.status_code == 422
        assert "contacted" in refused.text
