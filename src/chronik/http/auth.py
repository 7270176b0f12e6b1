"""Who needs the API token: writes, the reads that return personal data, or every read.

With ``CHRONIK_API_TOKEN`` set, writes need it as ``Authorization: Bearer <token>``; so
do reads, as ``CHRONIK_READ_AUTH`` says: ``personal`` (the default) the routes that
return personal data, ``all`` every route, ``none`` no read. Probes and the API's own
description stay open.

A context's route says it returns personal data with ``dependencies=[PERSONAL_DATA]``
(first in the list, so that it is refused before it waits for a read model); a router
whose every route does says it once, ``APIRouter(dependencies=[PERSONAL_DATA])``. The
marker checks the token itself, wherever FastAPI puts it, and it names the bearer
scheme, so FastAPI's OpenAPI document names it on those operations; ``Access.document``
then adds it to the writes (and every read, under ``all``) and removes it where no
token is asked for. Writes, and every read under ``all``, are refused by the request
middleware before routing: a body is not even read without the token.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from chronik.errors import TokenRequiredError
from chronik.http.problems import PROBLEM, ProblemResponse, problem

__all__ = ["PERSONAL_DATA", "SCHEME", "WRITES", "Access", "personal_data"]

ReadAuth = Literal["personal", "all", "none"]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: the security scheme's name in the OpenAPI document
SCHEME = "ApiToken"

_BEARER = HTTPBearer(auto_error=False, scheme_name=SCHEME)


def unauthorized(what: str) -> ProblemResponse:
    return problem(
        401,
        "Unauthorized",
        f"{what} need the API token as 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _bearer_token(authorization: str) -> bytes | None:
    """The token of ``Bearer <token>`` as sent, or None for another scheme or none.

    The scheme is matched without regard to case (RFC 9110, 11.1); a bare token without
    it is no Bearer credential.
    """
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip().encode("latin-1")


class Access:
    """The token, what needs it, and the paths that never do."""

    def __init__(self, token: SecretStr | None, reads: ReadAuth, open_paths: set[str]) -> None:
        self.token = token.get_secret_value().encode() if token is not None else None
        self.reads = reads
        self.open_paths = frozenset(open_paths)

    def admits(self, authorization: str) -> bool:
        """Whether this Authorization header carries the token."""
        if self.token is None:
            return True
        given = _bearer_token(authorization)
        return given is not None and hmac.compare_digest(given, self.token)

    def before_routing(self, method: str, path: str) -> str | None:
        """What the request is, if it needs the token whatever route it reaches; or None."""
        if self.token is None or path in self.open_paths:
            return None
        if method in WRITES:
            return "write requests"
        if self.reads == "all":
            return "requests"
        return None

    @property
    def guards_personal_data(self) -> bool:
        return self.token is not None and self.reads != "none"

    def document(self, document: dict[str, Any]) -> None:
        """Name the bearer scheme on exactly the operations that need the token."""
        components = document.setdefault("components", {})
        schemes = components.get("securitySchemes", {})
        schemes.pop(SCHEME, None)
        if not schemes:
            components.pop("securitySchemes", None)
        required: list[dict[str, list[str]]] = [{SCHEME: []}]
        secured = False
        for path, item in document.get("paths", {}).items():
            for method, operation in item.items():
                personal = operation.pop("security", None) == required
                needs = self.token is not None and path not in self.open_paths
                needs = needs and (
                    method.upper() in WRITES
                    or self.reads == "all"
                    or (personal and self.reads == "personal")
                )
                responses = operation.setdefault("responses", {})
                if needs:
                    operation["security"] = required
                    secured = True
                    responses["401"] = {
                        "description": "Missing or wrong API token",
                        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                        "headers": {
                            "WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}},
                            **{
                                name: {"$ref": f"#/components/headers/{name}"}
                                for name in ("X-Correlation-Id", "traceparent")
                            },
                        },
                    }
                else:
                    responses.pop("401", None)
        if secured:
            needed_by = {
                "personal": "writes and reads of personal data",
                "all": "every request but the probes",
                "none": "writes",
            }[self.reads]
            components.setdefault("securitySchemes", {})[SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": f"The API token (CHRONIK_API_TOKEN), needed by {needed_by}",
            }


async def personal_data(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """The marker of a route that returns personal data: it needs the token to read."""
    access: Access | None = getattr(request.app.state, "access", None)
    if access is None or not access.guards_personal_data:
        return
    if not access.admits(request.headers.get("authorization", "")):
        raise TokenRequiredError("reads of personal data")


#: a route's dependency: its answers show personal data (the API token may be required)
PERSONAL_DATA = Depends(personal_data)
