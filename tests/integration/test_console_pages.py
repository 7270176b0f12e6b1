"""The console's pages over HTTP, without a browser: paging, filters, forgotten data,
other services' consoles, bad input, and who may take an action.

The reference system's three contexts run in one runtime on the memory store; pages are
asked for through the ASGI app as a browser would, under an Ingress prefix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from pydantic import ValidationError
from starlette.requests import Request

import campaigns
import sales
import travel
from campaigns.domain import BudgetIncreased
from chronik.console.app import Console
from chronik.console.causation import tree
from chronik.errors import TokenRequiredError
from chronik.eventstore import Metadata
from chronik.http.app import create_app
from chronik.runtime.service import Runtime
from chronik.runtime.settings import Settings

PREFIX = "/crm"
TOKEN = "tok-console-9c1f"
PEERS = "campaigns=https://campaigns.example/console,travel=/travel/console"


def settings(**values: Any) -> Settings:
    return Settings.model_validate(
        {"event_store_url": "memory://", "http_root_path": PREFIX, **values}
    )


@pytest.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = getattr(request, "param", {})
    runtime = Runtime(settings(**values), [sales.spec(), campaigns.spec(), travel.spec()])
    await runtime.start()
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as http:
            http.headers["Authorization"] = f"Bearer {TOKEN}"  # ignored without a token set
            yield http
    finally:
        await runtime.stop()


async def new_lead(client: httpx.AsyncClient, name: str) -> str:
    answer = await client.post(f"{PREFIX}/sales/leads", json={"name": name, "phone": "+1 555"})
    assert answer.status_code == 201, answer.text
    lead: str = answer.json()["id"]
    return lead


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html.replace("&amp;", "&"))


async def test_streams_come_a_page_at_a_time_and_by_event_type(client: httpx.AsyncClient) -> None:
    leads = sorted([await new_lead(client, f"Lead {n}") for n in range(53)])
    contacted = leads[10]
    answer = await client.post(f"{PREFIX}/sales/leads/{contacted}/contact", json={"note": "hi"})
    assert answer.status_code == 200, answer.text

    first = await client.get(f"{PREFIX}/console/streams", params={"category": "lead-"})
    assert first.status_code == 200
    shown = re.findall(r"<code>(lead-[0-9a-f]+)</code>", first.text)
    assert shown == [f"lead-{lead}" for lead in leads[:50]]
    [following] = [link for link in links(first.text) if "after=" in link]
    assert following.startswith(f"{PREFIX}/console/streams?")
    second = await client.get(following)
    assert re.findall(r"<code>(lead-[0-9a-f]+)</code>", second.text) == [
        f"lead-{lead}" for lead in leads[50:]
    ]
    assert not [link for link in links(second.text) if "after=" in link]  # the last page

    typed = await client.get(f"{PREFIX}/console/streams", params={"type": "sales.contacted"})
    assert re.findall(r"<code>(lead-[0-9a-f]+)</code>", typed.text) == [f"lead-{contacted}"]
    assert "v2" not in typed.text and ">2</td>" in typed.text  # the stream's whole version


async def test_a_forgotten_leads_personal_data_shows_as_forgotten_never_as_ciphertext(
    client: httpx.AsyncClient,
) -> None:
    lead = await new_lead(client, "Hedy Lamarr")
    answer = await client.post(f"{PREFIX}/sales/leads/{lead}/anonymize")
    assert answer.status_code == 200, answer.text
    page = await client.get(f"{PREFIX}/console/streams/lead-{lead}", params={"at": 1})
    assert page.status_code == 200
    assert "forgotten (personal data erased)" in page.text
    assert "Hedy Lamarr" not in page.text
    assert "$enc" not in page.text and "[encrypted]" not in page.text


@pytest.mark.parametrize("client", [{"api_token": TOKEN, "read_auth": "personal"}], indirect=True)
async def test_without_the_token_personal_data_and_the_state_are_hidden(
    client: httpx.AsyncClient,
) -> None:
    lead = await new_lead(client, "Katherine Johnson")
    bare = await client.get(f"{PREFIX}/console/streams/lead-{lead}", headers={"Authorization": ""})
    assert bare.status_code == 200
    assert "Katherine Johnson" not in bare.text and "personal: hidden" in bare.text
    assert 'data-field="name"' not in bare.text  # no state: it holds the name
    shown = await client.get(f"{PREFIX}/console/streams/lead-{lead}")
    assert "Katherine Johnson" in shown.text and 'data-field="name"' in shown.text


@pytest.mark.parametrize("client", [{"console_peers": PEERS}], indirect=True)
async def test_a_message_from_another_service_links_that_services_console(
    client: httpx.AsyncClient,
) -> None:
    # What the budget consumer appends for a message whose event is in another store.
    runtime: Runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
    headers = {"chronik-inbox": "campaigns-budget:0191-elsewhere"}
    await runtime.store.append(
        "budget-main",
        [BudgetIncreased(100, "order-1", datetime.now(UTC))],
        metadata=Metadata("corr-from-sales", "0191-elsewhere", headers),
    )
    page = await client.get(f"{PREFIX}/console/correlations/corr-from-sales")
    assert page.status_code == 200
    assert "message from another service" in page.text
    assert "https://campaigns.example/console/correlations/corr-from-sales" in links(page.text)
    assert "/travel/console/correlations/corr-from-sales" in links(page.text)
    assert "campaigns.budget_increased" in page.text
    home = await client.get(f"{PREFIX}/console")
    assert "https://campaigns.example/console" in links(home.text)


async def test_bad_input_is_answered_with_a_problem_naming_it(client: httpx.AsyncClient) -> None:
    lead = await new_lead(client, "Ada")
    cases = [
        ("/console/events/not-an-id", 422, "is no event id"),
        ("/console/events/01a23727-6751-7000-98e5-50ace4639a4e", 404, "no event"),
        ("/console/streams/lead-nobody", 404, "has no events"),
        (f"/console/streams/lead-{lead}?at=2", 422, "versions are 1 to 1"),
        ("/console/static/../app.py", 404, ""),
        ("/console/static/base.html", 404, "no console file"),
    ]
    for path, status, detail in cases:
        answer = await client.get(PREFIX + path)
        assert answer.status_code == status, (path, answer.text)
        assert detail in answer.text, (path, answer.text)


def test_console_peers_that_are_no_name_url_pairs_are_refused_naming_the_item() -> None:
    with pytest.raises(ValidationError, match="'campaigns' is no name=URL pair"):
        settings(console_peers="sales=https://s.example/console,campaigns")
    with pytest.raises(ValidationError, match="no name=URL pair"):
        settings(console_peers="sales=ftp://s.example")
    assert settings(console_peers=" a=/x/ , b=http://b ").console_peer_urls == [
        ("a", "/x"),
        ("b", "http://b"),
    ]


def _action(app: Any, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "crm", **headers}.items()]
    return Request({"type": "http", "method": "POST", "headers": raw, "app": app, "path": "/"})


@pytest.mark.parametrize(
    ("values", "headers", "refused"),
    [
        ({}, {}, 403),  # read-only by default
        ({"console_actions": True}, {}, None),  # no token set: no token asked for
        ({"console_actions": True, "api_token": TOKEN}, {}, 401),
        ({"console_actions": True, "api_token": TOKEN}, {"authorization": "Bearer no"}, 401),
        ({"console_actions": True, "api_token": TOKEN}, {"authorization": f"Bearer {TOKEN}"}, None),
        ({"console_actions": True}, {"origin": "https://evil.example"}, 403),
        ({"console_actions": True}, {"origin": "http://crm"}, None),
        (
            {"console_actions": True},
            {"origin": "https://crm.example", "x-forwarded-host": "crm.example"},
            None,
        ),
    ],
)
async def test_an_action_needs_actions_on_the_token_when_set_and_the_same_site(
    values: dict[str, Any], headers: dict[str, str], refused: int | None
) -> None:
    runtime = Runtime(settings(**values), [sales.spec()])
    app = create_app(runtime)
    console = Console(runtime)
    request = _action(app, headers)
    if refused is None:
        console.check_action(request)
    elif refused == 401:
        with pytest.raises(TokenRequiredError):
            console.check_action(request)
    else:
        with pytest.raises(HTTPException) as raised:
            console.check_action(request)
        assert raised.value.status_code == 403


def test_the_tree_hangs_events_under_their_cause_and_a_consumers_under_the_message() -> None:
    from chronik.eventstore import ShownEvent

    at = datetime.now(UTC)

    def shown(n: int, cause: str | None, inbox: str | None = None, type_: str = "t") -> ShownEvent:
        headers = {"chronik-inbox": inbox} if inbox else None
        return ShownEvent(f"e{n}", "s", n, n, type_, 1, at, "c", cause, headers, {}, {})

    events = [
        shown(1, "e1"),  # the request's first event: its own cause
        shown(2, "e1"),  # the same append, or a step it caused
        shown(3, "e1", "budget:e1"),  # a consumer's, for the message of e1
        shown(4, "e1", "budget:e1"),
        shown(5, "x9", "other:x9"),  # a message whose event is in another store
    ]
    (outside,) = [r for r in tree(events, "c", {}) if r.kind == "message"]
    [request] = [r for r in tree(events, "c", {}) if r.kind == "request"]
    [first] = request.children
    assert first.event is not None and first.event.id == "e1"
    assert [c.kind for c in first.children] == ["event", "message"]
    message = first.children[1]
    assert [c.event.id for c in message.children if c.event] == ["e3", "e4"]
    assert outside.detail == "x9"
    assert [c.children[0].event.id for c in outside.children if c.children[0].event] == ["e5"]


async def test_a_long_streams_timeline_is_a_window_around_the_version_shown(
    client: httpx.AsyncClient,
) -> None:
    runtime: Runtime = client._transport.app.state.runtime  # type: ignore[attr-defined]
    events = [BudgetIncreased(n, f"order-{n}", datetime.now(UTC)) for n in range(1, 121)]
    await runtime.store.append("budget-main", events)
    page = await client.get(f"{PREFIX}/console/streams/budget-main", params={"at": 60})
    versions = [int(v) for v in re.findall(r'aria-label="State at version (\d+)"', page.text)]
    assert versions == list(range(35, 85))
    assert f"{PREFIX}/console/streams/budget-main?at=34" in links(page.text)
    assert f"{PREFIX}/console/streams/budget-main?at=85" in links(page.text)
    assert '"amount_cents"' in page.text or "amount_cents" in page.text
    latest = await client.get(f"{PREFIX}/console/streams/budget-main")
    versions = [int(v) for v in re.findall(r'aria-label="State at version (\d+)"', latest.text)]
    assert versions == list(range(95, 121))


async def test_mounted_in_a_users_own_app_the_console_links_keep_the_mount() -> None:
    from fastapi import FastAPI

    runtime = Runtime(settings(http_root_path=""), [sales.spec()])
    await runtime.start()
    try:
        own = FastAPI()
        own.mount("/api", create_app(runtime))
        transport = httpx.ASGITransport(app=own)
        async with httpx.AsyncClient(transport=transport, base_url="http://own") as http:
            page = await http.get("/api/console/streams")
            assert page.status_code == 200, page.text
            shown = links(page.text)
            assert "/api/console/static/console.css" in shown
            assert "/api/console/streams" in shown
            assert all(link.startswith(("/api/console", "#")) for link in shown), shown
            css = await http.get("/api/console/static/console.css")
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    finally:
        await runtime.stop()
