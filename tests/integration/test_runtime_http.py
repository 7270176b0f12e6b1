"""The HTTP adapter around a started runtime, in process: auth, path prefix, trace context.

Each test starts the sample service on a SQLite store in its temporary directory, with
settings read by ``load_settings`` as ``chronik serve`` reads them, and talks to the app
through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronik.errors import ConfigurationError
from chronik.http.app import create_app
from chronik.http.problems import PROBLEM
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings
from reference.tickets import SPEC

TOKEN = "tok-9f2c1e7a-never-shown"
PREFIX = "/tickets-svc"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACEPARENT_SHAPE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
NEW_TICKET = {"title": "Printer on fire", "reporter": "Ada"}


@dataclass
class Service:
    runtime: Runtime
    client: httpx.AsyncClient


Start = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def start(tmp_path: Path) -> Start:
    """Start the sample service with these settings (as flags) and a client for it."""

    @asynccontextmanager
    async def started(**flags: Any) -> AsyncIterator[Service]:
        settings = load_settings({"data_dir": tmp_path, **flags}).settings
        runtime = Runtime(settings, [SPEC])
        await runtime.start()
        transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                yield Service(runtime, client)
        finally:
            await runtime.stop()

    return started


def _is_problem(response: httpx.Response, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"] == PROBLEM
        and response.json()["status"] == status
    )


# -- the API token ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Bearer ", f"Bearer {TOKEN}x", f"Basic {TOKEN}"],
    ids=["none", "wrong", "empty", "longer", "basic"],
)
async def test_a_write_without_the_right_token_is_refused_with_a_401_problem(
    start: Start, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with start(api_token=TOKEN) as svc:
        refused = await svc.client.post("/tickets", json=NEW_TICKET, headers=headers)
        assert _is_problem(refused, 401)
        assert refused.headers["www-authenticate"] == "Bearer"
        assert await svc.runtime.store.list_streams() == []


async def test_a_write_with_the_token_is_accepted(start: Start) -> None:
    async with start(api_token=TOKEN) as svc:
        done = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert done.status_code == 201
        assert done.json()["stream_id"] == f"ticket-{done.json()['id']}"


async def test_reads_and_probes_need_no_token(start: Start) -> None:
    async with start(api_token=TOKEN) as svc:
        opened = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        position = opened.headers["chronik-position"]
        ticket = await svc.client.get(
            f"/tickets/{opened.json()['id']}", headers={"Chronik-Min-Position": position}
        )
        assert ticket.status_code == 200
        for path in ["/tickets", "/healthz", "/readyz", "/metrics"]:
            response = await svc.client.get(path)
            assert response.status_code == 200, (path, response.text)


async def test_the_token_shows_in_no_response_and_no_log_line(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with start(api_token=TOKEN, log_level="debug") as svc:
        responses = [
            await svc.client.post("/tickets", json=NEW_TICKET),
            await svc.client.post(
                "/tickets", json=NEW_TICKET, headers={"Authorization": "Bearer nope"}
            ),
            await svc.client.post(
                "/tickets", json=NEW_TICKET, headers={"Authorization": f"Bearer {TOKEN}"}
            ),
            await svc.client.post(
                "/tickets",
                content=b"{",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            ),
            await svc.client.get("/metrics"),
        ]
    assert [r.status_code for r in responses] == [401, 401, 201, 400, 200]
    for response in responses:
        assert TOKEN not in response.text
        assert TOKEN not in str(response.headers)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(svc.runtime.settings)


async def test_the_bearer_scheme_is_matched_without_regard_to_case(start: Start) -> None:
    async with start(api_token=TOKEN) as svc:
        done = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"Authorization": f"bearer {TOKEN}"}
        )
        assert done.status_code == 201


async def test_a_token_without_the_bearer_scheme_is_refused(start: Start) -> None:
    async with start(api_token=TOKEN) as svc:
        refused = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"Authorization": TOKEN}
        )
        assert _is_problem(refused, 401)


async def test_a_refused_write_still_echoes_its_correlation_id(start: Start) -> None:
    async with start(api_token=TOKEN) as svc:
        refused = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"X-Correlation-Id": "corr-401"}
        )
        assert refused.status_code == 401
        assert refused.headers.get("x-correlation-id") == "corr-401"


def test_an_empty_api_token_is_refused_as_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An empty token must neither show as set while letting every write through (the
    # bug this pinned) nor be taken silently as "no auth": it stops the start.
    monkeypatch.setenv("CHRONIK_API_TOKEN", "")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("CHRONIK_API_TOKEN (from env): ")
    assert "empty" in message
    assert "\n" not in message


# -- trace context and correlation -------------------------------------------------------


async def test_a_posts_traceparent_and_correlation_id_go_into_its_events_metadata(
    start: Start,
) -> None:
    async with start() as svc:
        done = await svc.client.post(
            "/tickets",
            json=NEW_TICKET,
            headers={"traceparent": TRACEPARENT, "X-Correlation-Id": "corr-1"},
        )
        assert done.status_code == 201
        assert done.headers["x-correlation-id"] == "corr-1"
        assert done.headers["traceparent"] == TRACEPARENT
        [event] = await svc.runtime.store.read_stream_raw(done.json()["stream_id"])
        assert event["headers"]["traceparent"] == TRACEPARENT
        assert event["correlation_id"] == "corr-1"


async def test_without_trace_headers_a_new_trace_and_correlation_id_are_made_and_stored(
    start: Start,
) -> None:
    async with start() as svc:
        done = await svc.client.post("/tickets", json=NEW_TICKET)
        correlation = done.headers["x-correlation-id"]
        traceparent = done.headers["traceparent"]
        assert correlation
        assert TRACEPARENT_SHAPE.fullmatch(traceparent)
        [event] = await svc.runtime.store.read_stream_raw(done.json()["stream_id"])
        assert event["headers"]["traceparent"] == traceparent
        assert event["correlation_id"] == correlation
        other = await svc.client.get("/healthz")
        assert other.headers["x-correlation-id"] != correlation
        assert other.headers["traceparent"][3:35] != traceparent[3:35]


async def test_each_request_stamps_its_own_trace_on_the_events_it_appends(start: Start) -> None:
    second = "00-11111111111111111111111111111111-2222222222222222-01"
    async with start() as svc:
        opened = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"traceparent": TRACEPARENT}
        )
        ticket_id = opened.json()["id"]
        commented = await svc.client.post(
            f"/tickets/{ticket_id}/comments", json={"text": "hot"}, headers={"traceparent": second}
        )
        assert commented.status_code == 200
        events = await svc.runtime.store.read_stream_raw(f"ticket-{ticket_id}")
        assert [e["headers"]["traceparent"] for e in events] == [TRACEPARENT, second]


async def test_a_malformed_traceparent_is_replaced_by_a_new_trace(start: Start) -> None:
    malformed = "00-" + "z" * 32 + "-" + "y" * 16 + "-01"
    async with start() as svc:
        done = await svc.client.post(
            "/tickets", json=NEW_TICKET, headers={"traceparent": malformed}
        )
        assert done.status_code == 201
        assert TRACEPARENT_SHAPE.fullmatch(done.headers["traceparent"])
        [event] = await svc.runtime.store.read_stream_raw(done.json()["stream_id"])
        assert event["headers"]["traceparent"] != malformed


async def test_a_header_value_that_is_not_utf8_is_not_a_server_error(start: Start) -> None:
    async with start() as svc:
        answered = await svc.client.get("/healthz", headers={b"X-Correlation-Id": b"caf\xe9"})
        assert answered.status_code < 500


# -- the path prefix of an Ingress that does not rewrite -------------------------------


def test_a_root_path_builds_the_app_without_a_warning(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path, "http_root_path": PREFIX}).settings
    runtime = Runtime(settings, [SPEC])  # building the app needs no started runtime
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_app(runtime)


async def test_with_a_root_path_requests_arriving_with_the_prefix_are_answered(
    start: Start,
) -> None:
    async with start(http_root_path=PREFIX) as svc:
        opened = await svc.client.post(f"{PREFIX}/tickets", json=NEW_TICKET)
        assert opened.status_code == 201
        ticket = await svc.client.get(
            f"{PREFIX}/tickets/{opened.json()['id']}",
            headers={"Chronik-Min-Position": opened.headers["chronik-position"]},
        )
        assert ticket.status_code == 200
        assert ticket.json()["title"] == NEW_TICKET["title"]
        for probe in ["/healthz", "/readyz"]:
            assert (await svc.client.get(f"{PREFIX}{probe}")).status_code == 200
        missing = await svc.client.get(f"{PREFIX}/tickets/nosuch")
        assert _is_problem(missing, 404)
        assert missing.json()["instance"] == f"{PREFIX}/tickets/nosuch"


async def test_with_a_root_path_requests_without_the_prefix_are_answered_too(
    start: Start,
) -> None:
    async with start(http_root_path=PREFIX) as svc:
        assert (await svc.client.post("/tickets", json=NEW_TICKET)).status_code == 201
        assert (await svc.client.get("/healthz")).status_code == 200


async def test_the_openapi_document_says_where_the_prefixed_service_lives(start: Start) -> None:
    async with start(http_root_path=PREFIX) as svc:
        document = (await svc.client.get(f"{PREFIX}/openapi.json")).json()
        assert document["servers"] == [{"url": PREFIX}]
        assert "/tickets" in document["paths"]
        assert not any(path.startswith(PREFIX) for path in document["paths"])
        # A client joins the server URL and a documented path, as generated clients do.
        url = document["servers"][0]["url"] + "/tickets"
        assert (await svc.client.post(url, json=NEW_TICKET)).status_code == 201
        docs = await svc.client.get(f"{PREFIX}/docs")
        assert f"{PREFIX}/openapi.json" in docs.text


async def test_with_a_root_path_writes_need_the_token_and_probes_do_not(start: Start) -> None:
    async with start(http_root_path=PREFIX, api_token=TOKEN) as svc:
        refused = await svc.client.post(f"{PREFIX}/tickets", json=NEW_TICKET)
        assert _is_problem(refused, 401)
        done = await svc.client.post(
            f"{PREFIX}/tickets", json=NEW_TICKET, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert done.status_code == 201
        for probe in ["/healthz", "/readyz", "/metrics"]:
            assert (await svc.client.get(f"{PREFIX}{probe}")).status_code == 200


# -- idempotent writes and reading one's own writes ------------------------------------


async def test_a_retried_post_with_its_idempotency_key_gets_the_first_answer(
    start: Start,
) -> None:
    async with start() as svc:
        headers = {"Idempotency-Key": "key-1"}
        first = await svc.client.post("/tickets", json=NEW_TICKET, headers=headers)
        again = await svc.client.post("/tickets", json=NEW_TICKET, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert await svc.runtime.store.list_streams() == [(first.json()["stream_id"], 1)]


async def test_concurrent_retries_with_one_idempotency_key_write_once_and_agree(
    start: Start,
) -> None:
    async with start() as svc:
        headers = {"Idempotency-Key": "key-burst"}
        answers = await asyncio.gather(
            *[svc.client.post("/tickets", json=NEW_TICKET, headers=headers) for _ in range(20)]
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        assert len(await svc.runtime.store.list_streams()) == 1


async def test_an_idempotency_key_used_for_another_request_is_refused_with_422(
    start: Start,
) -> None:
    async with start() as svc:
        headers = {"Idempotency-Key": "key-2"}
        await svc.client.post("/tickets", json=NEW_TICKET, headers=headers)
        other = await svc.client.post(
            "/tickets", json={**NEW_TICKET, "title": "Other"}, headers=headers
        )
        assert _is_problem(other, 422)
        assert len(await svc.runtime.store.list_streams()) == 1


async def test_a_read_with_the_position_of_a_write_sees_that_write(start: Start) -> None:
    async with start() as svc:
        for _ in range(5):
            opened = await svc.client.post("/tickets", json=NEW_TICKET)
            ticket_id = opened.json()["id"]
            await svc.client.post(f"/tickets/{ticket_id}/comments", json={"text": "1"})
            commented = await svc.client.post(f"/tickets/{ticket_id}/comments", json={"text": "2"})
            read = await svc.client.get(
                f"/tickets/{ticket_id}",
                headers={"Chronik-Min-Position": commented.headers["chronik-position"]},
            )
            assert read.status_code == 200
            assert read.json()["comments"] == 2


@pytest.mark.parametrize("position", ["-1", "ten", "1.5"])
async def test_a_malformed_min_position_is_a_400_problem(start: Start, position: str) -> None:
    async with start() as svc:
        answered = await svc.client.get("/tickets", headers={"Chronik-Min-Position": position})
        assert _is_problem(answered, 400)


@pytest.mark.parametrize("position", [str(2**63), str(10**40), "9" * 5000])
async def test_a_min_position_no_store_can_reach_is_a_400_naming_the_header(
    start: Start, position: str
) -> None:
    async with start(consistency_wait=30) as svc:
        answered = await svc.client.get("/tickets", headers={"Chronik-Min-Position": position})
        assert _is_problem(answered, 400)
        assert "Chronik-Min-Position" in answered.json()["detail"]
        assert "retry-after" not in answered.headers


async def test_the_highest_position_a_store_can_reach_is_waited_for(start: Start) -> None:
    async with start(consistency_wait=0.2) as svc:
        answered = await svc.client.get(
            "/tickets", headers={"Chronik-Min-Position": str(2**63 - 1)}
        )
        assert _is_problem(answered, 503)


async def test_a_position_the_read_model_does_not_reach_in_time_is_a_503_to_retry(
    start: Start,
) -> None:
    async with start(consistency_wait=0.2) as svc:
        answered = await svc.client.get("/tickets", headers={"Chronik-Min-Position": "1000"})
        assert _is_problem(answered, 503)
        assert answered.headers["retry-after"] == "1"


async def test_metrics_count_requests_by_route_template(start: Start) -> None:
    async with start() as svc:
        opened = await svc.client.post("/tickets", json=NEW_TICKET)
        position = {"Chronik-Min-Position": opened.headers["chronik-position"]}
        await svc.client.get(f"/tickets/{opened.json()['id']}", headers=position)
        await svc.client.get("/tickets/nosuch")
        metrics = (await svc.client.get("/metrics")).text
    assert 'method="POST",route="/tickets",status="201"' in metrics
    assert 'method="GET",route="/tickets/{ticket_id}",status="200"' in metrics
    assert 'method="GET",route="/tickets/{ticket_id}",status="404"' in metrics
    assert "chronik_events_appended_total 1.0" in metrics
