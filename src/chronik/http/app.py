"""The HTTP adapter: a FastAPI app around a runtime, with probes, metrics and errors.

Routes stay thin: a request becomes a command through ``run_command``, which makes a
retried POST with an ``Idempotency-Key`` safe and answers with the append's global
position in ``Chronik-Position``. A later GET may send that position back as
``Chronik-Min-Position``: ``wait_consistent`` waits (bounded) until the projections
passed it, so a client reads its own writes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chronik.errors import ChronikError, DuplicateEventError
from chronik.eventstore import AppendResult
from chronik.eventstore.context import IdempotencyScope, ambient_metadata, idempotency_scope
from chronik.eventstore.port import Metadata
from chronik.http.problems import PROBLEM, Problem, install_problem_handlers, problem
from chronik.runtime.observability import Metrics
from chronik.runtime.service import Runtime

__all__ = [
    "CommandResult",
    "NotConsistentError",
    "create_app",
    "run_command",
    "wait_consistent",
]

POSITION = "Chronik-Position"
MIN_POSITION = "Chronik-Min-Position"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}

log = structlog.get_logger("chronik.http")


class CommandResult(BaseModel):
    """What a command endpoint answers: where the change landed."""

    id: str
    stream_id: str
    version: int
    position: int


class NotConsistentError(ChronikError):
    """The read model did not reach the requested position in time."""


def _traceparent(header: str | None) -> str:
    """The incoming W3C traceparent, or a new trace started here."""
    if header:
        parts = header.strip().split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            return header.strip()
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class RequestContext:
    """Pure ASGI middleware (same task as the endpoint): ids, auth, timing, metrics."""

    def __init__(self, app: ASGIApp, runtime: Runtime, metrics: Metrics) -> None:
        self.app = app
        self.runtime = runtime
        self.metrics = metrics
        token = runtime.settings.api_token
        self.token = token.get_secret_value().encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        correlation = headers.get("x-correlation-id") or secrets.token_hex(8)
        traceparent = _traceparent(headers.get("traceparent"))
        method = scope["method"]
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if self.token is not None and method in WRITES and path not in OPEN_PATHS:
            given = headers.get("authorization", "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(given, self.token):
                response = problem(
                    401,
                    "Unauthorized",
                    "write requests need the API token as 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        status = 500
        started = time.perf_counter()

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [
                    (b"x-correlation-id", correlation.encode()),
                    (b"traceparent", traceparent.encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        structlog.contextvars.bind_contextvars(correlation_id=correlation, trace=traceparent[3:35])
        try:
            with ambient_metadata(
                Metadata(correlation_id=correlation, headers={"traceparent": traceparent}),
                replace=True,
            ):
                await self.app(scope, receive, send_with_ids)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.request_seconds.labels(method, template, str(status)).observe(
                time.perf_counter() - started
            )
            structlog.contextvars.clear_contextvars()


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": text}
    for code, text in (
        (400, "Malformed request"),
        (401, "Missing or wrong API token"),
        (404, "Not found"),
        (409, "Conflict with the current state"),
        (422, "The request does not fit"),
        (503, "Unavailable, or not consistent yet"),
    )
}


def create_app(runtime: Runtime) -> FastAPI:
    """The FastAPI app of a runtime: each context's routes, probes and /metrics."""
    settings = runtime.settings
    metrics = Metrics()
    app = FastAPI(
        title=" + ".join(s.name for s in runtime.specs) + " (chronik)",
        root_path=settings.http_root_path,
        responses=_PROBLEMS,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    install_problem_handlers(app)

    @app.get("/healthz", tags=["probes"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["probes"],
        summary="Readiness: store, broker, migrations and projections",
        responses={503: {"description": "Not ready, with the reasons"}},
    )
    async def readyz(response: Response) -> dict[str, Any]:
        reasons = await runtime.readiness()
        if reasons:
            response.status_code = 503
            return {"status": "not ready", "reasons": reasons}
        return {"status": "ready", "reasons": []}

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        await metrics.refresh(runtime)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    for spec in runtime.specs:
        if spec.routes is None:
            continue
        router: APIRouter = spec.routes(runtime)
        prefix = f"/{spec.name}" if len(runtime.specs) > 1 else ""
        app.include_router(router, prefix=prefix, tags=[spec.name])

    app.add_middleware(RequestContext, runtime=runtime, metrics=metrics)
    return app


async def run_command(
    request: Request,
    response: Response,
    work: Callable[[], Awaitable[tuple[str, AppendResult]]],
    *,
    id_of: Callable[[str], str] = lambda stream_id: stream_id,
) -> CommandResult:
    """Run a command endpoint's work; idempotent under ``Idempotency-Key``.

    ``work`` returns the aggregate id and where its append landed. A retry with the same
    key and body gets the first outcome again (the events are not appended twice); the
    same key with another body is refused with 422. ``id_of`` turns a stream id back
    into the aggregate id for that replayed answer.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        aggregate_id, result = await work()
        return _answer(response, aggregate_id, result)
    body = await request.body()
    fingerprint = hashlib.sha256(
        b"\0".join([request.method.encode(), request.url.path.encode(), body])
    ).hexdigest()[:32]
    runtime: Runtime = request.app.state.runtime
    with idempotency_scope(key, fingerprint) as scope:
        # A retry is answered from the stored events before the command runs again: the
        # aggregate might refuse the repeat ("order already submitted") with a 409.
        replayed = await _replay(runtime, scope, fingerprint, id_of, response)
        if replayed is not None:
            return replayed
        try:
            aggregate_id, result = await work()
            return _answer(response, aggregate_id, result)
        except DuplicateEventError:
            # The same request, running at the same moment, appended first.
            replayed = await _replay(runtime, scope, fingerprint, id_of, response)
            if replayed is None:
                raise
            return replayed


async def _replay(
    runtime: Runtime,
    scope: IdempotencyScope,
    fingerprint: str,
    id_of: Callable[[str], str],
    response: Response,
) -> CommandResult | None:
    """The first answer to this idempotency key, read back from its events; or None."""
    first = await runtime.store.find_event(scope.event_id(0))
    if first is None:
        return None
    if (first.metadata.headers or {}).get("chronik-idempotency") != fingerprint:
        raise HTTPException(422, "Idempotency-Key was already used for another request")
    last = first
    index = 1
    while (found := await runtime.store.find_event(scope.event_id(index))) is not None:
        if found.stream_id != first.stream_id:
            break
        last, index = found, index + 1
    response.headers["Idempotent-Replayed"] = "true"
    replayed = AppendResult(last.stream_id, last.version, first.position, last.position)
    return _answer(response, id_of(first.stream_id), replayed)


def _answer(response: Response, aggregate_id: str, result: AppendResult) -> CommandResult:
    response.headers[POSITION] = str(result.position)
    return CommandResult(
        id=aggregate_id,
        stream_id=result.stream_id,
        version=result.version,
        position=result.position,
    )


async def wait_consistent(request: Request, projections: list[str] | None = None) -> None:
    """Wait until these projections passed the request's ``Chronik-Min-Position``.

    503 (problem) if they do not within the configured wait: the client retries.
    """
    raw = request.headers.get(MIN_POSITION)
    if raw is None:
        return
    try:
        position = int(raw)
        if position < 0:
            raise ValueError
    except ValueError:
        raise HTTPException(400, f"{MIN_POSITION} must be a whole number >= 0") from None
    runtime: Runtime = request.app.state.runtime
    wait = runtime.settings.consistency_wait
    if not await runtime.engine.wait_until(position, names=projections, max_wait=wait):
        raise HTTPException(
            503, f"the read model has not reached position {position} yet", {"Retry-After": "1"}
        )
