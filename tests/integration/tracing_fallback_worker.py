"""Events across contexts with OpenTelemetry absent, or present without a provider.

Run as ``python tracing_fallback_worker.py DATA_DIR (blocked|no-provider)``; it prints
what the caller sees and what the events carry, as one JSON object.

``blocked`` makes ``import opentelemetry`` fail, as on a machine without the ``otel``
extra. FastAPI itself depends on the OpenTelemetry API (from 0.16x), so without it
there is no HTTP adapter: a producing store with its outbox, the relay, the in-memory
broker and a consumer (``messaging_harness``) carry a request's context instead, set as
the HTTP adapter sets it. ``no-provider`` leaves the API importable but sets no
TracerProvider and runs the reference system, embedded, through HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

DEADLINE = 30.0
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def without_opentelemetry(data_dir: Path) -> dict[str, Any]:
    from messaging_harness import (
        ConsumingContext,
        Producer,
        read_everything,
        running_relay,
        subscribed,
        wait_until,
    )

    from chronik import tracing
    from chronik.adapters import open_broker
    from chronik.eventstore.context import ambient_metadata
    from chronik.eventstore.port import Metadata
    from chronik.messaging import Relay

    producer = await Producer.open(f"sqlite:///{data_dir}/producer.db", "shop")
    consuming = await ConsumingContext.open(f"sqlite:///{data_dir}/consumer.db", producer)
    broker = await open_broker("memory://")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(producer.store.close)
        stack.push_async_callback(consuming.store.close)
        await stack.enter_async_context(subscribed(consuming, broker))
        await stack.enter_async_context(
            running_relay(Relay(producer.store, broker, storage=producer.outbox.storage))
        )
        headers = {"traceparent": CALLER, "tracestate": "vendor=ada"}
        with ambient_metadata(Metadata(correlation_id="request-1", headers=headers)):
            await producer.append_numbered("account-1", 1)

        async def seen() -> bool:
            return bool(await consuming.seen())

        await wait_until("the consumer's effect", seen, within=DEADLINE)
        [order] = await read_everything(producer.store)
        [effect] = await consuming.seen()
    return {
        "opentelemetry_imported": "opentelemetry.trace" in sys.modules,
        "tracing_active": tracing.active(),
        "answered": None,
        "order": dict(order.metadata.headers or {}),
        "budget": dict(effect.metadata.headers or {}),
    }


def without_provider(data_dir: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    import reference
    from chronik import tracing
    from chronik.http.app import create_app
    from chronik.runtime.service import Runtime
    from chronik.runtime.settings import load_settings

    runtime = Runtime(load_settings({"data_dir": data_dir}).settings, reference.specs())
    with TestClient(create_app(runtime, own_lifespan=True)) as client:
        assert client.portal is not None
        deadline = time.monotonic() + DEADLINE
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        lead = client.post("/sales/leads", json={"name": "Ada", "phone": "+49 30 901820"})
        ordered = client.post(
            f"/sales/leads/{lead.json()['id']}/orders",
            json={"amount_cents": 50_000, "currency": "EUR"},
            headers={"traceparent": CALLER, "tracestate": "vendor=ada"},
        )
        while not (budget := client.portal.call(runtime.store.read_stream, "budget-main")):
            assert time.monotonic() < deadline, "the order never reached campaigns"
            time.sleep(0.05)
        order = client.portal.call(runtime.store.read_stream, ordered.json()["stream_id"])
    return {
        "opentelemetry_imported": "opentelemetry.trace" in sys.modules,
        "tracing_active": tracing.active(),
        "answered": ordered.headers["traceparent"],
        "order": dict(order[-1].metadata.headers or {}),
        "budget": dict(budget[-1].metadata.headers or {}),
    }


if __name__ == "__main__":
    where, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "blocked":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails
        seen = asyncio.run(without_opentelemetry(where))
    else:
        seen = without_provider(where)
    print(json.dumps(seen))
