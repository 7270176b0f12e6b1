"""Causation: from any event, what caused it and what it caused, as a graph."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from chronik.console.app import Console, Nav

NAV: Nav | None = None  # reached from an event, not from the menu


def routes(console: Console) -> APIRouter:
    router = console.router()

    @router.get("/events/{event_id}", name="console_event")
    async def event(request: Request, event_id: str) -> HTMLResponse:
        try:
            uuid = UUID(event_id)
        except ValueError:
            raise HTTPException(422, f"{event_id!r} is no event id (a UUID)") from None
        store = console.runtime.store
        found = await store.find_event(uuid)
        if found is None:
            raise HTTPException(404, f"no event {event_id} in this service's store")
        [shown] = await store.inspect_stream(
            found.stream_id,
            found.version,
            limit=1,
            decrypt=console.shows_personal_data(request),
        )
        return console.render(request, "causation.html", {"event": shown})

    return router
