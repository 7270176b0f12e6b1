"""One trace across contexts, embedded: an order in sales to campaigns' consumer and back.

The reference system runs as ``chronik demo`` runs it (one process, one SQLite file,
the in-process bus), inside this test's process, with OpenTelemetry's SDK set up as a
user who exports would (a TracerProvider) and the SDK's in-memory exporter. One order
posted to sales makes one trace:

    POST /sales/leads/{lead_id}/orders -> append lead-… -> send sales.order_submitted.v1
        -> process sales.order_submitted.v1 (campaigns' consumer) -> append budget-main

The provider is the process's global one: each test sets its own and takes it away at
its end, so that the tests after it run without one, as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import reference
from chronik import tracing
from chronik.eventstore.context import current_metadata
from chronik.http.app import RequestContext, Routes, create_app
from chronik.http.auth import Access
from chronik.runtime.observability import Metrics
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings

DEADLINE = 30.0
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _reset_global_provider() -> None:
    """Back to no TracerProvider, as opentelemetry-test-utils' ``reset_trace_globals``
    does: the API lets a process set one once, and the other tests run without."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A TracerProvider for this test only, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_global_provider()


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("CHRONIK_", "OTEL_"))]:
        monkeypatch.delenv(name)


@dataclass
class Served:
    client: TestClient
    runtime: Runtime


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings = load_settings({"data_dir": tmp_path}).settings
    runtime = Runtime(settings, reference.specs())
    with TestClient(create_app(runtime, own_lifespan=True)) as client:
        deadline = time.monotonic() + DEADLINE
        while (answer := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, answer.json()
            time.sleep(0.05)
        yield Served(client, runtime)


def hex_id(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return hex_id(span.context.span_id, 16)


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else hex_id(span.parent.span_id, 16)


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return hex_id(span.context.trace_id, 32)


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The span's parent, its parent's parent, ... as far as they are among ``spans``."""
    by_id = {span_id(s): s for s in spans}
    found: list[ReadableSpan] = []
    while (parent := by_id.get(parent_id(span) or "")) is not None:
        found.append(parent)
        span = parent
    return found


def one(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def spans_when(
    exporter: InMemorySpanExporter, name: str, within: float = DEADLINE
) -> tuple[ReadableSpan, ...]:
    """The finished spans, once one named ``name`` is among them."""
    deadline = time.monotonic() + within
    while True:
        found = exporter.get_finished_spans()
        if any(s.name == name for s in found):
            return found
        assert time.monotonic() < deadline, f"no span {name!r}: {[s.name for s in found]}"
        time.sleep(0.05)


def stored_headers(served: Served, stream_id: str) -> list[dict[str, str]]:
    """The metadata headers of a stream's events, as the store reads them back."""
    assert served.client.portal is not None
    events = served.client.portal.call(served.runtime.store.read_stream, stream_id)
    return [dict(e.metadata.headers or {}) for e in events]


def test_an_order_in_sales_is_one_trace_through_campaigns_consumer(
    spans: InMemorySpanExporter, served: Served
) -> None:
    client = served.client
    lead = client.post("/sales/leads", json={"name": "Ada", "phone": "+49 30 901820"})
    assert lead.status_code == 201, lead.text
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    ordered = client.post(
        f"/sales/leads/{lead.json()['id']}/orders",
        json={"amount_cents": 50_000, "currency": "EUR"},
        headers={"traceparent": caller, "tracestate": "vendor=ada,other=1"},
    )
    assert ordered.status_code == 200, ordered.text
    found = spans_when(spans, "append budget-main")
    trace_spans = [s for s in found if trace_id(s) == CALLER_TRACE]

    server = one(trace_spans, "POST /sales/leads/{lead_id}/orders", SpanKind.SERVER)
    append = one(trace_spans, f"append {ordered.json()['stream_id']}", SpanKind.CLIENT)
    send = one(trace_spans, "send sales.order_submitted.v1", SpanKind.PRODUCER)
    process = one(trace_spans, "process sales.order_submitted.v1", SpanKind.CONSUMER)
    budget = one(trace_spans, "append budget-main", SpanKind.CLIENT)

    # The caller's span is the server span's parent; each step is the next one's.
    assert parent_id(server) == CALLER_SPAN
    assert server.parent is not None and server.parent.is_remote
    # FastAPI's own spans (dependencies, endpoint) may stand between request and append.
    assert server in ancestors(append, trace_spans)
    assert not [s for s in ancestors(append, trace_spans) if s.kind == SpanKind.SERVER][1:]
    assert parent_id(send) == span_id(append)
    assert parent_id(process) == span_id(send)
    assert process.parent is not None and process.parent.is_remote, "through the message"
    assert parent_id(budget) == span_id(process)

    # The answer names chronik's server span, not the caller's span, in the caller's trace.
    assert ordered.headers["traceparent"] == f"00-{CALLER_TRACE}-{span_id(server)}-01"
    for span in (server, append, send, process, budget):
        assert span.context is not None
        assert span.context.trace_state.to_header() == "vendor=ada,other=1", span.name

    assert server.attributes is not None
    assert server.attributes["http.route"] == "/sales/leads/{lead_id}/orders"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 200
    assert append.attributes is not None and append.attributes["db.system"] == "sqlite"
    assert append.attributes["chronik.position"] == ordered.json()["position"]
    assert send.attributes is not None and process.attributes is not None
    for span in (send, process):
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "chronik_memory"
        assert span.attributes["messaging.destination.name"] == "sales.order_submitted.v1"
        assert span.attributes["messaging.message.id"] == send.attributes["cloudevents.event_id"]
    assert send.attributes["messaging.operation.type"] == "send"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.consumer.group.name"] == "campaigns"

    # The events carry the span that appended them: what they cause continues from there.
    [order_headers] = stored_headers(served, ordered.json()["stream_id"])[-1:]
    assert order_headers["traceparent"] == f"00-{CALLER_TRACE}-{span_id(append)}-01"
    assert order_headers["tracestate"] == "vendor=ada,other=1"
    budget_headers = stored_headers(served, "budget-main")[-1]
    assert budget_headers["traceparent"] == f"00-{CALLER_TRACE}-{span_id(budget)}-01"


def test_a_request_without_a_trace_starts_one_and_projections_link_back_to_it(
    spans: InMemorySpanExporter, served: Served
) -> None:
    client = served.client
    lead = client.post("/sales/leads", json={"name": "Grace", "phone": "+49 30 901821"})
    assert lead.status_code == 201, lead.text
    found = spans_when(spans, "project lead_search")
    server = one(found, "POST /sales/leads", SpanKind.SERVER)
    assert server.parent is None, "a new trace, rooted at chronik's server span"
    answered = lead.headers["traceparent"]
    assert server.context is not None
    flags = f"{int(server.context.trace_flags):02x}"
    assert answered == f"00-{trace_id(server)}-{span_id(server)}-{flags}"
    append = one(found, f"append {lead.json()['stream_id']}", SpanKind.CLIENT)
    assert server in ancestors(append, found)

    projected = [s for s in found if s.name == "project lead_search"]
    linked = {
        (hex_id(link.context.trace_id, 32), hex_id(link.context.span_id, 16))
        for s in projected
        for link in s.links
    }
    assert (trace_id(server), span_id(append)) in linked
    for span in projected:
        assert span.parent is None, "a batch is a trace of its own, linked to its events"
        assert span.attributes is not None
        events = span.attributes["chronik.events"]
        assert isinstance(events, int) and events >= 1


def test_an_unmatched_route_and_a_refused_command_are_spans_named_as_the_convention_says(
    spans: InMemorySpanExporter, served: Served
) -> None:
    client = served.client
    assert client.get("/no/such/path").status_code == 404
    refused = client.post("/sales/leads", content=b"{not json", headers={"content-type": "x"})
    assert refused.status_code in (400, 422)
    found = spans_when(spans, "POST /sales/leads")
    unmatched = one(found, "GET", SpanKind.SERVER)
    assert unmatched.attributes is not None
    assert "http.route" not in unmatched.attributes
    assert unmatched.attributes["http.response.status_code"] == 404
    post = one(found, "POST /sales/leads", SpanKind.SERVER)
    assert post.attributes is not None
    assert post.attributes["http.response.status_code"] == refused.status_code
    assert not [s for s in found if s.name.startswith("append ")], "nothing was appended"


def test_tracing_is_active_while_a_provider_is_set(spans: InMemorySpanExporter) -> None:
    assert tracing.active()


def test_tracing_is_off_without_a_provider() -> None:
    assert not tracing.active()


@pytest.mark.parametrize("mode", ["blocked", "no-provider"])
def test_without_opentelemetry_or_a_provider_the_callers_trace_is_carried_as_before(
    tmp_path: Path, mode: str
) -> None:
    """Without the otel extra (its import fails) or without a TracerProvider, chronik
    runs as it did: the caller's traceparent and tracestate go with the events, through
    the CloudEvent, into the consuming context's events (and come back in the answer:
    the HTTP adapter needs FastAPI, which needs the API, so only with it)."""
    worker = Path(__file__).with_name("tracing_fallback_worker.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHRONIK_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, str(worker), str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    assert seen["opentelemetry_imported"] is (mode == "no-provider")
    assert seen["tracing_active"] is False
    assert seen["answered"] == (None if mode == "blocked" else caller)
    for carried in (seen["order"], seen["budget"]):
        assert carried["traceparent"] == caller
        assert carried["tracestate"] == "vendor=ada"


def test_without_a_server_span_around_it_chronik_starts_its_own(
    spans: InMemorySpanExporter,
) -> None:
    """FastAPI before its own telemetry (or with it off) starts no server span: chronik's
    request middleware then does, named after the route, and answers with it."""
    seen: dict[str, str | None] = {}

    async def endpoint(request: Request) -> Response:
        current = trace.get_current_span().get_span_context()
        seen["current"] = hex_id(current.span_id, 16)
        metadata = current_metadata()
        seen["carried"] = (metadata.headers or {}).get("traceparent") if metadata else None
        return Response("{}", 500 if request.path_params["item"] == "bad" else 200)

    inner = Starlette(routes=[Route("/items/{item}", endpoint, methods=["POST"])])
    routes = Routes()
    routes.add(inner.router.routes)
    app = RequestContext(inner, Access(None, "none", set()), Metrics(), routes)
    with TestClient(app) as client:
        caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        done = client.post("/items/a", headers={"traceparent": caller, "tracestate": "k=v"})
        failed = client.post("/items/bad")
    [ok, bad] = spans.get_finished_spans()
    assert (ok.name, ok.kind, bad.name) == ("POST /items/{item}", SpanKind.SERVER, ok.name)
    assert parent_id(ok) == CALLER_SPAN and trace_id(ok) == CALLER_TRACE
    assert done.headers["traceparent"] == f"00-{CALLER_TRACE}-{span_id(ok)}-01"
    assert seen == {"current": span_id(bad), "carried": failed.headers["traceparent"]}
    assert ok.attributes is not None and bad.attributes is not None
    assert ok.attributes["http.route"] == "/items/{item}"
    assert ok.attributes["http.response.status_code"] == 200
    assert ok.context is not None and ok.context.trace_state.to_header() == "k=v"
    assert bad.attributes["http.response.status_code"] == 500
    assert bad.status.status_code == StatusCode.ERROR
