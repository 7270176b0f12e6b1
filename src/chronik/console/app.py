"""The console's frame: templates, links that survive a path prefix, who may see and do
what. Every page module imports this one; ``chronik.console.router`` assembles them."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from chronik.errors import TokenRequiredError
from chronik.runtime.service import Runtime

__all__ = ["PREFIX", "STATIC", "Console", "Nav"]

#: where the console is, under the app's root (and under an Ingress prefix, if any)
PREFIX = "/console"
HERE = Path(__file__).parent
STATIC = HERE / "static"


@dataclass(frozen=True)
class Nav:
    """A page's entry in the console's menu: its label and its route's name."""

    label: str
    route: str


class _Access(Protocol):
    """What the HTTP adapter's ``Access`` (on ``app.state.access``) offers the console."""

    token: bytes | None

    def admits(self, authorization: str) -> bool: ...

    @property
    def guards_personal_data(self) -> bool: ...


class Console:
    """What every page module is given: the runtime, the templates and their helpers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.nav: list[Nav] = []

    @staticmethod
    def router() -> APIRouter:
        """A page module's router: its paths are under ``/console`` (``""`` is the page
        ``/console`` itself), and it is not in the OpenAPI document."""
        return APIRouter(prefix=PREFIX, include_in_schema=False)

    # -- links ---------------------------------------------------------------------------

    @staticmethod
    def href(
        request: Request, name: str, /, query: Mapping[str, Any] | None = None, **path: Any
    ) -> str:
        """The path of the route ``name`` as the browser must ask for it.

        The prefix an Ingress routes (``root_path``, the setting ``CHRONIK_HTTP_ROOT_PATH``)
        and a mount in a user's own app are kept; the link is relative to the host, so a
        proxy's scheme and host never leak into a page.
        """
        url = request.scope.get("root_path", "") + request.app.url_path_for(
            name, **{k: str(v) for k, v in path.items()}
        )
        given = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
        return f"{url}?{urlencode(given)}" if given else url

    # -- pages ---------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        """A page (or, for an htmx request, the same template: it may render a fragment)."""

        def href(name: str, /, query: Mapping[str, Any] | None = None, **path: Any) -> str:
            return self.href(request, name, query, **path)

        page = self.templates.get_template(template).render(
            request=request,
            href=href,
            static=lambda file: href("console_static", file=file),
            nav=self.nav,
            current=getattr(request.scope.get("route"), "name", None),
            service=self.settings.service,
            contexts=[spec.name for spec in self.runtime.specs],
            htmx=request.headers.get("hx-request") == "true",
            **context,
        )
        return HTMLResponse(page, status_code=status)

    # -- who may see and do what ---------------------------------------------------------

    @staticmethod
    def _access(request: Request) -> _Access | None:
        return getattr(request.app.state, "access", None)

    def shows_personal_data(self, request: Request) -> bool:
        """Whether this request may see personal data decrypted (as the API's reads).

        With an API token and ``CHRONIK_READ_AUTH`` other than ``none``, only a request
        that carries it: the console's script sends the token a user typed in.
        """
        access = self._access(request)
        if access is None or not access.guards_personal_data:
            return True
        return access.admits(request.headers.get("authorization", ""))

    def check_action(self, request: Request) -> None:
        """Refuse an action (a POST that changes something) this request may not take.

        Actions are off unless ``CHRONIK_CONSOLE_ACTIONS`` is on (the console is read-only
        by default); with an API token they need it (``Authorization: Bearer``), as every
        write does; and a browser's request from another site is refused.
        """
        if not self.settings.console_actions:
            raise HTTPException(403, "the console is read-only: set CHRONIK_CONSOLE_ACTIONS=1")
        access = self._access(request)
        if access is not None and not access.admits(request.headers.get("authorization", "")):
            raise TokenRequiredError("console actions")
        if access is None and self.settings.api_token is not None:
            token = self.settings.api_token.get_secret_value().encode()
            given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(given, token):
                raise TokenRequiredError("console actions")
        origin = request.headers.get("origin")
        # The host the browser asked for: a proxy that rewrites Host says it in
        # X-Forwarded-Host.
        hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
        if origin is not None and origin.split("://", 1)[-1] not in hosts:
            raise HTTPException(403, f"a console action from another site ({origin}) is refused")
