"""Idempotency-Key retries under contention: ``chronik serve`` on SQLite and on PostgreSQL.

Many requests, each with a key of its own, race for one stream (the campaign budget, one
lead), so most of them meet a version conflict inside the service and are run again
there before they succeed. Each is then sent once more with the same key and body, as a
client does whose answer was lost: every such retry must be answered from the stored
events (``Idempotent-Replayed: true``, the first body) and take no effect of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reference_system import Api, System, launched, stream_events

pytestmark = pytest.mark.slow

REQUESTS = 30


@dataclass
class Reference:
    system: System
    where: list[str]  # the CLI's option naming the service's store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def reference(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Reference]:
    """The three contexts in one ``chronik serve``, on the store named by the parameter."""
    env = {"CHRONIK_APP": "reference:specs"}
    if request.param == "postgres":
        postgres_url = request.getfixturevalue("postgres_url")
        schema = request.getfixturevalue("pg_schema")
        store_url = f"{postgres_url}?schema={schema}"
        env["CHRONIK_EVENT_STORE_URL"] = store_url
        where = ["--store-url", store_url]
    else:
        env["CHRONIK_DATA_DIR"] = str(tmp_path / "data")
        where = ["--data-dir", str(tmp_path / "data")]
    with launched(tmp_path / "logs") as launcher:
        service = launcher.serve("reference", env)
        await service.wait_ready()
        system = System.embedded(service.url)
        try:
            yield Reference(system, where)
        finally:
            await system.close()


@dataclass
class Keyed:
    """A POST sent with an Idempotency-Key, and its successful answer."""

    path: str
    body: dict[str, object]
    key: str
    answer: httpx.Response | None = None


async def send(api: Api, request: Keyed) -> httpx.Response:
    headers = {"Idempotency-Key": request.key}
    return await api.client.post(request.path, json=request.body, headers=headers)


async def until_done(api: Api, request: Keyed) -> None:
    """Send until it succeeds: a 409 (the conflict outlasted the service's own retries)
    wrote nothing, so sending it again with its key runs it again."""
    for _ in range(20):
        answer = await send(api, request)
        if answer.status_code != 409:
            assert answer.is_success, f"{request.path}: {answer.status_code} {answer.text}"
            request.answer = answer
            return
    raise AssertionError(f"{request.path} kept conflicting")


async def race_then_retry(api: Api, requests: list[Keyed]) -> list[str]:
    """Send every request at once; then every one again with its key. What was wrong."""
    await asyncio.gather(*(until_done(api, r) for r in requests))
    retries = await asyncio.gather(*(send(api, r) for r in requests))
    wrong = []
    for request, again in zip(requests, retries, strict=True):
        first = request.answer
        assert first is not None
        replayed = again.headers.get("idempotent-replayed")
        if (again.status_code, again.json(), replayed) != (first.status_code, first.json(), "true"):
            wrong.append(f"{request.key}: {again.status_code} {again.text} replayed={replayed}")
    return wrong


async def test_concurrent_top_ups_retried_with_their_keys_are_replayed_and_credited_once(
    reference: Reference,
) -> None:
    campaigns = reference.system.campaigns
    amounts = [1_000 + i for i in range(REQUESTS)]
    requests = [
        Keyed("/budget/top-up", {"amount_cents": amount}, uuid.uuid4().hex) for amount in amounts
    ]

    wrong = await race_then_retry(campaigns, requests)

    assert wrong == []
    stored = [
        e["data"]["amount_cents"]
        for e in await stream_events("budget-main", reference.where)
        if e["type"] == "campaigns.budget_increased"
    ]
    assert sorted(stored) == amounts
    last = max(int(r.answer.headers["chronik-position"]) for r in requests if r.answer)
    budget = await campaigns.get("/budget", after=last)
    assert budget["total_cents"] == sum(amounts)


async def test_concurrent_contacts_on_a_lead_retried_with_their_keys_are_replayed_and_stored_once(
    reference: Reference,
) -> None:
    sales = reference.system.sales
    lead = await sales.post("/leads", {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"})
    notes = [f"call {i}" for i in range(10)]
    requests = [
        Keyed(f"/leads/{lead.id}/contact", {"note": note}, uuid.uuid4().hex) for note in notes
    ]

    wrong = await race_then_retry(sales, requests)

    assert wrong == []
    history = await sales.get(f"/leads/{lead.id}/history")
    assert [h["type"] for h in history] == ["sales.lead_initialized"] + ["sales.contacted"] * 10
    assert sorted(h["data"]["note"] for h in history[1:]) == notes
