"""The sample service against its own OpenAPI document, with schemathesis, in process.

Each API operation gets a fresh runtime on a SQLite store in a temporary directory:
schemathesis reaches the app over ASGI on an event loop of its own, so the runtime is
started there, in the app's lifespan, and stopped when the operation's test ends.
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from starlette.types import Receive, Scope, Send

from chronik.http.app import create_app
from chronik.http.problems import PROBLEM, Problem
from chronik.runtime.service import Runtime
from chronik.runtime.settings import Settings
from reference.tickets import SPEC


def settings(values: dict[str, Any]) -> Settings:
    """Settings of these values and defaults, whatever the environment says."""
    return Settings.model_validate(values)


def sample_app(config: Settings) -> FastAPI:
    """The sample service's app; building it starts nothing."""
    return create_app(Runtime(config, [SPEC]))


class FreshSampleService:
    """An ASGI app that starts a new sample runtime on each lifespan and stops it after."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.runtime: Runtime | None = None
        self.data: Path | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.app is not None, "the lifespan was not started"
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.data = Path(tempfile.mkdtemp(prefix="chronik-openapi-"))
                self.runtime = Runtime(settings({"data_dir": self.data}), [SPEC])
                await self.runtime.start()
                self.app = create_app(self.runtime)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.runtime is not None:
                    await self.runtime.stop()
                if self.data is not None:
                    shutil.rmtree(self.data, ignore_errors=True)
                self.app = self.runtime = self.data = None
                await send({"type": "lifespan.shutdown.complete"})
                return


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """An error is RFC 9457 problem details of the response's status (docs/runtime.md).

    Schemathesis' schema check validates the documented errors; this one also holds for
    the statuses the document does not list (a 405, say).
    """
    if response.status_code < 400 or case.operation.path == "/readyz":
        return None
    media = [
        v for k, values in response.headers.items() if k.lower() == "content-type" for v in values
    ]
    assert media == [PROBLEM], f"{response.status_code} answered as {media}, not {PROBLEM}"
    problem = Problem.model_validate_json(response.content)
    assert problem.status == response.status_code
    return None


_KEYS = itertools.count()


def one_key_per_request(case: schemathesis.Case[Any]) -> None:
    """A generated Idempotency-Key made unique: a key reused for another body is refused
    with 422, which generated "valid" data must not meet by chance."""
    headers = case.headers
    for name in list(headers or ()):
        if name.lower() == "idempotency-key":
            headers[name] = f"{headers[name]}-{next(_KEYS)}"


_WHOLE = re.compile(r"[ \t]*[0-9]+[ \t]*")


def aim_at_reached(case: schemathesis.Case[Any]) -> None:
    """A generated Chronik-Min-Position the document calls valid made one the store has
    reached (0), as a client sends back a position it was answered: a random one beyond
    waits for the consistency wait and answers 503 (test_runtime_http.py pins that)."""
    headers = case.headers
    for name in list(headers or ()):
        if name.lower() == "chronik-min-position" and _WHOLE.fullmatch(headers[name]):
            headers[name] = "0"


SERVICE = FreshSampleService()
DOCUMENT = sample_app(settings({"event_store_url": "memory://"})).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    # Every default check runs: server errors, status codes, content types, response
    # schemas and headers, the Allow header of a 405, acceptance of valid and rejection
    # of invalid data.
    one_key_per_request(case)
    aim_at_reached(case)
    case.call_and_validate(app=SERVICE, additional_checks=[problem_details])


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime(settings({"data_dir": tmp_path}), [SPEC])
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://sample") as client:
            yield client
    finally:
        await runtime.stop()


async def test_the_document_tested_is_the_one_the_service_serves(
    client: httpx.AsyncClient,
) -> None:
    served = await client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


async def test_a_method_the_path_does_not_support_is_refused_with_every_allowed_method(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.options("/tickets")
    assert refused.status_code == 405
    assert refused.headers["content-type"] == PROBLEM
    allowed = {m.strip() for m in refused.headers["allow"].split(",")}
    assert allowed == {"GET", "POST"}


def _problem_media(path: str, method: str, status: str) -> dict[str, Any]:
    media: dict[str, Any] = DOCUMENT["paths"][path][method]["responses"][status]["content"]
    return media


def test_problem_responses_are_documented_with_their_schema_under_their_media_type() -> None:
    for path, method, status in [
        ("/tickets", "post", "422"),
        ("/tickets", "post", "400"),
        ("/tickets/{ticket_id}", "get", "404"),
        ("/tickets/{ticket_id}", "get", "500"),
    ]:
        media = _problem_media(path, method, status)
        assert media.get(PROBLEM, {}).get("schema") == {"$ref": "#/components/schemas/Problem"}
        assert "application/json" not in media
