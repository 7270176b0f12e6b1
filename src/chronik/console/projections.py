"""The console's projections: state, checkpoint, lag, rebuilds and parked events.

Read through ``ProjectionsAdmin``, as ``chronik projections`` reads them: the status of
each runner's row, the lag in events (the store's head past the checkpoint) and in
seconds (since the first event past it was recorded). A projection's page polls its live
part (state, lag chart, rebuild progress, parked events) every two seconds. The actions
(rebuild, replay or skip the parked events) store a request on the projection's row for
its runner, as the command line does; they are POSTs the console's action check admits.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chronik.console.app import Console, Nav
from chronik.console.live import join_samples, parse_samples, sparkline
from chronik.errors import NotFoundError
from chronik.projections.admin import ProjectionsAdmin
from chronik.projections.health import RebuildProgress

__all__ = ["NAV", "admin", "routes"]

NAV = Nav("Projections", "console_projections")

#: how many parked events a projection's page lists (the oldest first)
PARKED_SHOWN = 50

Samples = Annotated[str | None, Query(max_length=2000, description="lag samples so far")]


def admin(console: Console) -> ProjectionsAdmin:
    """The projections admin of the service's database (made per request: cheap)."""
    runtime = console.runtime
    return ProjectionsAdmin(
        runtime.database.projections(), runtime.store, stale_after=runtime.settings.stale_after
    )


def _percent(rebuild: RebuildProgress | None) -> float | None:
    if rebuild is None:
        return None
    return 100.0 if rebuild.total <= 0 else min(100.0, 100.0 * rebuild.done / rebuild.total)


def routes(console: Console) -> APIRouter:
    router = console.router()

    @router.get("/projections", name="console_projections", response_class=HTMLResponse)
    async def projections(request: Request) -> HTMLResponse:
        found = admin(console)
        return console.render(
            request,
            "projections.html",
            {
                "title": "Projections",
                "statuses": await found.status(),
                "workers": await found.workers(),
                "head": await found.head(),
                "percent": _percent,
            },
        )

    async def live_context(request: Request, name: str, samples: str | None) -> dict[str, object]:
        found = admin(console)
        try:
            status = await found.status_of(name)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        lag = [*parse_samples(samples), float(status.lag_events)]
        parked = await found.parked(name)
        return {
            "title": f"Projection {name}",
            "name": name,
            "status": status,
            "lag": sparkline(lag),
            "samples": join_samples(lag),
            "parked": parked[:PARKED_SHOWN],
            "parked_total": len(parked),
            "percent": _percent(status.rebuild),
            "actions": console.settings.console_actions,
            "notice": request.query_params.get("done"),
        }

    @router.get("/projections/{name}", name="console_projection", response_class=HTMLResponse)
    async def projection(request: Request, name: str, samples: Samples = None) -> HTMLResponse:
        return console.render(
            request, "projection.html", await live_context(request, name, samples)
        )

    @router.get(
        "/projections/{name}/live", name="console_projection_live", response_class=HTMLResponse
    )
    async def live(request: Request, name: str, samples: Samples = None) -> HTMLResponse:
        return console.render(
            request, "projection_live.html", await live_context(request, name, samples)
        )

    def back(request: Request, name: str, done: str) -> Response:
        url = console.href(request, "console_projection", {"done": done}, name=name)
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    @router.post("/projections/{name}/rebuild", name="console_projection_rebuild")
    async def rebuild(request: Request, name: str) -> Response:
        console.check_action(request)
        try:
            asked = await admin(console).rebuild(name)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        note = "rebuild asked for" + (
            " (no runner reported lately: it begins when one runs)" if asked.unattended else ""
        )
        return back(request, name, note)

    @router.post("/projections/{name}/replay-parked", name="console_projection_replay")
    async def replay(request: Request, name: str) -> Response:
        console.check_action(request)
        try:
            asked = await admin(console).replay_parked(name)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        return back(request, name, f"replay of {len(asked.before)} parked event(s) asked for")

    @router.post("/projections/{name}/skip-parked", name="console_projection_skip")
    async def skip(request: Request, name: str) -> Response:
        console.check_action(request)
        try:
            asked = await admin(console).skip_parked(name)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        return back(request, name, f"skip of {len(asked.before)} parked event(s) asked for")

    return router
