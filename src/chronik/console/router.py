"""The console's routes: the page modules, in menu order, and its static files.

A page module (``home``, ``streams``, ``causation``, ...) has ``NAV`` (its entry in the
menu, or None) and ``routes(console) -> APIRouter`` (a router from ``console.router()``);
add a new one to ``pages()``.
"""

from __future__ import annotations

from types import ModuleType

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from chronik.console import causation, home, messaging, processes, projections, streams
from chronik.console.app import PREFIX, STATIC, Console
from chronik.runtime.service import Runtime

__all__ = ["console_router", "pages"]

#: the files under static/ a browser may fetch, by suffix: their media types
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def pages() -> list[ModuleType]:
    """The page modules, in menu order."""
    return [home, streams, causation, projections, messaging, processes]


def console_router(runtime: Runtime) -> APIRouter:
    """The console's routes, all under ``/console``: ``app.include_router(...)`` includes
    them (``create_app`` does)."""
    console = Console(runtime)
    router = APIRouter(include_in_schema=False)

    @router.get(PREFIX + "/static/{file}", name="console_static")
    async def static(file: str) -> FileResponse:
        path = STATIC / file
        media = _MEDIA.get(path.suffix)
        if media is None or path.parent != STATIC or not path.is_file():
            raise HTTPException(404, f"no console file {file!r}")
        # Files change with the release only: an hour is safe and spares the reloads.
        return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})

    for page in pages():
        if page.NAV is not None:
            console.nav.append(page.NAV)
        router.include_router(page.routes(console))
    return router
