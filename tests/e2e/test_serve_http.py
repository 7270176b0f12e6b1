"""A served process behind an Ingress that does not rewrite paths, with an API token.

What the in-process tests show (tests/integration/test_runtime_http.py), checked once
through uvicorn: requests arriving with the prefix, the token, trace context stored
with the events (read back with ``chronik streams show``), and logs without the token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from runtime_process import chronik, serving

SECRET = "tok-3be81d-never-logged"
PREFIX = "/tickets-svc"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.slow
async def test_behind_a_path_prefix_with_a_token_the_process_answers_as_documented(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {
        "CHRONIK_DATA_DIR": str(data),
        "CHRONIK_HTTP_ROOT_PATH": PREFIX,
        "CHRONIK_API_TOKEN": SECRET,
        "CHRONIK_LOG_LEVEL": "debug",
        "CHRONIK_SHUTDOWN_DRAIN_DELAY": "0",
    }
    async with serving(tmp_path / "logs", env) as served:
        async with httpx.AsyncClient(base_url=served.url + PREFIX, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
            refused = await client.post("/tickets", json={"title": "t", "reporter": "r"})
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            opened = await client.post(
                "/tickets",
                json={"title": "t", "reporter": "r"},
                headers={
                    "Authorization": f"Bearer {SECRET}",
                    "traceparent": TRACEPARENT,
                    "X-Correlation-Id": "corr-e2e",
                },
            )
            assert opened.status_code == 201
            assert opened.headers["x-correlation-id"] == "corr-e2e"
            ticket = await client.get(
                f"/tickets/{opened.json()['id']}",
                headers={"Chronik-Min-Position": opened.headers["chronik-position"]},
            )
            assert ticket.status_code == 200
            document = (await client.get("/openapi.json")).json()
            assert document["servers"] == [{"url": PREFIX}]
            deadline = time.monotonic() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "never ready behind the prefix"
        served.terminate()
        assert await served.exit_code(within=10) == 0

    shown = await chronik("streams", "show", opened.json()["stream_id"], "--data-dir", str(data))
    [event] = [json.loads(shown.out)]
    assert event["headers"]["traceparent"] == TRACEPARENT
    assert event["correlation_id"] == "corr-e2e"
    assert SECRET not in served.stderr + served.stdout


@pytest.mark.slow
async def test_with_a_path_prefix_every_log_line_of_the_process_is_json(tmp_path: Path) -> None:
    env = {"CHRONIK_DATA_DIR": str(tmp_path / "data"), "CHRONIK_HTTP_ROOT_PATH": PREFIX}
    async with serving(tmp_path / "logs", env) as served:
        served.terminate()
        await served.exit_code(within=10)
    for line in served.stderr.splitlines():
        assert isinstance(json.loads(line), dict), line
