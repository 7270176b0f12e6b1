"""Metrics and logs of a running service: the embedded reference system, in process.

The exposition is read with prometheus-client's own parser, so a name, a type or a
``_total`` that Prometheus would read differently fails here. Logs are captured from
the handler ``configure_logging`` installs (as ``chronik serve`` configures them), as
the JSON lines a log collector would read.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import reference
from chronik.errors import StoreUnavailableError
from chronik.http.app import create_app
from chronik.runtime.observability import configure_logging
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
#: every chronik family: name (as the parser names it: a counter's ``_total`` is on its
#: samples) -> (type, the unit its name carries; None for a 0/1 flag)
CHRONIK_FAMILIES = {
    "chronik_build_info": ("gauge", "info"),
    "chronik_http_request_duration_seconds": ("histogram", "seconds"),
    "chronik_append_duration_seconds": ("histogram", "seconds"),
    "chronik_append_concurrency_retries": ("counter", "retries"),
    "chronik_events_appended": ("counter", "events"),
    "chronik_projection_batch_duration_seconds": ("histogram", "seconds"),
    "chronik_projection_events_applied": ("counter", "events"),
    "chronik_projection_lag_events": ("gauge", "events"),
    "chronik_projection_lag_seconds": ("gauge", "seconds"),
    "chronik_projection_parked_events": ("gauge", "events"),
    "chronik_outbox_pending_messages": ("gauge", "messages"),
    "chronik_outbox_oldest_pending_age_seconds": ("gauge", "seconds"),
    "chronik_relay_publish_duration_seconds": ("histogram", "seconds"),
    "chronik_relay_messages_published": ("counter", "messages"),
    "chronik_consumer_handle_duration_seconds": ("histogram", "seconds"),
    "chronik_consumer_messages_handled": ("counter", "messages"),
    "chronik_dead_letter_messages": ("gauge", "messages"),
    "chronik_process_timeouts_fired": ("counter", "timeouts"),
    "chronik_ready": ("gauge", None),
}
#: the standard collectors' series that must be there too (a few of each)
STANDARD_FAMILIES = {
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "python_info": "gauge",
    "python_gc_collections": "counter",
}


@dataclass
class Service:
    runtime: Runtime
    app: FastAPI
    client: httpx.AsyncClient

    async def metrics(self) -> dict[str, Any]:
        """The families of a scrape by name, read by prometheus-client's parser."""
        answered = await self.client.get("/metrics")
        assert answered.status_code == 200
        return {f.name: f for f in text_string_to_metric_families(answered.text)}

    async def samples(self, name: str) -> list[Sample]:
        """Every sample of a scrape named ``name``."""
        families = await self.metrics()
        return [s for f in families.values() for s in f.samples if s.name == name]


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Service]:
    """The three contexts in one process (SQLite, in-process bus), as ``make demo`` runs."""
    settings = load_settings({"data_dir": tmp_path, "service": "reference-embedded"}).settings
    runtime = Runtime(settings, reference.specs())
    await runtime.start()
    app = create_app(runtime)
    # No raise_app_exceptions=False: what reaches the server fails the test.
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Service(runtime, app, client)
    finally:
        await runtime.stop()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The JSON lines the runtime logs while the test runs (as ``chronik serve`` logs)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access").level
    saved = structlog.get_config()
    stream = io.StringIO()
    configure_logging("info", "json", service="reference-embedded", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("uvicorn.access").setLevel(access)
        structlog.configure(**saved)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def _until(check: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.05)


async def _lead_needing_a_visit(svc: Service) -> str:
    """A lead whose follow-up needs a visit: sales publishes, travel consumes."""
    lead = await svc.client.post("/sales/leads", json={"name": "Ada", "phone": "+49 30 901820"})
    assert lead.status_code == 201, lead.text
    on = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    body = {"on": on, "needs_visit": True, "city": "Berlin"}
    followed = await svc.client.post(f"/sales/leads/{lead.json()['id']}/follow-up", json=body)
    assert followed.status_code == 200, followed.text
    return str(lead.json()["id"])


# -- metrics -----------------------------------------------------------------------------


async def test_every_chronik_series_has_the_name_and_type_of_the_table(embedded: Service) -> None:
    await _lead_needing_a_visit(embedded)
    families = await embedded.metrics()
    chronik = {name: f.type for name, f in families.items() if name.startswith("chronik_")}
    assert chronik == {name: kind for name, (kind, _) in CHRONIK_FAMILIES.items()}
    for name, (_, unit) in CHRONIK_FAMILIES.items():
        assert unit is None or unit in name.split("_"), f"{name} does not name its unit"
    for name, kind in STANDARD_FAMILIES.items():
        assert families[name].type == kind, name
    for family in families.values():
        if family.type == "counter":
            assert all(s.name == f"{family.name}_total" for s in family.samples), family.name
        if family.type == "histogram":
            buckets = {s.labels["le"] for s in family.samples if s.name.endswith("_bucket")}
            assert not family.samples or "+Inf" in buckets, family.name


def test_the_metrics_table_of_the_docs_is_this_table() -> None:
    documented = re.findall(r"^\| `(chronik_[a-z_]+)` \| ([a-z]+) \|", OPERATIONS.read_text(), re.M)
    exported = {
        f"{name}_total" if kind == "counter" else name: kind
        for name, (kind, _) in CHRONIK_FAMILIES.items()
    }
    assert dict(documented) == exported
    assert len(documented) == len(exported), "a series documented twice"


async def test_no_created_series_doubles_the_count(embedded: Service) -> None:
    await _lead_needing_a_visit(embedded)
    families = await embedded.metrics()
    names = [s.name for f in families.values() for s in f.samples]
    assert "chronik_append_duration_seconds_count" in names
    assert [n for n in names if n.endswith("_created")] == []


async def test_build_info_names_the_version_python_and_service(embedded: Service) -> None:
    [info] = await embedded.samples("chronik_build_info")
    assert info.value == 1
    assert info.labels["service"] == "reference-embedded"
    assert info.labels["version"] == __import__("chronik").__version__
    assert info.labels["python_version"].count(".") == 2


async def test_the_route_label_is_the_full_template_unique_per_route(embedded: Service) -> None:
    client = embedded.client
    await client.post("/campaigns/campaigns", json={})  # 422: still labelled by its route
    await client.get("/campaigns/campaigns")
    await client.get("/campaigns/campaigns/nosuch")
    await client.get("/sales/leads/nosuch")
    await client.get("/travel/trips/nosuch")
    await client.get("/campaigns/budget")
    await client.get("/nowhere")
    counts = await embedded.samples("chronik_http_request_duration_seconds_count")
    labelled = {(s.labels["method"], s.labels["route"]) for s in counts}
    assert labelled >= {
        ("POST", "/campaigns/campaigns"),
        ("GET", "/campaigns/campaigns"),
        ("GET", "/campaigns/campaigns/{campaign_id}"),
        ("GET", "/sales/leads/{lead_id}"),
        ("GET", "/travel/trips/{trip_id}"),
        ("GET", "/campaigns/budget"),
        ("GET", "unmatched"),
    }
    routes = {route for _, route in labelled} - {"/metrics", "unmatched"}
    assert all(r.split("/")[1] in ("sales", "campaigns", "travel") for r in routes), routes


async def test_appends_projection_pages_relay_and_consumer_are_timed(embedded: Service) -> None:
    await _lead_needing_a_visit(embedded)

    async def count(name: str, **labels: str) -> float:
        found = await embedded.samples(name)
        return sum(s.value for s in found if labels.items() <= s.labels.items())

    await _until(
        lambda: _positive(
            count("chronik_consumer_handle_duration_seconds_count", outcome="handled")
        ),
        "a consumer handled the visit",
    )
    assert await count("chronik_append_duration_seconds_count") >= 2
    assert await count("chronik_events_appended_total") >= 2
    assert await count("chronik_relay_publish_duration_seconds_count") >= 1
    assert await count("chronik_relay_messages_published_total") >= 1
    assert await count("chronik_consumer_messages_handled_total", consumer="travel") >= 1
    assert await count("chronik_projection_batch_duration_seconds_count", projection="lead_search")
    assert await count("chronik_projection_events_applied_total", projection="lead_search") >= 2
    assert await count("chronik_outbox_pending_messages") == 0
    assert await count("chronik_outbox_oldest_pending_age_seconds") == 0
    assert await count("chronik_ready") == 1


async def _positive(value: Any) -> bool:
    return bool(await value > 0)


async def test_a_scrape_while_the_store_is_away_answers_not_ready(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def away(*args: object, **kwargs: object) -> Any:
        raise StoreUnavailableError("the database cannot be reached")

    # What the scrape reads from the store: its head, the runners' rows, the outbox.
    monkeypatch.setattr(embedded.runtime.store, "head_position", away)
    monkeypatch.setattr(embedded.runtime.messages, "outbox_status", away)
    monkeypatch.setattr(embedded.runtime, "projection_statuses", away)
    [ready] = await embedded.samples("chronik_ready")
    assert ready.value == 0
    [outbox] = await embedded.samples("chronik_outbox_pending_messages")
    assert outbox.value == 0  # the last value read, none yet


# -- logs ----------------------------------------------------------------------------------


async def test_each_request_logs_one_line_with_its_fields(
    embedded: Service, logs: io.StringIO
) -> None:
    created = await embedded.client.post(
        "/sales/leads",
        json={"name": "Ada", "phone": "+49 30 901820"},
        headers={"X-Correlation-Id": "corr-42"},
    )
    await embedded.client.get("/healthz")  # a probe: debug only, not at info
    requests = [line for line in _lines(logs) if line["event"] == "request"]
    assert len(requests) == 1, requests
    [line] = requests
    assert line["method"] == "POST"
    assert line["route"] == "/sales/leads"
    assert line["status"] == created.status_code == 201
    assert line["context"] == "sales"
    assert line["duration_ms"] > 0
    assert line["correlation_id"] == "corr-42"
    assert line["trace_id"] == created.headers["traceparent"][3:35]
    assert line["service"] == "reference-embedded"
    assert line["logger"] == "chronik.http.app"
    assert line["level"] == "info"


async def test_a_500_logs_one_traceback_and_is_answered_as_a_problem(
    embedded: Service, logs: io.StringIO
) -> None:
    @embedded.app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the disk caught fire")

    # The transport raises what reaches the server: nothing may, or a server logs it again.
    answered = await embedded.client.get("/boom")
    assert answered.status_code == 500
    assert answered.headers["content-type"] == "application/problem+json"
    assert "fire" not in answered.text
    text = logs.getvalue()
    assert text.count("Traceback (most recent call last)") == 1
    lines = _lines(logs)
    [failed] = [line for line in lines if "exception" in line]
    assert failed["event"] == "request failed"
    assert failed["route"] == "/boom"
    assert "RuntimeError: the disk caught fire" in failed["exception"]
    [request] = [line for line in lines if line["event"] == "request"]
    assert request["status"] == 500
    assert "exception" not in request


async def test_a_worker_logs_an_event_with_fields_under_its_module_path(
    embedded: Service, logs: io.StringIO
) -> None:
    # A request this version does not know (written by a newer CLI, say): the runner
    # ignores it and says so.
    await embedded.runtime.engine.backend.request("lead_search", "defragment")

    def ignored() -> list[dict[str, Any]]:
        return [x for x in _lines(logs) if x["event"] == "projection ignores an unknown request"]

    async def logged() -> bool:
        return bool(ignored())

    await _until(logged, "logged the ignored request")
    [line] = ignored()
    assert (line["projection"], line["request"]) == ("lead_search", "defragment")
    assert line["logger"] == "chronik.projections.engine"
    assert line["level"] == "warning"
    assert line["service"] == "reference-embedded"
