"""Each reference context against its own OpenAPI document, with schemathesis, in process.

One context at a time (sales, campaigns, travel), as the split deployment runs them:
a runtime of that context alone on the memory store, running every role, so commands
start processes and the projections serve the reads. Each runtime is seeded with a few
aggregates, and about half the generated requests that name an aggregate are aimed at
one of them, so the commands meet real state and not only 404s. The checks: no answer
is a server error, and each answer's status, content type, headers and body are the
documented ones; an error is problem details of its status.

Schemathesis reaches an ASGI app on an event loop of its own (a thread), so a runtime is
started there, by the app's lifespan; its pytest plugin ends every lifespan after each
test, so each operation meets a fresh runtime. The document is built by ``create_app``
on a runtime started briefly at import (``from_asgi`` would start the lifespan during
collection and keep that runtime until the first test ends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Receive, Scope, Send

import campaigns
import sales
import travel
from campaigns import commands as campaigns_commands
from campaigns import handlers as campaigns_handlers
from campaigns.partner import FakePartner
from chronik.eventstore import Metadata
from chronik.http.app import create_app
from chronik.http.problems import PROBLEM, Problem
from chronik.processes import VirtualClock
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import Settings
from sales import commands as sales_commands
from sales import handlers as sales_handlers
from travel import commands as travel_commands
from travel import handlers as travel_handlers
from travel.bookings import SIMULATE_HEADER, Bookings

SpecFactory = Callable[[], ServiceSpec]
Seed = Callable[[Runtime], Awaitable[None]]
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def settings(**values: Any) -> Settings:
    """Settings of these values and defaults, whatever the environment says."""
    return Settings.model_validate({"event_store_url": "memory://", **values})


class ContextService:
    """An ASGI app of one context's seeded runtime, started and stopped by the lifespan.

    Schemathesis' pytest plugin ends every lifespan after each test, so each API
    operation meets a fresh runtime holding only the seeded aggregates.
    """

    def __init__(self, spec: SpecFactory, seed: Seed, **values: Any) -> None:
        self.spec = spec
        self.seed = seed
        self.values = values
        self.runtime: Runtime | None = None
        self.app: FastAPI | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.app is not None, "the lifespan was not started"
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.runtime = Runtime(settings(run="all", **self.values), [self.spec()])
        await self.runtime.start()
        await self.seed(self.runtime)
        # Serve once ready: a read before the projections started is pinned in test_http.py.
        deadline = self.loop.time() + 10.0
        while reasons := await self.runtime.readiness():
            assert self.loop.time() < deadline, reasons
            await asyncio.sleep(0.01)
        self.app = create_app(self.runtime)

    async def _stop(self) -> None:
        runtime, self.runtime, self.app = self.runtime, None, None
        if runtime is not None:
            await runtime.stop()

    def close(self) -> None:
        """Stop a runtime still running, on the loop it runs on."""
        if self.runtime is not None and self.loop is not None:
            done: Future[None] = asyncio.run_coroutine_threadsafe(self._stop(), self.loop)
            done.result(timeout=30)


# -- what each runtime holds before the first request ------------------------------------

#: aggregates the seeds create, by path parameter: about half the generated requests
#: that name one are sent to one of these instead (the others meet a 404)
SEEDED: dict[str, tuple[str, ...]] = {
    "lead_id": ("ada", "bob"),
    "campaign_id": ("spring", "summer"),
    "trip_id": ("lyon", "nice"),
}


async def seed_sales(runtime: Runtime) -> None:
    ids = iter(["ada", "1", "bob"])
    h = sales_handlers.LeadHandlers(runtime.store, clock=VirtualClock(T0), new_id=lambda: next(ids))
    await h.create_lead(sales_commands.CreateLead("Ada Lovelace", "12345"))
    await h.contact(sales_commands.ContactLead("ada", "called"))
    await h.submit_order(sales_commands.SubmitOrder("ada", 12_000, "EUR"))
    await h.create_lead(sales_commands.CreateLead("Bob", "+1 555 0100"))


async def seed_campaigns(runtime: Runtime) -> None:
    ids = iter(["spring", "summer"])
    h = campaigns_handlers.CampaignHandlers(runtime.store, FakePartner(), new_id=lambda: next(ids))
    await h.top_up(campaigns_commands.TopUpBudget(1_000_000))
    await h.create_campaign(campaigns_commands.CreateCampaign("Spring sale", 5_000))
    await h.create_campaign(campaigns_commands.CreateCampaign("Summer sale", 7_000))
    await h.activate(campaigns_commands.ActivateCampaign("summer"))


async def seed_travel(runtime: Runtime) -> None:
    ids = iter(["lyon", "nice"])
    h = travel_handlers.TravelHandlers(runtime.store, Bookings(), new_id=lambda: next(ids))
    departs = datetime.now(UTC).date() + timedelta(days=30)
    await h.request_trip(travel_commands.RequestTrip("Grace", "Lyon", departs))
    await h.request_trip(
        travel_commands.RequestTrip("Alan", "Nice", departs),
        metadata=Metadata(headers={SIMULATE_HEADER: "no_hotel"}),
    )


def aim_at_seeded(case: schemathesis.Case[Any]) -> None:
    """Send about half the requests naming an aggregate to one that exists."""
    parameters = case.path_parameters or {}
    for name, ids in SEEDED.items():
        value = parameters.get(name)
        if isinstance(value, str) and (pick := len(value) % (len(ids) + 1)) < len(ids):
            parameters[name] = ids[pick]


def document(spec: SpecFactory, **values: Any) -> dict[str, Any]:
    """The OpenAPI document the context's app serves (built on a runtime started briefly)."""

    async def build() -> dict[str, Any]:
        runtime = Runtime(settings(run="http", **values), [spec()])
        await runtime.start()
        try:
            return create_app(runtime).openapi()
        finally:
            await runtime.stop()

    return asyncio.run(build())


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """An error answers RFC 9457 problem details of its own status (docs/runtime.md)."""
    if response.status_code < 400 or case.operation.path == "/readyz":
        return None
    media = [
        v for k, values in response.headers.items() if k.lower() == "content-type" for v in values
    ]
    assert media == [PROBLEM], f"{response.status_code} answered as {media}, not {PROBLEM}"
    problem = Problem.model_validate_json(response.content)
    assert problem.status == response.status_code
    return None


#: what no answer may break, and the request-side checks: data the document calls valid
#: is accepted, data it calls invalid is refused, a 405 names every allowed method
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    allow_header_conformance,
]

FUZZ = hypothesis.settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TOKEN = "tok-fuzz-7c1d"

SERVICES = {
    "sales": ContextService(sales.spec, seed_sales),
    "sales with a token": ContextService(sales.spec, seed_sales, api_token=TOKEN),
    "campaigns": ContextService(campaigns.spec, seed_campaigns),
    "travel": ContextService(travel.spec, seed_travel),
}


@pytest.fixture(scope="module", autouse=True)
def _stop_services() -> Iterator[None]:
    yield
    for service in SERVICES.values():
        service.close()


def answers_as_documented(case: schemathesis.Case[Any], service: ContextService) -> None:
    aim_at_seeded(case)
    case.call_and_validate(app=service, checks=CHECKS, additional_checks=[problem_details])


SALES = schemathesis.openapi.from_dict(document(sales.spec))
SALES_WITH_TOKEN = schemathesis.openapi.from_dict(document(sales.spec, api_token=TOKEN))
# ignored_auth sends its probes (no token, a wrong one) through the schema's own transport.
SALES_WITH_TOKEN.app = SERVICES["sales with a token"]
CAMPAIGNS = schemathesis.openapi.from_dict(document(campaigns.spec))
TRAVEL = schemathesis.openapi.from_dict(document(travel.spec))


@SALES.parametrize()
@FUZZ
def test_sales_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    answers_as_documented(case, SERVICES["sales"])


@CAMPAIGNS.parametrize()
@FUZZ
def test_campaigns_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    answers_as_documented(case, SERVICES["campaigns"])


@TRAVEL.parametrize()
@FUZZ
def test_travel_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    answers_as_documented(case, SERVICES["travel"])


@SALES_WITH_TOKEN.parametrize()
@hypothesis.settings(FUZZ, max_examples=25)
def test_sales_with_a_token_refuses_without_it_exactly_what_its_document_secures(
    case: schemathesis.Case[Any],
) -> None:
    # ignored_auth: an operation the document secures answers a request without the
    # token, or with another, by refusing it. Not negative_data_rejection: the token
    # sent here would put back the Authorization header a negative case leaves out.
    aim_at_seeded(case)
    case.call_and_validate(
        app=SERVICES["sales with a token"],
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[*(c for c in CHECKS if c is not negative_data_rejection), ignored_auth],
        additional_checks=[problem_details],
    )
