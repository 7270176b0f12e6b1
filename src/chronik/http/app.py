"""The HTTP adapter: a FastAPI app around a runtime, with probes, metrics and errors.

Routes stay thin: a request becomes a command through ``run_command``, which makes a
retried POST with an ``Idempotency-Key`` safe and answers with the append's global
position in ``Chronik-Position``. A later GET may send that position back as
``Chronik-Min-Position``: ``wait_consistent`` waits (bounded) until the projections
passed it, so a client reads its own writes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import fastapi.routing
import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chronik.errors import DuplicateEventError, InvalidInputError, TokenRequiredError
from chronik.eventstore import AppendResult
from chronik.eventstore.context import IdempotencyScope, ambient_metadata, idempotency_scope
from chronik.eventstore.port import MAX_POSITION, Metadata
from chronik.http.auth import Access, unauthorized
from chronik.http.clock import routes as clock_routes
from chronik.http.problems import PROBLEM, Problem, install_problem_handlers, problem
from chronik.runtime.observability import Metrics
from chronik.runtime.service import Runtime

__all__ = [
    "CommandResult",
    "create_app",
    "run_command",
    "wait_consistent",
]

POSITION = "Chronik-Position"
MIN_POSITION = "Chronik-Min-Position"
_WHOLE = re.compile(r"[0-9]+")
PROBES = {"/healthz", "/readyz", "/metrics"}

log = logging.getLogger(__name__)


class CommandResult(BaseModel):
    """What a command endpoint answers: where the change landed."""

    id: str
    stream_id: str
    version: int
    position: int


# W3C Trace Context, 3.2: version-traceid-parentid-flags, lowercase hex; a later version
# may append fields after another '-'.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def _traceparent(header: str | None) -> str:
    """The incoming W3C traceparent, or a new trace started here.

    An invalid one is ignored, as the spec asks, rather than stored with the events: a
    version of ff, ids that are not lowercase hex or are all zeros, or version 00 with
    extra fields. A valid one of a later version is passed on as version 00, the one
    spoken here.
    """
    found = _TRACEPARENT.fullmatch(header.strip()) if header else None
    if found is not None:
        version, trace_id, parent_id, flags, extra = found.groups()
        valid = (
            version != "ff"
            and not (version == "00" and extra)
            and trace_id != "0" * 32
            and parent_id != "0" * 16
        )
        if valid:
            return f"00-{trace_id}-{parent_id}-{flags}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lowercase name, decoded as latin-1.

    HTTP allows any octet above 0x7f in a value (obs-text), so UTF-8 decoding could fail
    on bad input; latin-1 maps every byte, as Starlette's own ``Headers`` does, and
    ``encode("latin-1")`` gives the octets back unchanged.
    """
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Routes:
    """Each route's full path template and its context, whatever the routers' nesting.

    The route Starlette puts in the scope may be the one its router declared (FastAPI
    includes routers lazily), whose path lacks the prefix it was included under:
    ``/campaigns`` for ``POST /campaigns/campaigns``. The template is looked up here
    instead, so routes of different contexts never share a label.
    """

    def __init__(self) -> None:
        self._found: dict[int, tuple[BaseRoute, str, str | None]] = {}

    def add(self, routes: list[BaseRoute], prefix: str = "", context: str | None = None) -> None:
        """Routes included under ``prefix`` by ``context``; a route added before stays."""
        for route, path in _templates(routes):
            # The route is kept in the value: its id is never another's while it lives.
            self._found.setdefault(id(route), (route, prefix + path, context))

    def of(self, route: object) -> tuple[str, str | None]:
        """The template and context of the scope's route ("unmatched": no route matched)."""
        found = self._found.get(id(route))
        if found is not None and found[0] is route:
            return found[1], found[2]
        return getattr(route, "path", "unmatched"), None


def _templates(routes: list[BaseRoute]) -> Iterator[tuple[BaseRoute, str]]:
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:  # FastAPI that copies included routes with their full paths
        for route in routes:
            yield route, getattr(route, "path", "")
        return
    for context in contexts(routes):
        yield context.original_route, context.path or ""


class RequestContext:
    """Pure ASGI middleware (same task as the endpoint): ids, auth, timing, metrics, the
    request's log line, and the one log line with the traceback of an unexpected error."""

    def __init__(self, app: ASGIApp, access: Access, metrics: Metrics, routes: Routes) -> None:
        self.app = app
        self.access = access
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        correlation = headers.get("x-correlation-id") or secrets.token_hex(8)
        traceparent = _traceparent(headers.get("traceparent"))
        method = scope["method"]
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        status = 500
        started = time.perf_counter()
        responded = False

        async def send_with_ids(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                extra = [
                    (b"x-correlation-id", correlation.encode("latin-1")),
                    (b"traceparent", traceparent.encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        structlog.contextvars.bind_contextvars(
            correlation_id=correlation, trace_id=traceparent[3:35]
        )
        try:
            what = self.access.before_routing(method, path)
            if what is not None and not self.access.admits(headers.get("authorization", "")):
                # Refused before the app: still answered with the request's ids.
                await unauthorized(what)(scope, receive, send_with_ids)
                return
            with ambient_metadata(
                Metadata(correlation_id=correlation, headers={"traceparent": traceparent}),
                replace=True,
            ):
                await self.app(scope, receive, send_with_ids)
        except Exception:
            if responded:
                raise  # the answer is under way: the server logs it and ends the connection
            # Answered here, not re-raised: Starlette's error middleware would log the
            # traceback once more through the server. One error, one traceback.
            template, context = self.routes.of(scope.get("route"))
            log.exception(
                "request failed",
                extra={"method": method, "route": template, "context": context},
            )
            internal = problem(
                500, "Internal error", "an unexpected error happened", request=Request(scope)
            )
            await internal(scope, receive, send_with_ids)
        finally:
            template, context = self.routes.of(scope.get("route"))
            seconds = time.perf_counter() - started
            self.metrics.request_seconds.labels(method, template, str(status)).observe(seconds)
            # Probes come every few seconds from the kubelet and Prometheus: debug only.
            log.log(
                logging.DEBUG if path in PROBES else logging.INFO,
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "context": context,
                },
            )
            structlog.contextvars.clear_contextvars()


class RootPath:
    """Pure ASGI middleware: the path prefix an Ingress routes, set on every request.

    It puts ``root_path`` into the scope, as ``FastAPI(root_path=...)`` did before that
    was deprecated. A server's ``--root-path`` is no substitute: uvicorn prepends it to
    every path, so a request that arrives with the prefix (an Ingress that does not
    rewrite) would carry it twice. Starlette routes with the prefix or without it, and
    FastAPI names it in the OpenAPI document's ``servers``.
    """

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["root_path"] = self.root_path
        await self.app(scope, receive, send)


# Documented under the media type they are sent as; FastAPI's "model" would put the
# schema under the route's application/json instead. ``_ChronikAPI`` adds the schema.
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"content": {PROBLEM: {"schema": _PROBLEM_REF}}, "description": text}
    for code, text in (
        (400, "Malformed request"),
        (401, "Missing or wrong API token"),
        (404, "Not found"),
        (409, "Conflict with the current state"),
        (422, "The request does not fit"),
        (503, "Unavailable, or not consistent yet"),
    )
}


class _ChronikAPI(FastAPI):
    """FastAPI whose OpenAPI document defines the Problem schema its errors refer to,
    and names the bearer scheme on the operations that need the API token."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        document = super().openapi()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        access: Access = self.state.access
        access.document(document)
        return document


def create_app(runtime: Runtime) -> FastAPI:
    """The FastAPI app of a runtime: each context's routes, probes and /metrics."""
    settings = runtime.settings
    metrics = runtime.metrics
    routes = Routes()
    app = _ChronikAPI(
        title=" + ".join(s.name for s in runtime.specs) + " (chronik)",
        responses=_PROBLEMS,
    )
    description = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    open_paths = PROBES | {path for path in description if path is not None}
    access = Access(settings.api_token, settings.read_auth, open_paths)
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.access = access
    install_problem_handlers(app)

    @app.exception_handler(TokenRequiredError)
    async def _token_required(request: Request, exc: TokenRequiredError) -> Response:
        return unauthorized(exc.what)

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
        # Each runner's state, computed as `chronik projections status` computes it.
        states = await runtime.shown_states()
        # The relay and every consumer: which replica leads, and why one is not running.
        workers = [
            {
                "kind": w.kind,
                "name": w.name,
                "state": w.state,
                "reason": w.reason,
                "leading": w.leading,
                "replica": w.replica,
            }
            for w in runtime.worker_statuses()
        ]
        body: dict[str, Any] = {"projections": states}
        if workers:  # a service without relay or consumers answers as it always did
            body["workers"] = workers
        if reasons:
            response.status_code = 503
            return {"status": "not ready", "reasons": reasons, **body}
        return {"status": "ready", "reasons": [], **body}

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
        routes.add(router.routes, prefix, spec.name)

    if settings.clock == "virtual":
        app.include_router(clock_routes(runtime))
    routes.add(app.router.routes)

    app.add_middleware(RequestContext, access=access, metrics=metrics, routes=routes)
    if settings.http_root_path:
        app.add_middleware(RootPath, root_path=settings.http_root_path)  # outermost
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

    503 (problem) if they do not within the configured wait: the client retries. 400 for
    a value that is no whole number or one above ``MAX_POSITION``, which no store reaches.
    """
    raw = request.headers.get(MIN_POSITION)
    if raw is None:
        return
    raw = raw.strip()
    if not _WHOLE.fullmatch(raw):
        raise InvalidInputError(f"{MIN_POSITION} must be a whole number from 0 to {MAX_POSITION}")
    if len(raw.lstrip("0")) > len(str(MAX_POSITION)) or int(raw) > MAX_POSITION:
        # No store reaches it: waiting and answering 503 would invite endless retries.
        raise InvalidInputError(
            f"{MIN_POSITION} is beyond any position a store can reach (at most {MAX_POSITION})"
        )
    position = int(raw)
    runtime: Runtime = request.app.state.runtime
    wait = runtime.settings.consistency_wait
    if not await runtime.engine.wait_until(position, names=projections, max_wait=wait):
        raise HTTPException(
            503, f"the read model has not reached position {position} yet", {"Retry-After": "1"}
        )
