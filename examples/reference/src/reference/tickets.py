"""The smallest complete service: support tickets over HTTP (``reference.tickets:SPEC``).

The runtime's tests serve it. It shows the shape of a context's parts: thin routes
turning requests into commands, a projection answering reads, the consistency token and
idempotent POSTs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from chronik.errors import StreamNotFoundError
from chronik.eventstore import AppendResult, Repository
from chronik.http.app import CommandResult, consistent_with, run_command
from chronik.projections import Projection, ReadModelTx, handles
from chronik.runtime.service import Runtime, ServiceSpec
from reference.tour import Ticket, TicketClosed, TicketCommented, TicketOpened

__all__ = ["SPEC", "TicketBoard"]


class TicketBoard(Projection):
    name = "ticket_board"
    tables = ("tickets",)

    @handles(TicketOpened)
    async def _opened(self, e: TicketOpened, tx: ReadModelTx) -> None:
        assert tx.current is not None
        key = tx.current.stream_id.removeprefix("ticket-")
        tx.put("tickets", key, {"id": key, "title": e.title, "comments": 0, "closed": False})

    @handles(TicketCommented)
    async def _commented(self, e: TicketCommented, tx: ReadModelTx) -> None:
        assert tx.current is not None
        tx.increment("tickets", tx.current.stream_id.removeprefix("ticket-"), "comments")

    @handles(TicketClosed)
    async def _closed(self, e: TicketClosed, tx: ReadModelTx) -> None:
        assert tx.current is not None
        tx.patch("tickets", tx.current.stream_id.removeprefix("ticket-"), {"closed": True})


class OpenTicket(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    reporter: str = Field(min_length=1, max_length=200)


class Comment(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class TicketView(BaseModel):
    id: str
    title: str
    comments: int
    closed: bool


def _routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    def repo() -> Repository[Ticket]:
        return Repository(runtime.store, Ticket, prefix="ticket-", snapshot_every=50)

    def id_of(stream_id: str) -> str:
        return stream_id.removeprefix("ticket-")

    @router.post("/tickets", status_code=201, response_model=CommandResult)
    async def open_ticket(body: OpenTicket, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            ticket_id = uuid.uuid4().hex[:12]
            ticket = Ticket.open(
                ticket_id, body.title, f"person-{ticket_id}", body.reporter, datetime.now(UTC)
            )
            result = await repo().save(ticket)
            assert result is not None
            return ticket_id, result

        return await run_command(request, response, work, id_of=id_of)

    @router.post("/tickets/{ticket_id}/comments", response_model=CommandResult)
    async def comment(ticket_id: str, body: Comment, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            r = repo()
            ticket = await r.load(ticket_id)
            ticket.comment(body.text)
            result = await r.save(ticket)
            assert result is not None
            return ticket_id, result

        return await run_command(request, response, work, id_of=id_of)

    @router.post("/tickets/{ticket_id}/close", response_model=CommandResult)
    async def close(ticket_id: str, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            r = repo()
            ticket = await r.load(ticket_id)
            ticket.close(datetime.now(UTC))
            result = await r.save(ticket)
            if result is None:  # already closed: nothing new, answer where it stands
                version = await runtime.store.stream_version(r.stream_id(ticket_id))
                head = await runtime.store.head_position()
                result = AppendResult(r.stream_id(ticket_id), version, head, head)
            return ticket_id, result

        return await run_command(request, response, work, id_of=id_of)

    consistent = consistent_with(["ticket_board"])

    @router.get(
        "/tickets/{ticket_id}", response_model=TicketView, dependencies=[Depends(consistent)]
    )
    async def get_ticket(ticket_id: str) -> Any:
        doc = await runtime.engine.read_models.get("ticket_board", "tickets", ticket_id)
        if doc is None:
            raise StreamNotFoundError(f"ticket-{ticket_id}")
        return doc

    @router.get("/tickets", response_model=list[TicketView], dependencies=[Depends(consistent)])
    async def list_tickets(
        search: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Any:
        rm = runtime.engine.read_models
        if search:
            return await rm.search("ticket_board", "tickets", "title", search, limit=limit)
        return await rm.find("ticket_board", "tickets", limit=limit)

    return router


SPEC = ServiceSpec(
    name="tickets",
    event_types=[TicketOpened, TicketCommented, TicketClosed],
    projections=[TicketBoard()],
    routes=_routes,
)
