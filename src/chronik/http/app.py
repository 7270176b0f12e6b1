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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import fastapi.routing
import structlog
from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chronik import tracing
from chronik.errors import (
    ConfigurationError,
    DuplicateEventError,
    InvalidInputError,
    TokenRequiredError,
)
from chronik.eventstore import AppendResult
from chronik.eventstore.context import IdempotencyScope, ambient_metadata, idempotency_scope
from chronik.eventstore.port import MAX_POSITION, Metadata
from chronik.http.auth import WRITES, Access, unauthorized
from chronik.http.clock import routes as clock_routes
from chronik.http.problems import PROBLEM, Problem, install_problem_handlers, problem
from chronik.runtime.observability import Metrics
from chronik.runtime.service import Runtime

__all__ = [
    "CommandResult",
    "consistent_with",
    "create_app",
    "lifespan",
    "operation_ids",
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


def _tracestate(headers: dict[str, str], traceparent: str) -> str | None:
    """The incoming tracestate, kept with the caller's trace (not with a new one).

    W3C Trace Context, 3.3: at most 512 characters are to be propagated; a longer or
    unprintable one is dropped here rather than stored with every event.
    """
    state = headers.get("tracestate", "").strip()
    incoming = headers.get("traceparent", "")
    if not state or traceparent[3:35] not in incoming or len(state) > 512:
        return None
    return state if state.isprintable() and state.isascii() else None


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
        method = scope["method"]
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        # With OpenTelemetry set up, the request's server span (FastAPI's or chronik's);
        # else the caller's context, or a new trace.
        span = tracing.http_server(method, scope.get("scheme", "http"), path, headers)
        traceparent = span.traceparent or _traceparent(headers.get("traceparent"))
        carried = {"traceparent": traceparent}
        tracestate = span.tracestate if span.traceparent else _tracestate(headers, traceparent)
        if tracestate:
            carried["tracestate"] = tracestate
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
            with (
                span.active(),
                ambient_metadata(
                    Metadata(correlation_id=correlation, headers=carried), replace=True
                ),
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
            span.end(None if template == "unmatched" else template, status)
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
#: what each error an operation may answer means, when it may
ERRORS: dict[int, str] = {
    400: "Malformed request: a body that is no JSON, or a bad Chronik-Min-Position",
    401: "Missing or wrong API token",
    404: "No such aggregate",
    409: "A business rule forbids it in this state, or a concurrent change came first",
    422: "The request does not fit: the body, a parameter, or an Idempotency-Key reused "
    "for another request",
    500: "An unexpected error (logged with the request's X-Correlation-Id; no detail)",
    503: "The store is unavailable, or the read model has not reached "
    "Chronik-Min-Position within the wait (Retry-After)",
}
#: headers every answer carries, and a command's
HEADERS: dict[str, dict[str, Any]] = {
    "X-Correlation-Id": {
        "description": "The request's correlation id: the one sent, or one made here",
        "required": True,
        "schema": {"type": "string"},
    },
    "traceparent": {
        "description": "W3C Trace Context: the request's trace (the one sent, or a new "
        "one); with OpenTelemetry set up, its parent id is the request's server span",
        "required": True,
        "schema": {"type": "string"},
    },
    POSITION: {
        "description": "The global position of the command's last event: send it back as "
        f"{MIN_POSITION} to read your own writes",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Idempotent-Replayed": {
        "description": "true: this answer is the first one to this Idempotency-Key, replayed",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
_EVERY = {"X-Correlation-Id", "traceparent"}
_COMMAND_RESULT = "#/components/schemas/CommandResult"
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: a retry with the same key and body is answered as "
    "the first request was (Idempotent-Replayed: true), without running the command "
    "again; the same key with another body is refused (422)",
    "schema": {"type": "string"},
}


MIN_POSITION_SCHEMA = {"type": "string", "pattern": "^[ \t]*[0-9]+[ \t]*$"}
MIN_POSITION_TEXT = (
    "Read your own writes: a Chronik-Position a command answered. The read waits (at "
    "most CHRONIK_CONSISTENCY_WAIT) until the read model passed it, else 503 with "
    "Retry-After; one above 2**63-1, which no store reaches, is refused with 400"
)


def _is_command(operation: dict[str, Any]) -> bool:
    """An operation whose success answers a CommandResult: ``run_command``'s."""
    for code, response in operation.get("responses", {}).items():
        if str(code).startswith("2"):
            for media in response.get("content", {}).values():
                if media.get("schema", {}).get("$ref") == _COMMAND_RESULT:
                    return True
    return False


#: what a string parameter's schema may hold and still take any value
_UNCONSTRAINED = {"type", "title", "description", "examples", "example", "default"}


def _refusable(parameter: dict[str, Any]) -> bool:
    """Whether request validation can refuse this parameter (then: 422)."""
    if parameter.get("name") == MIN_POSITION:
        return False  # chronik's: 400
    if parameter.get("in") != "path" and parameter.get("required"):
        return True
    schema = parameter.get("schema", {})
    return schema.get("type") != "string" or not set(schema) <= _UNCONSTRAINED


def _errors_of(method: str, operation: dict[str, Any], context: bool, command: bool) -> set[int]:
    """The errors an operation can answer (401 is the token's: ``Access.document``).

    500 always; 400 and 422 for a body (no JSON; JSON that does not fit); 422 for a
    parameter validation can refuse, and for a command (an Idempotency-Key reused for
    another request); 404 for a path parameter (no such aggregate); 409 for a write
    to an existing aggregate (a business rule, a concurrent change); 503 for a
    context's operation (the store). A route adds what else it answers with
    ``responses=`` (a creation a business rule may refuse: 409).
    """
    codes = {500}
    parameters = operation.get("parameters", [])
    path = any(p.get("in") == "path" for p in parameters)
    if "requestBody" in operation or any(p.get("name") == MIN_POSITION for p in parameters):
        codes.add(400)
    if "requestBody" in operation:
        codes.add(422)
    if command or any(_refusable(p) for p in parameters):
        codes.add(422)
    if path:
        codes.add(404)
    if context:
        codes.add(503)  # the store
        if path and method.upper() in WRITES:
            codes.add(409)
    return codes


def document_operations(document: dict[str, Any], contexts: set[str]) -> None:
    """Each operation's true errors and the headers behind chronik's features.

    Errors are problem details; a context's operations may meet an unavailable store;
    a command (it answers a CommandResult) takes an Idempotency-Key and answers its
    position in Chronik-Position; every answer carries X-Correlation-Id and traceparent.
    """
    components = document.setdefault("components", {})
    headers = components.setdefault("headers", {})
    headers.update({name: {**spec} for name, spec in HEADERS.items()})
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            context = bool(set(operation.get("tags", [])) & contexts)
            command = _is_command(operation)
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == MIN_POSITION and parameter.get("in") == "header":
                    parameter.update(description=MIN_POSITION_TEXT, schema={**MIN_POSITION_SCHEMA})
            if command:
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == IDEMPOTENCY_KEY["name"] for p in parameters):
                    parameters.append({**IDEMPOTENCY_KEY})
            responses: dict[str, Any] = operation.setdefault("responses", {})
            fastapis = responses.get("422", {}).get("content", {}).get("application/json", {})
            if fastapis.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]  # FastAPI's, on any parameter: put back where true
            for error in _errors_of(method, operation, context, command):
                responses[str(error)] = {
                    "description": ERRORS[error],
                    "content": {PROBLEM: {"schema": _PROBLEM_REF}},
                }
            for code, response in responses.items():
                if code.startswith(("4", "5")) and (path, code) != ("/readyz", "503"):
                    # a route's own (a 409 of its rules) too: problem details, as all errors
                    response["content"] = {PROBLEM: {"schema": _PROBLEM_REF}}
            for code, response in responses.items():
                named = set(_EVERY)
                if command and code.startswith("2"):
                    named |= {POSITION, "Idempotent-Replayed"}
                response.setdefault("headers", {}).update(
                    {name: {"$ref": f"#/components/headers/{name}"} for name in sorted(named)}
                )


class _ChronikAPI(FastAPI):
    """FastAPI whose OpenAPI document defines the Problem schema its errors refer to,
    documents each operation's errors and headers, and names the bearer scheme on the
    operations that need the API token."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        document = super().openapi()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        document_operations(document, self.state.contexts)
        access: Access = self.state.access
        access.document(document)
        _unique_operation_ids(document)
        return document


def _unique_operation_ids(document: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            name = operation.get("operationId")
            where = f"{method.upper()} {path}"
            if name in seen:
                raise ConfigurationError(
                    f"operation id {name!r} of {where} is also {seen[name]}'s: give one of "
                    "the routes another function name, or name=..."
                )
            seen[name] = where


def create_app(
    runtime: Runtime,
    *,
    title: str | None = None,
    version: str | None = None,
    description: str | None = None,
    middleware: Sequence[Middleware] = (),
    own_lifespan: bool = False,
) -> FastAPI:
    """The FastAPI app of a runtime: each context's routes, probes and /metrics.

    ``title``, ``version`` and ``description`` are the OpenAPI document's ``info``
    (default: the settings' ``api_*``). ``middleware`` (Starlette's ``Middleware``) runs
    inside chronik's request middleware, outermost first: its answers carry the
    request's ids and are counted, and a request it lets through has passed the token
    check. ``own_lifespan``: the app starts and stops the runtime itself (its ASGI
    lifespan), for a server or ``TestClient`` that runs one; ``chronik serve`` starts
    the runtime itself and runs the app without.
    """
    settings = runtime.settings
    metrics = runtime.metrics
    routes = Routes()
    app = _ChronikAPI(
        title=title or settings.api_title or _default_title(runtime),
        version=version or settings.api_version,
        description=settings.api_description if description is None else description,
        generate_unique_id_function=operation_ids(None),
        lifespan=lifespan(runtime) if own_lifespan else None,
    )
    describing = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    open_paths = PROBES | {path for path in describing if path is not None}
    access = Access(settings.api_token, settings.read_auth, open_paths)
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.access = access
    app.state.contexts = {spec.name for spec in runtime.specs}
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

    @app.get(
        "/metrics",
        tags=["probes"],
        summary="Prometheus metrics",
        response_class=Response,
        name="metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint() -> Response:
        await metrics.refresh(runtime)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    for spec in runtime.specs:
        if spec.routes is None:
            continue
        router: APIRouter = spec.routes(runtime)
        prefix = f"/{spec.name}" if len(runtime.specs) > 1 else ""
        app.include_router(
            router,
            prefix=prefix,
            tags=[spec.name],
            generate_unique_id_function=operation_ids(spec.name),
        )
        routes.add(router.routes, prefix, spec.name)

    if settings.clock == "virtual":
        app.include_router(
            clock_routes(runtime), generate_unique_id_function=operation_ids("clock")
        )
    routes.add(app.router.routes)

    for added in reversed(middleware):  # the first given is the outermost of them
        app.add_middleware(added.cls, *added.args, **added.kwargs)
    app.add_middleware(RequestContext, access=access, metrics=metrics, routes=routes)
    if settings.http_root_path:
        app.add_middleware(RootPath, root_path=settings.http_root_path)  # outermost
    return app


def _default_title(runtime: Runtime) -> str:
    return " + ".join(s.name for s in runtime.specs) + " (chronik)"


def operation_ids(context: str | None) -> Callable[[APIRoute], str]:
    """Operation ids of a context's routes: ``<context>_<route name>`` (``sales_create_lead``).

    The route's name is its function's name unless the route names itself (``name=``);
    chronik's own routes (probes) have no prefix. A generated client names its methods
    after these, where FastAPI's own ids read ``create_lead_sales_leads_post``.
    """

    def operation_id(route: APIRoute) -> str:
        return f"{context}_{route.name}" if context else route.name

    return operation_id


def lifespan(runtime: Runtime) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """An ASGI lifespan that starts ``runtime`` and stops it: ``FastAPI(lifespan=...)``.

    For an app of one's own that mounts chronik's (``app.mount("/api", create_app(rt))``):
    a mounted app is given no lifespan events, so the app that mounts it runs this.
    Combine it with a lifespan of one's own by entering it there
    (``async with chronik_lifespan(app): ...``).
    """

    @asynccontextmanager
    async def running(_app: Any) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            runtime.shutting_down = True
            await runtime.stop()

    return running


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


def consistent_with(
    projections: list[str] | None = None,
) -> Callable[..., Awaitable[None]]:
    """A read's dependency: it waits for the request's ``Chronik-Min-Position``.

    ``dependencies=[Depends(consistent_with(["lead_search"]))]``: as ``wait_consistent``,
    and the OpenAPI document names the header on the route (and its 400).
    """

    async def consistent(
        request: Request,
        _position: Annotated[str | None, Header(alias=MIN_POSITION)] = None,
    ) -> None:
        await wait_consistent(request, projections)

    return consistent


async def wait_consistent(request: Request, projections: list[str] | None = None) -> None:
    """Wait until these projections passed the request's ``Chronik-Min-Position``.

    503 (problem) if they do not within the configured wait: the client retries. 400 for
    a value that is no whole number or one above ``MAX_POSITION``, which no store reaches.
    """
    raw = request.headers.get(MIN_POSITION)
    if raw is None:
        return
    raw = raw.strip(" \t")  # optional whitespace (RFC 9110, 5.6.3)
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
