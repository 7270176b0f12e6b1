"""``chronik relay`` as a Deployment of its own: configured by the environment alone,
serving the probes and metrics on CHRONIK_HTTP_PORT, running no DDL when told not to."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from chronik.http.app import create_app
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings
from chronik.runtime.specs import load_specs
from conftest import service_missing

CHRONIK = str(Path(sys.executable).with_name("chronik"))
NATS = ("127.0.0.1", 4222)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def nats_url() -> str:
    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex(NATS) != 0:
            service_missing(f"NATS is not reachable at {NATS[0]}:{NATS[1]}")
    return f"nats://{NATS[0]}:{NATS[1]}?namespace=t_relay_{uuid.uuid4().hex[:10]}"


async def _an_order_in_the_outbox(store_url: str) -> None:
    """Sales, HTTP role only (no relay): a lead who orders leaves one outbox message."""
    settings = load_settings({"event_store_url": store_url, "run": "http"}).settings
    runtime = Runtime(settings, load_specs("sales:spec"))
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://sales") as client:
            lead = await client.post("/leads", json={"name": "Ada", "phone": "+49 30 901820"})
            assert lead.status_code == 201, lead.text
            body = {"amount_cents": 5000, "currency": "EUR"}
            ordered = await client.post(f"/leads/{lead.json()['id']}/orders", json=body)
            assert ordered.status_code == 200, ordered.text
        assert (await runtime.messages.outbox_status()).pending == 1
    finally:
        await runtime.stop()


def _sample(exposition: str, name: str) -> float | None:
    """The value of metric ``name`` (a counter's ``_total`` too) in a Prometheus text."""
    for line in exposition.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        if series.split("{", 1)[0] in (name, f"{name}_total"):
            return float(value)
    return None


async def _get(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(url)
    except httpx.HTTPError:
        return None


async def test_the_relay_configured_by_env_alone_serves_probes_and_metrics_on_its_port(
    tmp_path: Path, nats_url: str
) -> None:
    store_url = f"sqlite:///{tmp_path}/chronik.db"
    await _an_order_in_the_outbox(store_url)
    port = _free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "CHRONIK_EVENT_STORE_URL": store_url,
        "CHRONIK_BROKER_URL": nats_url,
        "CHRONIK_HTTP_PORT": str(port),
        "CHRONIK_SHUTDOWN_DRAIN_DELAY": "0",
    }
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        relay = await asyncio.create_subprocess_exec(
            CHRONIK, "relay", env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        published = ""
        while True:
            assert relay.returncode is None, log.read_text()
            ready = await _get(f"{base}/readyz")
            metrics = await _get(f"{base}/metrics")
            if ready is not None and metrics is not None and ready.status_code == 200:
                published = metrics.text
                if _sample(published, "chronik_relay_messages_published") == 1:
                    break
            assert time.monotonic() < deadline, f"{published}\n{log.read_text()}"
            await asyncio.sleep(0.2)
        assert _sample(published, "chronik_outbox_pending_messages") == 0
        healthz = await _get(f"{base}/healthz")
        assert healthz is not None and healthz.status_code == 200
    finally:
        relay.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(relay.wait(), 60)
    assert code == 0, log.read_text()
    assert "relaying the outbox of" in log.read_text()


def test_the_relay_that_may_not_migrate_refuses_a_missing_store_in_one_line(
    tmp_path: Path, nats_url: str
) -> None:
    store = tmp_path / "missing" / "chronik.db"
    for extra in ({}, {"CHRONIK_HTTP_PORT": str(_free_port())}):
        done = subprocess.run(
            [CHRONIK, "relay"],
            env={
                "PATH": "/usr/bin:/bin",
                "COLUMNS": "200",
                "CHRONIK_EVENT_STORE_URL": f"sqlite:///{store}",
                "CHRONIK_BROKER_URL": nats_url,
                "CHRONIK_AUTO_MIGRATE": "false",
                **extra,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "chronik migrate" in line]
        assert len(errors) == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert not store.parent.exists()
