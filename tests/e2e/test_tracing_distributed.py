"""One trace across contexts, split as in production: PostgreSQL, NATS, separate processes.

Sales and campaigns each run as ``chronik serve`` on a schema of their own, and sales'
outbox goes to NATS through a ``chronik relay`` process, as in
test_reference_distributed.py. Each process has OpenTelemetry's SDK set up
(traced_chronik.py) and writes its spans to a file of its own; the test joins the
files. One order posted to sales is one trace over three processes:

    sales:        POST /leads/{lead_id}/orders -> append lead-…
    sales-relay:  send sales.order_submitted.v1                     (NATS)
    campaigns:    process sales.order_submitted.v1 -> append budget-main
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reference_flows import share_of
from reference_system import Api, Relay, Service, launched
from test_reference_distributed import drop_schemas, forget_namespace, nats_reachable

from conftest import service_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRACED = (sys.executable, str(Path(__file__).with_name("traced_chronik.py")))
CONTEXTS = ("sales", "campaigns")
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
DEADLINE = 60.0
Span = dict[str, Any]


class TracedService(Service):
    command = TRACED


class TracedRelay(Relay):
    command = TRACED


@dataclass
class Traced:
    sales: Api
    campaigns: Api
    files: list[Path]

    def spans(self) -> list[Span]:
        """Every span the processes finished so far (a line being written is left out)."""
        found = []
        for path in self.files:
            if path.exists():
                for line in path.read_text().splitlines():
                    try:
                        found.append(json.loads(line))
                    except json.JSONDecodeError:  # the last line, half written
                        continue
        return found


@pytest.fixture
async def traced(postgres_url: str, tmp_path: Path) -> AsyncIterator[Traced]:
    if not nats_reachable():
        service_missing("NATS is not reachable at 127.0.0.1:4222")
    run = uuid.uuid4().hex[:10]
    namespace = f"t{run}"
    broker_url = f"nats://127.0.0.1:4222?namespace={namespace}"
    schemas = {context: f"{context}_{run}" for context in CONTEXTS}
    stores = {context: f"{postgres_url}?schema={schemas[context]}" for context in CONTEXTS}
    files = {name: tmp_path / f"{name}.spans" for name in (*CONTEXTS, "sales-relay")}
    try:
        with launched(tmp_path / "logs") as launcher:
            services = {}
            for context in CONTEXTS:
                service = TracedService(
                    context,
                    {
                        "CHRONIK_APP": f"{context}:spec",
                        "CHRONIK_EVENT_STORE_URL": stores[context],
                        "CHRONIK_BROKER_URL": broker_url,
                        "CHRONIK_RUN": "http,projections,consumers,processes",
                        "CHRONIK_TEST_SPANS": str(files[context]),
                        "OTEL_SERVICE_NAME": context,
                    },
                    launcher.logs,
                )
                launcher.processes.append(service)
                service.start()
                services[context] = service
            relay = TracedRelay("sales-relay", stores["sales"], broker_url, launcher.logs)
            relay.env |= {
                "CHRONIK_TEST_SPANS": str(files["sales-relay"]),
                "OTEL_SERVICE_NAME": "sales-relay",
            }
            launcher.processes.append(relay)
            relay.start()
            for service in services.values():
                await service.wait_ready(within=60)
            await relay.wait_started(within=60)
            apis = [Api(services[context].url) for context in CONTEXTS]
            try:
                yield Traced(apis[0], apis[1], list(files.values()))
            finally:
                for api in apis:
                    await api.close()
    finally:
        await forget_namespace(namespace)
        await drop_schemas(postgres_url, list(schemas.values()))


def service_of(span: Span) -> str:
    name: str = span["resource"]["attributes"]["service.name"]
    return name


def short(hex_id: str | None) -> str | None:
    """``0x…`` as the SDK writes ids, as the bare hex of a traceparent."""
    return None if hex_id is None else hex_id.removeprefix("0x")


def one(spans: list[Span], name: str, kind: str) -> Span:
    found = [s for s in spans if s["name"] == name and s["kind"] == f"SpanKind.{kind}"]
    assert len(found) == 1, [(s["name"], s["kind"], service_of(s)) for s in spans]
    return found[0]


def ancestors(span: Span, spans: list[Span]) -> list[Span]:
    by_id = {s["context"]["span_id"]: s for s in spans}
    found = []
    while (parent := by_id.get(span["parent_id"])) is not None:
        found.append(parent)
        span = parent
    return found


async def test_an_order_in_sales_is_one_trace_across_three_processes(traced: Traced) -> None:
    lead = await traced.sales.post("/leads", {"name": "Ada", "phone": "+49 30 901820"})
    amount = 80_000
    answer = await traced.sales.client.post(
        f"/leads/{lead.id}/orders",
        json={"amount_cents": amount, "currency": "EUR"},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert answer.status_code == 200, answer.text
    stream_id = answer.json()["stream_id"]

    deadline = time.monotonic() + DEADLINE
    while True:
        spans = [s for s in traced.spans() if short(s["context"]["trace_id"]) == CALLER_TRACE]
        if any(s["name"] == "append budget-main" for s in spans):
            break
        assert time.monotonic() < deadline, [s["name"] for s in spans]
        await asyncio.sleep(0.1)
    budget = await traced.campaigns.get("/budget")
    assert budget["total_cents"] == share_of(amount)

    server = one(spans, "POST /leads/{lead_id}/orders", "SERVER")
    append = one(spans, f"append {stream_id}", "CLIENT")
    send = one(spans, "send sales.order_submitted.v1", "PRODUCER")
    process = one(spans, "process sales.order_submitted.v1", "CONSUMER")
    credit = one(spans, "append budget-main", "CLIENT")

    assert [service_of(s) for s in (server, append, send, process, credit)] == [
        "sales",
        "sales",
        "sales-relay",
        "campaigns",
        "campaigns",
    ]
    assert short(server["parent_id"]) == CALLER_SPAN
    assert server in ancestors(append, spans)
    assert send["parent_id"] == append["context"]["span_id"]
    assert process["parent_id"] == send["context"]["span_id"]
    assert credit["parent_id"] == process["context"]["span_id"]
    assert answer.headers["traceparent"].split("-")[2] == short(server["context"]["span_id"])

    assert append["attributes"]["db.system"] == "postgresql"
    assert credit["attributes"]["db.system"] == "postgresql"
    for span in (send, process):
        assert span["attributes"]["messaging.system"] == "nats"
        assert span["attributes"]["messaging.destination.name"] == "sales.order_submitted.v1"
    assert process["attributes"]["messaging.consumer.group.name"] == "campaigns"
    assert (
        send["attributes"]["messaging.message.id"] == process["attributes"]["messaging.message.id"]
    )
