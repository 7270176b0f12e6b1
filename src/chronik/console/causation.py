"""Causation: from any event, what set it off and what it set off, drawn as a tree.

The events of one correlation (everything one request or message set off, in every
context of this service's store) are read with one indexed query
(``BaseEventStore.correlated``) and arranged by their causation ids: an event hangs
under the event that caused it; an event a consumer appended hangs under the message
it handled (its inbox record, the ``chronik-inbox`` header), and the message under the
event it was published from. What has no cause in this store hangs under the request
(the command that came over HTTP) or under a message from another service, whose part
of the chain is on that service's console (``CHRONIK_CONSOLE_PEERS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from chronik.console.app import Console, Nav
from chronik.eventstore import ShownEvent
from chronik.messaging.consumer import INBOX_HEADER

NAV: Nav | None = None  # reached from an event, not from the menu
#: the most events of one correlation drawn
LIMIT = 500


@dataclass
class Node:
    """One box of the tree: a request, a message, or an event, and what it caused."""

    kind: str  # "request", "message", "event"
    label: str
    event: ShownEvent | None = None
    context: str | None = None
    detail: str = ""
    children: list[Node] = field(default_factory=list)


def tree(events: list[ShownEvent], correlation_id: str, contexts: dict[str, str]) -> list[Node]:
    """The roots of the causation tree of one correlation's events (position order)."""
    nodes = {e.id: Node("event", e.type, e, contexts.get(e.type)) for e in events}
    request = Node("request", "request", detail=correlation_id)
    messages: dict[tuple[str, str], Node] = {}
    foreign: dict[str, Node] = {}
    roots: list[Node] = []
    for e in events:
        node = nodes[e.id]
        consumer, _, message_id = (e.headers or {}).get(INBOX_HEADER, "").partition(":")
        if message_id:
            # Appended by a consumer: under the message it handled.
            key = (consumer, message_id)
            message = messages.get(key)
            if message is None:
                message = Node("message", "message", detail=f"{message_id}, handled by {consumer}")
                messages[key] = message
                source = nodes.get(message_id)
                if source is not None:
                    source.children.append(message)
                else:
                    outside = foreign.get(message_id)
                    if outside is None:
                        outside = Node("message", "message from another service", detail=message_id)
                        foreign[message_id] = outside
                        roots.append(outside)
                    outside.children.append(message)
            message.children.append(node)
            continue
        cause = e.causation_id
        if cause is not None and cause != e.id and cause in nodes:
            nodes[cause].children.append(node)
        else:
            request.children.append(node)
    if request.children:
        roots.insert(0, request)
    return roots


def routes(console: Console) -> APIRouter:
    router = console.router()

    def contexts() -> dict[str, str]:
        """Each stored event type's context (the spec that registered it)."""
        types = console.runtime.store.types
        return {
            types.name_of(cls): spec.name
            for spec in console.runtime.specs
            for cls in spec.event_types
            if cls in types
        }

    async def page(request: Request, correlation_id: str, focus: ShownEvent | None) -> HTMLResponse:
        store = console.runtime.store
        events = await store.correlated(
            correlation_id, limit=LIMIT, decrypt=console.shows_personal_data(request)
        )
        return console.render(
            request,
            "causation.html",
            {
                "event": focus,
                "correlation_id": correlation_id,
                "roots": tree(events, correlation_id, contexts()),
                "count": len(events),
                "limit": LIMIT,
                "peers": console.settings.console_peer_urls,
            },
        )

    @router.get("/events/{event_id}", name="console_event")
    async def event(request: Request, event_id: str) -> HTMLResponse:
        """An event and the causation tree of its correlation, the event in focus."""
        try:
            uuid = UUID(event_id)
        except ValueError:
            raise HTTPException(422, f"{event_id!r} is no event id (a UUID)") from None
        store = console.runtime.store
        found = await store.find_event(uuid)
        if found is None:
            raise HTTPException(404, f"no event {event_id} in this service's store")
        [shown] = await store.inspect_stream(
            found.stream_id, found.version, limit=1, decrypt=console.shows_personal_data(request)
        )
        return await page(request, shown.correlation_id or shown.id, shown)

    @router.get("/correlations/{correlation_id}", name="console_correlation")
    async def correlation(request: Request, correlation_id: str) -> HTMLResponse:
        """Everything one request or message set off in this service (another service's
        console links here for its part of a chain)."""
        return await page(request, correlation_id, None)

    return router
