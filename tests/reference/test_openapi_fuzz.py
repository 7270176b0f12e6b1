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
import itertools
import re
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
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
    "lead_id": ("ada", "bob", "cy"),
    "campaign_id": ("spring", "summer"),
    "trip_id": ("lyon", "nice"),
}


async def seed_sales(runtime: Runtime) -> None:
    ids = iter(["ada", "1", "bob", "cy"])
    h = sales_handlers.LeadHandlers(runtime.store, clock=VirtualClock(T0), new_id=lambda: next(ids))
    await h.create_lead(sales_commands.CreateLead("Ada Lovelace", "12345"))
    await h.contact(sales_commands.ContactLead("ada", "called"))
    await h.submit_order(sales_commands.SubmitOrder("ada", 12_000, "EUR"))
    await h.create_lead(sales_commands.CreateLead("Bob", "+1 555 0100"))
    await h.create_lead(sales_commands.CreateLead("Cy", "+1 555 0199"))
    await h.close(sales_commands.CloseLead("cy", "moved away"))


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


_KEYS = itertools.count()


def one_key_per_request(case: schemathesis.Case[Any]) -> None:
    """A generated Idempotency-Key made unique: a key reused for another body is refused
    with 422 (test_runtime_http.py pins it; the probes below send one), which generated
    "valid" data must not meet by chance."""
    headers = case.headers
    for name in list(headers or ()):
        if name.lower() == "idempotency-key":
            headers[name] = f"{headers[name]}-{next(_KEYS)}"


_WHOLE = re.compile(r"[ \t]*[0-9]+[ \t]*")


def aim_at_reached(case: schemathesis.Case[Any]) -> None:
    """A generated Chronik-Min-Position the document calls valid made one the store has
    reached (0 or 1), as a client sends back a position it was answered: a random one
    beyond waits for the consistency wait and answers 503 (test_runtime_http.py pins it)."""
    headers = case.headers
    for name in list(headers or ()):
        if name.lower() == "chronik-min-position" and _WHOLE.fullmatch(headers[name]):
            headers[name] = str(int(headers[name]) % 2)


#: (document, method, path) -> the statuses answered during this session's fuzzing
ANSWERED: dict[tuple[str, str, str], set[int]] = {}


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


def answers_as_documented(case: schemathesis.Case[Any], service: ContextService, name: str) -> None:
    aim_at_seeded(case)
    aim_at_reached(case)
    one_key_per_request(case)
    response = case.call_and_validate(
        app=service, checks=CHECKS, additional_checks=[problem_details]
    )
    ANSWERED.setdefault((name, case.method.upper(), case.path), set()).add(response.status_code)


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
    answers_as_documented(case, SERVICES["sales"], "sales")


@CAMPAIGNS.parametrize()
@FUZZ
def test_campaigns_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    answers_as_documented(case, SERVICES["campaigns"], "campaigns")


@TRAVEL.parametrize()
@FUZZ
def test_travel_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    answers_as_documented(case, SERVICES["travel"], "travel")


@SALES_WITH_TOKEN.parametrize()
@hypothesis.settings(FUZZ, max_examples=25)
def test_sales_with_a_token_refuses_without_it_exactly_what_its_document_secures(
    case: schemathesis.Case[Any],
) -> None:
    # ignored_auth: an operation the document secures answers a request without the
    # token, or with another, by refusing it. Not negative_data_rejection: the token
    # sent here would put back the Authorization header a negative case leaves out.
    aim_at_seeded(case)
    aim_at_reached(case)
    one_key_per_request(case)
    response = case.call_and_validate(
        app=SERVICES["sales with a token"],
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[*(c for c in CHECKS if c is not negative_data_rejection), ignored_auth],
        additional_checks=[problem_details],
    )
    ANSWERED.setdefault(("sales with a token", case.method.upper(), case.path), set()).add(
        response.status_code
    )


#: documented answers neither the fuzzing above nor the probes below reach, and why
#: they are documented all the same (each is pinned elsewhere, or needs a failure outside)
JUSTIFIED: dict[str, str] = {
    "500": "an unexpected error: no correct request reaches it (its answer is pinned by "
    "tests/integration/test_observability.py::test_a_500_logs_one_traceback_and_is_"
    "answered_as_a_problem)",
    "503": "the store unavailable, or a read model behind Chronik-Min-Position beyond the "
    "wait (tests/integration/test_runtime_http.py::test_a_position_the_read_model_does_"
    "not_reach_in_time_is_a_503_to_retry)",
    "POST /leads/{lead_id}/follow-up 200": "a time within the horizon; random ones seldom are",
    "POST /leads/{lead_id}/payment 200": "the order's id; random ones never are",
    "POST /leads/{lead_id}/anonymize 409": "anonymizing is always allowed: only a concurrent "
    "change that came first (a race) answers 409",
    "POST /trips/{trip_id}/approve 200": "a trip awaiting approval: when its booking process "
    "got there (reached by the fuzzing most runs; tests/reference/test_http.py)",
    "POST /trips/{trip_id}/approve 409": "a trip past approval: when its booking process got "
    "there (reached by the fuzzing most runs; tests/reference/test_http.py)",
    "POST /trips/{trip_id}/reject 200": "a trip awaiting approval: when its booking process "
    "got there (reached by the fuzzing most runs; tests/reference/test_http.py)",
    "POST /trips/{trip_id}/reject 409": "a trip past approval: when its booking process got "
    "there (reached by the fuzzing most runs; tests/reference/test_http.py)",
}
DOCUMENTS = {
    "sales": SALES,
    "sales with a token": SALES_WITH_TOKEN,
    "campaigns": CAMPAIGNS,
    "travel": TRAVEL,
}
#: per document: a command that succeeds, whose Idempotency-Key is then reused elsewhere
FIRST_COMMAND = {
    "sales": ("POST", "/leads", {"name": "Eve", "phone": "12345"}),
    "sales with a token": ("POST", "/leads", {"name": "Eve", "phone": "12345"}),
    "campaigns": ("POST", "/campaigns", {"name": "Autumn sale", "cost_cents": 100}),
    "travel": (
        "POST",
        "/trips",
        {"traveller": "Ada", "destination": "Rome", "depart_on": "2999-01-01"},
    ),
}


#: a body each operation takes, for the requests aimed at a missing or refusing aggregate
BODIES: dict[str, dict[str, Any]] = {
    "POST /leads/{lead_id}/contact": {"note": "called"},
    "PUT /leads/{lead_id}/contact-details": {"name": "Ada", "phone": "12345"},
    "POST /leads/{lead_id}/follow-up": {"on": "2999-01-01T09:00:00Z"},
    "POST /leads/{lead_id}/orders": {"amount_cents": 100, "currency": "EUR"},
    "POST /leads/{lead_id}/payment": {"order_id": "o-1"},
    "POST /leads/{lead_id}/close": {"reason": "gone"},
    "POST /trips/{trip_id}/approve": {"by": "the manager"},
    "POST /trips/{trip_id}/reject": {"by": "the manager"},
}
#: aggregates the seeds left where a command is refused: a closed lead, a live campaign
REFUSING = {"lead_id": "cy", "campaign_id": "summer"}
#: aggregates the seeds left where a command succeeds: an open lead, a draft campaign
ACCEPTING = {"lead_id": "bob", "campaign_id": "spring"}
#: bodies of the requests aimed at a success, beside BODIES
CREATIONS: dict[str, dict[str, Any]] = {
    "POST /leads": {"name": "Eve", "phone": "12345"},
    "POST /campaigns": {"name": "Autumn sale", "cost_cents": 100},
    "POST /budget/top-up": {"amount_cents": 100},
    "POST /trips": {"traveller": "Ada", "destination": "Rome", "depart_on": "2999-01-01"},
}
#: requests aimed at what only a body of the operation's own can meet
OWN: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "POST /trips": [
        ("409", {"json": {"traveller": "Ada", "destination": "Rome", "depart_on": "2000-01-01"}})
    ],
}


def _invalid(schema: dict[str, Any]) -> str | None:
    """A value request validation refuses for this parameter's schema, if one is known."""
    for each in schema.get("anyOf", [schema]):
        if each.get("type") in ("integer", "number"):
            return "not-a-number"
        if "enum" in each:
            return "no-such-value"
        if "maxLength" in each:
            return "x" * (int(each["maxLength"]) + 1)
        if each.get("format") in ("date-time", "date"):
            return "not-a-time"
    return None


def _probes(
    name: str, method: str, path: str, operation: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Requests aimed at each status the operation documents: (status, request arguments).

    A success is aimed at where the seeds let one happen; the rest is the fuzzing's."""
    parameters = operation.get("parameters", [])
    values = {p["name"]: SEEDED.get(p["name"], ("x",))[0] for p in parameters if p["in"] == "path"}
    url = path.format(**values)
    auth = {"Authorization": f"Bearer {TOKEN}"} if "token" in name else {}
    if "requestBody" in operation:
        json_type = {"Content-Type": "application/json", **auth}
        yield "400", {"url": url, "content": b"{", "headers": json_type}
        yield "422", {"url": url, "json": [], "headers": auth}
    for parameter in parameters:
        if parameter["in"] == "query" and (bad := _invalid(parameter["schema"])) is not None:
            yield "422", {"url": url, "params": {parameter["name"]: bad}, "headers": auth}
    which = f"{method.upper()} {path}"
    body = BODIES.get(which, CREATIONS.get(which, {}))
    for status, extra in OWN.get(which, []):
        yield status, {"url": url, "headers": auth, **extra}
    if method.upper() == "GET" or set(values) <= set(ACCEPTING):
        accepting = path.format(**{**values, **ACCEPTING})
        yield "2xx", {"url": accepting, "headers": auth, "json": body}
    if values:
        missing = path.format(**{k: "no-such-aggregate" for k in values})
        yield "404", {"url": missing, "headers": auth, "json": body}
        if method.upper() != "GET" and set(values) <= set(REFUSING):
            yield "409", {"url": path.format(**REFUSING), "headers": auth, "json": body}
    if "security" in operation:
        yield "401", {"url": url, "json": {}}
    if any(p["name"] == "Chronik-Min-Position" for p in parameters):
        yield "400", {"url": url, "headers": {**auth, "Chronik-Min-Position": "ten"}}
    if any(p["name"] == "Idempotency-Key" for p in parameters):
        yield "422", {"url": url, "headers": {**auth, "Idempotency-Key": "reused"}, "json": {}}


def _probed(name: str, document: dict[str, Any]) -> dict[tuple[str, str], set[int]]:
    """What each operation answered to the probes, on a fresh seeded runtime."""
    service = ContextService(SERVICES[name].spec, SERVICES[name].seed, **SERVICES[name].values)
    answered: dict[tuple[str, str], set[int]] = {}
    with TestClient(service) as client:
        method, url, body = FIRST_COMMAND[name]
        auth = {"Authorization": f"Bearer {TOKEN}"} if "token" in name else {}
        first = client.request(
            method, url, json=body, headers={**auth, "Idempotency-Key": "reused"}
        )
        assert first.status_code < 300, first.text
        for path, item in document["paths"].items():
            for verb, operation in item.items():
                for _, arguments in _probes(name, verb, path, operation):
                    if verb == "get":
                        arguments.pop("json", None)
                    answer = client.request(verb.upper(), **arguments)
                    answered.setdefault((verb.upper(), path), set()).add(answer.status_code)
    return answered


def test_every_documented_answer_is_reached_or_justified() -> None:
    """Each operation's documented statuses: answered to requests aimed at them (or to the
    fuzzing, when it ran first in this session), or justified in JUSTIFIED. So the
    document promises no error an operation cannot answer (and the fuzzing, none it
    leaves out)."""
    unreached: list[str] = []
    for name, schema in DOCUMENTS.items():
        probed = _probed(name, schema.raw_schema)
        for path, item in schema.raw_schema["paths"].items():
            for method, operation in item.items():
                key = (method.upper(), path)
                answered = ANSWERED.get((name, *key), set()) | probed.get(key, set())
                for code in operation["responses"]:
                    which = f"{method.upper()} {path} {code}"
                    if int(code) in answered or code in JUSTIFIED or which in JUSTIFIED:
                        continue
                    unreached.append(f"{name}: {which} (answered {sorted(answered)})")
    assert not unreached, "documented but never answered:\n" + "\n".join(unreached)
