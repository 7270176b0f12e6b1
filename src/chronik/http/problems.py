"""Errors as RFC 9457 problem details (``application/problem+json``), never a traceback.

ValidationError of a request   -> 422 (malformed JSON: 400)
InvalidInputError              -> 400
InvalidValueError              -> 422   a value object refused a field
DomainError                    -> 409   a business rule forbids it in this state; a subclass
                                        may declare its own problem_type, problem_title
                                        and problem_status (a 4xx)
ConcurrencyError               -> 409   with the stream's current version
DuplicateEventError            -> 409
SubjectForgottenError          -> 409   personal data of a forgotten data subject
StreamNotFoundError            -> 404
StoreUnavailableError          -> 503   with Retry-After
anything else                  -> 500   logged, with no detail that leaks internals
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from chronik.errors import (
    ConcurrencyError,
    DomainError,
    DuplicateEventError,
    InvalidInputError,
    InvalidValueError,
    StoreUnavailableError,
    StreamNotFoundError,
    SubjectForgottenError,
)

__all__ = [
    "PROBLEM",
    "Problem",
    "ProblemResponse",
    "allowed_methods",
    "install_problem_handlers",
    "problem",
    "rule_problem",
]

#: the media type of a problem's body (RFC 9457)
PROBLEM = "application/problem+json"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
log = logging.getLogger(__name__)


class Problem(BaseModel):
    """RFC 9457 problem details, with chronik's extra members where they apply."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    stream_id: str | None = None
    current_version: int | None = None


class ProblemResponse(JSONResponse):
    """A JSON response sent as ``application/problem+json``."""

    media_type = PROBLEM


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """A problem+json response; ``extra`` members go into its body beside the others."""
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=str(request.url.path) if request is not None else None,
        **extra,
    )
    return ProblemResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def rule_problem(exc: DomainError, *, request: Request | None = None) -> ProblemResponse:
    """The answer to a broken rule: the problem its class declares (by default 409, no type)."""
    return problem(
        exc.problem_status, exc.problem_title, str(exc), request=request, type=exc.problem_type
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path.

    Starlette's 405 names the methods of the first route that matches the path only
    (``Allow: POST`` for ``/tickets`` though ``GET /tickets`` exists too), so each
    method is tried against all routes, as the router would match it.
    """
    routes = request.app.router.routes
    path, root_path = request.scope["path"], request.scope.get("root_path", "")
    allowed = []
    for method in METHODS:
        probe = {"type": "http", "path": path, "root_path": root_path, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def install_problem_handlers(app: FastAPI) -> None:
    """Every error a route can raise becomes a problem response."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem(
                400, "Malformed JSON", "the body is not valid JSON", request=request, errors=errors
            )
        return problem(
            422, "Invalid request", "the request does not fit", request=request, errors=errors
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> ProblemResponse:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return problem(exc.status_code, str(exc.detail), request=request, headers=headers)

    @app.exception_handler(ConcurrencyError)
    async def _conflict(request: Request, exc: ConcurrencyError) -> ProblemResponse:
        return problem(
            409,
            "Concurrent change",
            str(exc),
            request=request,
            stream_id=exc.stream_id,
            current_version=exc.actual,
        )

    @app.exception_handler(InvalidValueError)
    async def _invalid_value(request: Request, exc: InvalidValueError) -> ProblemResponse:
        return problem(
            exc.problem_status,
            exc.problem_title,
            str(exc),
            request=request,
            type=exc.problem_type,
            errors=[{"loc": [exc.field], "msg": exc.reason}],
        )

    @app.exception_handler(DomainError)
    async def _rule(request: Request, exc: DomainError) -> ProblemResponse:
        return rule_problem(exc, request=request)

    @app.exception_handler(StreamNotFoundError)
    async def _missing(request: Request, exc: StreamNotFoundError) -> ProblemResponse:
        return problem(404, "Not found", str(exc), request=request)

    @app.exception_handler(DuplicateEventError)
    async def _duplicate(request: Request, exc: DuplicateEventError) -> ProblemResponse:
        return problem(409, "Already done", str(exc), request=request)

    @app.exception_handler(SubjectForgottenError)
    async def _forgotten(request: Request, exc: SubjectForgottenError) -> ProblemResponse:
        # The subject is not echoed: it identifies the person who asked to be forgotten.
        return problem(
            409,
            "Forgotten",
            "this data subject was forgotten at their request: their personal data is "
            "not stored again",
            request=request,
        )

    @app.exception_handler(InvalidInputError)
    async def _bad_input(request: Request, exc: InvalidInputError) -> ProblemResponse:
        return problem(400, "Bad input", str(exc), request=request)

    @app.exception_handler(StoreUnavailableError)
    async def _unavailable(request: Request, exc: StoreUnavailableError) -> ProblemResponse:
        log.warning(
            "store unavailable during a request",
            extra={"method": request.method, "path": request.url.path, "error": str(exc)},
        )
        return problem(
            503,
            "Unavailable",
            "the event store cannot be reached",
            request=request,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
        log.exception("request failed", extra={"method": request.method, "path": request.url.path})
        return problem(500, "Internal error", "an unexpected error happened", request=request)
