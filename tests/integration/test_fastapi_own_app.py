"""A FastAPI app the user owns, with chronik's service mounted in it (docs/fastapi.md).

The user's app runs chronik's runtime by its lifespan (``chronik.http.lifespan``), adds
middleware of its own around everything (CORS, a header of its own) and, through
``create_app(middleware=...)``, inside chronik's request middleware (a tenant check whose
refusals still carry the request's ids). Starlette's ``TestClient`` drives it, lifespan
and all, as a user's own tests would. The sample service runs on a SQLite store in the
test's temporary directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.testclient import TestClient
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware

from chronik.http.app import create_app, lifespan
from chronik.http.problems import PROBLEM
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings
from reference.tickets import SPEC

TOKEN = "tok-own-app-5e1b"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "https://desk.example"
DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


class ServedBy(BaseHTTPMiddleware):
    """The user's own middleware, around the whole app."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["X-Served-By"] = "helpdesk"
        return response


class Tenants(BaseHTTPMiddleware):
    """The user's own check, inside chronik's request middleware: a blocked tenant is
    refused before any route runs."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.headers.get("X-Tenant") == "blocked":
            return Response('{"detail": "tenant blocked"}', 403, media_type="application/json")
        return await call_next(request)


def own_app(tmp_path: Path) -> tuple[FastAPI, Runtime]:
    settings = load_settings({"data_dir": tmp_path, "api_token": TOKEN}).settings
    runtime = Runtime(settings, [SPEC])
    app = FastAPI(title="Helpdesk", lifespan=lifespan(runtime))
    app.add_middleware(ServedBy)
    app.add_middleware(
        CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["*"], allow_headers=["*"]
    )

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    service = create_app(
        runtime,
        title="Tickets",
        version="2.1.0",
        description="Support tickets",
        middleware=[Middleware(Tenants)],
    )
    app.mount("/api", service)
    return app, runtime


def stopping(runtime: Runtime) -> bool:
    return runtime.shutting_down


def ready(client: TestClient) -> None:
    deadline = time.monotonic() + DEADLINE
    while (answer := client.get("/api/readyz")).status_code != 200:
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.05)


def test_the_lifespan_of_the_users_app_starts_and_stops_chronik(tmp_path: Path) -> None:
    app, runtime = own_app(tmp_path)
    with TestClient(app) as client:
        ready(client)
        assert client.get("/hello").json() == {"hello": "world"}
        opened = client.post("/api/tickets", json={"title": "Printer", "reporter": "Ada"})
        assert opened.status_code == 401, "the token is checked inside the mounted app"
        opened = client.post(
            "/api/tickets", json={"title": "Printer", "reporter": "Ada"}, headers=BEARER
        )
        assert opened.status_code == 201, opened.text
        position = opened.headers["Chronik-Position"]
        read = client.get(
            f"/api/tickets/{opened.json()['id']}", headers={"Chronik-Min-Position": position}
        )
        assert read.status_code == 200, read.text
        assert read.json()["title"] == "Printer"
        assert not stopping(runtime)
    assert stopping(runtime), "the lifespan's end stopped the runtime"
    assert client.get("/api/readyz").status_code == 503


def test_the_users_middleware_runs_around_chronik_and_inside_it(tmp_path: Path) -> None:
    app, _ = own_app(tmp_path)
    with TestClient(app) as client:
        ready(client)
        answer = client.get("/api/tickets")
        assert answer.status_code == 200
        assert answer.headers["X-Served-By"] == "helpdesk"
        assert "X-Correlation-Id" in answer.headers

        preflight = client.options(
            "/api/tickets",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN

        refused = client.get(
            "/api/tickets", headers={"X-Tenant": "blocked", "X-Correlation-Id": "c-42"}
        )
        assert refused.status_code == 403
        assert refused.headers["X-Correlation-Id"] == "c-42", "inside chronik's middleware"
        # Before the user's inner middleware: the token is checked first.
        write = client.post(
            "/api/tickets", json={"title": "x", "reporter": "y"}, headers={"X-Tenant": "blocked"}
        )
        assert write.status_code == 401
        assert write.headers["content-type"] == PROBLEM


def test_the_mounted_apps_document_names_its_prefix_info_ids_and_bearer_scheme(
    tmp_path: Path,
) -> None:
    app, _ = own_app(tmp_path)
    with TestClient(app) as client:
        document: dict[str, Any] = client.get("/api/openapi.json").json()
    assert document["servers"] == [{"url": "/api"}]
    assert document["info"] == {
        "title": "Tickets",
        "version": "2.1.0",
        "description": "Support tickets",
    }
    ids = {
        (method, path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert ids[("post", "/tickets")] == "tickets_open_ticket"
    assert ids[("get", "/tickets/{ticket_id}")] == "tickets_get_ticket"
    assert ids[("get", "/healthz")] == "healthz"
    assert document["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
    post = document["paths"]["/tickets"]["post"]
    assert post["security"] == [{"ApiToken": []}]
    assert "Idempotency-Key" in {p["name"] for p in post["parameters"]}
    created = post["responses"]["201"]["headers"]
    assert {"Chronik-Position", "Idempotent-Replayed", "X-Correlation-Id", "traceparent"} <= set(
        created
    )
    read = document["paths"]["/tickets/{ticket_id}"]["get"]
    assert "security" not in read
    assert "401" not in read["responses"], "a read that needs no token is never refused so"
    assert "Chronik-Min-Position" in {p["name"] for p in read["parameters"]}
    assert set(read["responses"]) == {"200", "400", "404", "500", "503"}
    healthz = document["paths"]["/healthz"]["get"]
    assert set(healthz["responses"]) == {"200", "500"}


def test_info_comes_from_the_settings_when_create_app_is_not_given_it(tmp_path: Path) -> None:
    flags = {"data_dir": tmp_path, "api_title": "Desk", "api_version": "3", "api_description": "d"}
    runtime = Runtime(load_settings(flags).settings, [SPEC])
    document = create_app(runtime).openapi()
    assert document["info"] == {"title": "Desk", "version": "3", "description": "d"}
    default = create_app(Runtime(load_settings({"data_dir": tmp_path}).settings, [SPEC]))
    assert default.openapi()["info"]["title"] == "tickets (chronik)"
