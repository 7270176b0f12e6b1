"""The console's front page: the service, its contexts and their streams, its peers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from chronik.console.app import Console, Nav

NAV = Nav("Overview", "console_home")


def routes(console: Console) -> APIRouter:
    router = console.router()

    @router.get("", name="console_home")
    async def home(request: Request) -> HTMLResponse:
        runtime = console.runtime
        contexts = [
            {"name": spec.name, "categories": sorted(spec.aggregates)} for spec in runtime.specs
        ]
        return console.render(
            request,
            "home.html",
            {
                "head": await runtime.store.head_position(),
                "context_rows": contexts,
                "peers": peers(console),
            },
        )

    return router


def peers(console: Console) -> dict[str, str]:
    """The other services' consoles by name (``CHRONIK_CONSOLE_PEERS``)."""
    return dict(console.settings.console_peer_urls)
