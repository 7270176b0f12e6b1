"""Who may read what: every route of the reference system with an API token set.

With ``CHRONIK_API_TOKEN`` set, writes need the token; so do the reads that return
personal data (names, phone numbers), unless ``CHRONIK_READ_AUTH`` says otherwise
(``all``: every read; ``none``: no read). Probes and the API's description stay open.
The three contexts run in one runtime on the memory store, seeded through the API with a
lead, a campaign and a trip; then every route the app has is called, with no token, a
wrong one and the right one. A route is found to return personal data by what it
answers (a seeded name or phone in its body), not by a list kept here.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError

import campaigns
import sales
import travel
from chronik.errors import ConfigurationError
from chronik.http.app import create_app
from chronik.http.auth import PERSONAL_DATA
from chronik.http.problems import PROBLEM
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import Settings, load_settings

TOKEN = "tok-5d1e-reads-need-me"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}
PERSONAL = ("Hedy Lamarr", "+1 310 555 0199", "Katherine Johnson")
PROBES = ("/healthz", "/readyz", "/metrics")
DESCRIPTION = ("/openapi.json", "/docs", "/redoc")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def settings(**values: Any) -> Settings:
    return Settings.model_validate({"event_store_url": "memory://", "run": "all", **values})


@dataclass
class Reference:
    app: FastAPI
    client: httpx.AsyncClient
    ids: dict[str, str]  # path parameter -> a seeded aggregate's id
    position: str  # of the last seeding write


@asynccontextmanager
async def reference(**values: Any) -> AsyncIterator[Reference]:
    """The three contexts, seeded through the API with the token."""
    runtime = Runtime(settings(**values), [sales.spec(), campaigns.spec(), travel.spec()])
    await runtime.start()
    deadline = asyncio.get_running_loop().time() + 10
    while reasons := await runtime.readiness():
        assert asyncio.get_running_loop().time() < deadline, reasons
        await asyncio.sleep(0.01)
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ref") as client:
            ids, position = await seed(client)
            # The console's path parameters: the lead's stream, its first event, a file.
            [first] = await runtime.store.read_stream(f"lead-{ids['lead_id']}", limit=1)
            ids |= {"stream_id": f"lead-{ids['lead_id']}", "event_id": str(first.id)}
            ids["correlation_id"] = first.metadata.correlation_id or str(first.id)
            ids["file"] = "console.css"
            # The operations pages: a projection, and the trip's booking process.
            ids |= {"name": "trip_board", "process": "trip_booking", "instance": ids["trip_id"]}
            ids |= {"consumer": "campaigns", "message_id": str(first.id)}
            yield Reference(app, client, ids, position)
    finally:
        await runtime.stop()


async def seed(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    async def post(path: str, body: dict[str, Any]) -> httpx.Response:
        answer = await client.post(path, json=body, headers=RIGHT)
        assert answer.is_success, (path, answer.text)
        return answer

    lead = (await post("/sales/leads", {"name": PERSONAL[0], "phone": PERSONAL[1]})).json()["id"]
    await post(f"/sales/leads/{lead}/contact", {"note": "called"})
    await post("/campaigns/budget/top-up", {"amount_cents": 10_000})
    campaign = (await post("/campaigns/campaigns", {"name": "Spring", "cost_cents": 500})).json()
    departs = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    trip = await post(
        "/travel/trips", {"traveller": PERSONAL[2], "destination": "Lyon", "depart_on": departs}
    )
    await post(f"/campaigns/campaigns/{campaign['id']}/activate", {})
    ids = {"lead_id": lead, "campaign_id": campaign["id"], "trip_id": trip.json()["id"]}
    # The saga and the process manager start in the background: wait until both show.
    for process in (
        f"/campaigns/campaigns/{ids['campaign_id']}/publishing",
        f"/travel/trips/{ids['trip_id']}/booking",
    ):
        deadline = asyncio.get_running_loop().time() + 10
        while (await client.get(process, headers=RIGHT)).status_code != 200:
            assert asyncio.get_running_loop().time() < deadline, f"{process} never started"
            await asyncio.sleep(0.02)
    return ids, trip.headers["chronik-position"]


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the app has, its included routers' too."""
    found = []
    for route in iter_route_contexts(app.routes):
        assert route.path_format is not None, route
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path_format))
    return found


def concrete(template: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)


def refused(answer: httpx.Response) -> bool:
    return (
        answer.status_code == 401
        and answer.headers["content-type"] == PROBLEM
        and answer.json()["status"] == 401
        and answer.headers["www-authenticate"] == "Bearer"
    )


def shows_personal_data(answer: httpx.Response) -> bool:
    return any(value in answer.text for value in PERSONAL)


async def test_every_route_that_returns_personal_data_needs_the_token_and_no_other_read() -> None:
    async with reference(api_token=TOKEN) as ref:
        personal: list[str] = []
        guarded: list[str] = []
        for method, template in operations(ref.app):
            if method in WRITES:
                continue
            path = concrete(template, ref.ids)
            consistent = {"Chronik-Min-Position": ref.position}
            right = await ref.client.request(method, path, headers={**consistent, **RIGHT})
            assert right.status_code == 200, (path, right.text)
            none = await ref.client.request(method, path, headers=consistent)
            wrong = await ref.client.request(method, path, headers={**consistent, **WRONG})
            if template.startswith("/console"):
                # The console's pages answer everyone, with personal data only for the
                # token: without it they show it masked (console.md).
                assert none.status_code == wrong.status_code == 200, (path, none.text)
                assert not shows_personal_data(none), path
                assert not shows_personal_data(wrong), path
                if template == "/console/streams/{stream_id}":
                    assert shows_personal_data(right), "the token shows the lead's stream"
                continue
            if shows_personal_data(right):
                personal.append(template)
            if refused(none):
                guarded.append(template)
                assert refused(wrong), (path, wrong.status_code, wrong.text)
            else:
                # Open: then it must answer the same and show no personal data.
                assert none.status_code == wrong.status_code == 200, (path, none.text)
                assert not shows_personal_data(none), path
                assert not shows_personal_data(wrong), path
    assert guarded == personal
    assert sorted(personal) == [
        "/sales/leads",
        "/sales/leads/{lead_id}",
        "/sales/leads/{lead_id}/history",
        "/sales/leads/{lead_id}/state",
        "/travel/trips",
        "/travel/trips/{trip_id}",
    ]


async def test_every_write_of_every_context_needs_the_token() -> None:
    async with reference(api_token=TOKEN) as ref:
        writes = [(m, t) for m, t in operations(ref.app) if m in WRITES]
        assert len(writes) >= 12
        for method, template in writes:
            path = concrete(template, ref.ids)
            if template.startswith("/console"):
                # The console's actions are off unless CHRONIK_CONSOLE_ACTIONS is set: even
                # with the token they are refused (console.md).
                answer = await ref.client.request(method, path, headers=RIGHT)
                assert answer.status_code == 403, (path, answer.status_code)
            assert refused(await ref.client.request(method, path, json={})), path
            assert refused(await ref.client.request(method, path, json={}, headers=WRONG)), path


@pytest.mark.parametrize("read_auth", ["personal", "all", "none"])
async def test_probes_and_the_api_description_need_no_token(read_auth: str) -> None:
    async with reference(api_token=TOKEN, read_auth=read_auth) as ref:
        for path in PROBES + DESCRIPTION:
            answer = await ref.client.get(path)
            assert answer.status_code == 200, (path, answer.text)


async def test_with_read_auth_all_every_read_needs_the_token() -> None:
    async with reference(api_token=TOKEN, read_auth="all") as ref:
        for method, template in operations(ref.app):
            if method in WRITES or template in PROBES + DESCRIPTION or template.startswith("/docs"):
                continue
            path = concrete(template, ref.ids)
            consistent = {"Chronik-Min-Position": ref.position}
            assert refused(await ref.client.request(method, path, headers=consistent)), path
            right = await ref.client.request(method, path, headers={**consistent, **RIGHT})
            assert right.status_code == 200, (path, right.text)
        assert refused(await ref.client.get("/sales/no-such-route"))


async def test_with_read_auth_none_personal_data_is_read_without_the_token() -> None:
    async with reference(api_token=TOKEN, read_auth="none") as ref:
        leads = await ref.client.get("/sales/leads", headers={"Chronik-Min-Position": ref.position})
        assert leads.status_code == 200
        assert shows_personal_data(leads)
        assert refused(await ref.client.post("/sales/leads", json={"name": "X", "phone": "12345"}))


async def test_without_a_token_personal_data_is_read_as_before() -> None:
    async with reference() as ref:
        leads = await ref.client.get("/sales/leads", headers={"Chronik-Min-Position": ref.position})
        assert leads.status_code == 200
        assert shows_personal_data(leads)


async def test_a_personal_read_without_the_token_is_refused_before_it_waits() -> None:
    async with reference(api_token=TOKEN, consistency_wait=60) as ref:
        far = {"Chronik-Min-Position": str(int(ref.position) + 1_000)}
        answer = await asyncio.wait_for(ref.client.get("/sales/leads", headers=far), 30)
        assert refused(answer)


def test_read_auth_all_without_a_token_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHRONIK_READ_AUTH", "all")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("CHRONIK_READ_AUTH (from env): ")
    assert "CHRONIK_API_TOKEN" in message
    assert "\n" not in message


def test_an_unknown_read_auth_is_refused() -> None:
    with pytest.raises(ValidationError):
        settings(api_token=TOKEN, read_auth="writes")


# -- the OpenAPI document --------------------------------------------------------------


async def document(**values: Any) -> dict[str, Any]:
    async with reference(**values) as ref:
        answer = await ref.client.get("/openapi.json")
        assert answer.status_code == 200
        doc: dict[str, Any] = answer.json()
        return doc


def secured(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation the document says needs the bearer token."""
    [scheme] = [
        name
        for name, s in doc["components"]["securitySchemes"].items()
        if s == {"type": "http", "scheme": "bearer", "description": s.get("description")}
    ]
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if operation.get("security") == [{scheme: []}]
    }


async def test_the_document_names_the_bearer_scheme_on_writes_and_personal_reads() -> None:
    doc = await document(api_token=TOKEN)
    operations = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    writes = {(m, p) for m, p in operations if m in WRITES}
    personal_reads = {
        ("GET", "/sales/leads"),
        ("GET", "/sales/leads/{lead_id}"),
        ("GET", "/sales/leads/{lead_id}/history"),
        ("GET", "/sales/leads/{lead_id}/state"),
        ("GET", "/travel/trips"),
        ("GET", "/travel/trips/{trip_id}"),
    }
    assert secured(doc) == writes | personal_reads


async def test_with_read_auth_all_the_document_secures_every_operation_but_the_probes() -> None:
    doc = await document(api_token=TOKEN, read_auth="all")
    operations = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert secured(doc) == {(m, p) for m, p in operations if p not in PROBES}


async def test_without_a_token_the_document_asks_for_none() -> None:
    doc = await document()
    assert "securitySchemes" not in doc.get("components", {})
    assert not any("security" in op for item in doc["paths"].values() for op in item.values())


# -- the marker ------------------------------------------------------------------------


async def test_a_router_marks_all_its_routes_personal_or_a_route_marks_itself() -> None:
    async def endpoint() -> dict[str, str]:
        return {"name": "Ada"}

    def routes(runtime: Runtime) -> APIRouter:
        marked = APIRouter(dependencies=[PERSONAL_DATA])
        marked.add_api_route("/people", endpoint)
        plain = APIRouter()
        plain.add_api_route("/person", endpoint, dependencies=[PERSONAL_DATA])
        plain.add_api_route("/count", endpoint)
        included = APIRouter()
        included.add_api_route("/visitors", endpoint)
        plain.include_router(included, prefix="/in", dependencies=[PERSONAL_DATA])
        plain.include_router(marked)
        return plain

    spec = ServiceSpec("people", event_types=[], routes=routes)
    runtime = Runtime(settings(api_token=TOKEN), [spec])
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            for path in ("/people", "/person", "/in/visitors"):
                assert refused(await client.get(path)), path
                assert (await client.get(path, headers=RIGHT)).status_code == 200, path
            assert (await client.get("/count")).status_code == 200
    finally:
        await runtime.stop()
