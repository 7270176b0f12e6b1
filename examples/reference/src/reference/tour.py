"""A scripted tour of the event store (``chronik tour``), on a support ticket.

The ticket is also the aggregate of the smallest complete service, ``reference.tickets``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from rich.console import Console
from rich.markup import escape

from chronik.adapters import open_event_store
from chronik.domain import Aggregate, DomainError, Personal, applies, event
from chronik.errors import ConcurrencyError
from chronik.eventstore import EventTypes, Repository


@event("tour.ticket_opened", subject="reporter_id")
@dataclass(frozen=True, slots=True)
class TicketOpened:
    title: str
    reporter_id: str
    reporter: Annotated[str, Personal()]
    at: datetime


@event("tour.ticket_commented")
@dataclass(frozen=True, slots=True)
class TicketCommented:
    text: str


@event("tour.ticket_closed")
@dataclass(frozen=True, slots=True)
class TicketClosed:
    at: datetime


class Ticket(Aggregate):
    """A support ticket: comments only while open; closed once."""

    title: str
    reporter: str
    comments: int
    closed: bool

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.title = ""
        self.reporter = ""
        self.comments = 0
        self.closed = False

    @classmethod
    def open(cls, id: str, title: str, reporter_id: str, reporter: str, at: datetime) -> Ticket:
        ticket = cls(id)
        ticket.record(TicketOpened(title, reporter_id, reporter, at))
        return ticket

    def comment(self, text: str) -> None:
        if self.closed:
            raise DomainError(f"ticket {self.id} is closed")
        self.record(TicketCommented(text))

    def close(self, at: datetime) -> None:
        if not self.closed:
            self.record(TicketClosed(at))

    @applies(TicketOpened)
    def _opened(self, e: TicketOpened) -> None:
        self.title, self.reporter = e.title, e.reporter

    @applies(TicketCommented)
    def _commented(self, e: TicketCommented) -> None:
        self.comments += 1

    @applies(TicketClosed)
    def _closed(self, e: TicketClosed) -> None:
        self.closed = True


async def run_tour(data_dir: Path, console: Console | None = None) -> None:
    out = console or Console()
    path = data_dir / "tour.db"
    store = await open_event_store(
        f"sqlite:///{path}", EventTypes([TicketOpened, TicketCommented, TicketClosed])
    )
    try:
        out.print(
            f"[bold]1.[/] Opened the event store in [cyan]{path}[/] (SQLite, WAL, FULL sync)."
        )
        repo = Repository(store, Ticket, prefix="ticket-", snapshot_every=3)
        ticket_id = uuid.uuid4().hex[:8]
        reporter_id = f"person-{uuid.uuid4().hex[:8]}"
        ticket = Ticket.open(
            ticket_id, "Printer on fire", reporter_id, "Ada Lovelace", datetime.now(UTC)
        )
        result = await repo.save(ticket)
        assert result is not None
        out.print(
            f"[bold]2.[/] Ticket {ticket_id} opened: stream [cyan]{result.stream_id}[/] is at "
            f"version {result.version}, global position {result.position}."
        )
        await repo.execute(ticket_id, lambda t: t.comment("Have you tried turning it off?"))
        ticket = await repo.execute(ticket_id, lambda t: t.comment("It is off now. Still burning."))
        out.print(f"[bold]3.[/] Two comments appended: the ticket is at version {ticket.version}.")

        stale = await repo.load(ticket_id, version=1)
        stale.close(datetime.now(UTC))
        try:
            await repo.save(stale)
        except ConcurrencyError as exc:
            out.print(
                f"[bold]4.[/] A writer holding version 1 is refused: [yellow]{escape(str(exc))}[/]"
            )

        past = await repo.load(ticket_id, version=2)
        out.print(
            f"[bold]5.[/] Time travel: as of version 2 the ticket had {past.comments} comment(s)."
        )

        snapshot = await store.load_snapshot(repo.stream_id(ticket_id))
        if snapshot is not None:
            out.print(
                f"[bold]6.[/] A snapshot was taken at version {snapshot.version} (every 3 events)."
            )

        head = await store.head_position()
        recent = await store.read_all(max(0, head - 3), limit=3)
        out.print(
            f"[bold]7.[/] The store holds {head} events in all; the last ones in global order:"
        )
        for r in recent:
            out.print(f"     position {r.position:>4}  {r.stream_id} v{r.version}  {r.type}")

        out.print(
            "[bold]8.[/] The reporter's name is stored encrypted; it reads as "
            + escape(repr(ticket.reporter))
        )
        await store.forget(reporter_id)
        forgotten = await repo.load(ticket_id)
        name = escape(repr(forgotten.reporter))
        out.print(f"    After forgetting {reporter_id}, it reads as {name}.")
        out.print(f"Done. Run it again: the store in {path} keeps everything.")
    finally:
        await store.close()
