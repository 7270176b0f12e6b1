"""SIGTERM to ``chronik serve`` in the middle of a burst of writes: nothing acknowledged is lost.

The shutdown Kubernetes expects: readiness turns 503 at once, the server keeps serving
for the drain delay, then stops accepting; requests in flight finish; the process exits
within the grace period. The store is checked afterwards for every acknowledged write.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from runtime_process import serving

from chronik.adapters import open_event_store
from chronik.cli import embedded_url
from chronik.eventstore import EventTypes
from reference.tour import TicketClosed, TicketCommented, TicketOpened

GRACE = 8.0
DRAIN = 1.0
WRITERS = 24
ENOUGH = 200  # acknowledged writes before the signal


@dataclass
class Burst:
    """What the writers saw: acknowledged tickets, by when, and the failures."""

    acknowledged: dict[str, float] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)


async def _writer(client: httpx.AsyncClient, burst: Burst, stop: asyncio.Event) -> None:
    while not stop.is_set():
        key = uuid.uuid4().hex
        try:
            response = await client.post(
                "/tickets",
                json={"title": f"burst {key}", "reporter": "Ada"},
                headers={"Idempotency-Key": key},
            )
        except httpx.TransportError as exc:
            # The server stopped accepting or closed an idle connection: this writer is done.
            burst.refused.append(type(exc).__name__)
            return
        if response.is_success:
            burst.acknowledged[response.json()["id"]] = time.monotonic()
            if len(burst.acknowledged) >= ENOUGH:
                burst.enough.set()
        else:
            burst.failures.append(f"{response.status_code} {response.text}")


@pytest.mark.slow
async def test_sigterm_mid_burst_keeps_every_acknowledged_write_and_exits_within_the_grace(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {
        "CHRONIK_DATA_DIR": str(data),
        "CHRONIK_SHUTDOWN_GRACE": str(GRACE),
        "CHRONIK_SHUTDOWN_DRAIN_DELAY": str(DRAIN),
    }
    burst = Burst()
    stop = asyncio.Event()
    async with serving(tmp_path / "logs", env) as served:
        limits = httpx.Limits(max_connections=WRITERS)
        async with (
            httpx.AsyncClient(base_url=served.url, timeout=15, limits=limits) as writers,
            httpx.AsyncClient(base_url=served.url, timeout=5) as probe,
        ):
            tasks = [asyncio.create_task(_writer(writers, burst, stop)) for _ in range(WRITERS)]
            await asyncio.wait_for(burst.enough.wait(), 30)
            signalled = served.terminate()
            readiness = await probe.get("/readyz")
            during_drain = await probe.get("/healthz")
            await asyncio.sleep(DRAIN + 0.5)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), GRACE)
            code = await served.exit_code(within=GRACE)
            exited = time.monotonic() - signalled

    assert readiness.status_code == 503
    assert readiness.json() == {
        "status": "not ready",
        "reasons": ["shutting down"],
        "projections": {},  # no longer measured: the runners are stopping
    }
    assert during_drain.status_code == 200
    assert code == 0, served.stderr
    assert exited < GRACE
    assert burst.failures == []
    after_signal = [t for t in burst.acknowledged.values() if t > signalled]
    assert after_signal, "the server stopped serving before the drain delay ended"
    assert burst.refused, "the server kept accepting after the drain delay"

    store = await open_event_store(
        embedded_url(data), EventTypes([TicketOpened, TicketCommented, TicketClosed])
    )
    try:
        streams = dict(await store.list_streams("ticket-", limit=100_000))
        for ticket_id in burst.acknowledged:
            records = await store.read_stream(f"ticket-{ticket_id}")
            assert [type(r.event) for r in records] == [TicketOpened]
        for stream_id, version in streams.items():
            first = await store.read_stream(stream_id, to_version=1)
            assert version == 1 and isinstance(first[0].event, TicketOpened), stream_id
    finally:
        await store.close()
    # Every write the server made was answered: no request was cut off in flight.
    assert set(streams) == {f"ticket-{ticket_id}" for ticket_id in burst.acknowledged}
