"""The ``chronik`` command line.

Every command that reads a store takes ``--store-url URL`` or ``--data-dir DIR`` (the
embedded SQLite store in that directory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from chronik.errors import ChronikError
from chronik.eventstore import BaseEventStore, EventTypes, open_event_store
from chronik.projections.engine import backend_for
from chronik.projections.readmodel import ProjectionBackend

T = TypeVar("T")

app = typer.Typer(
    name="chronik",
    help="Event-sourced, CQRS services built the domain-driven way.",
    no_args_is_help=True,
    add_completion=False,
)
projections_app = typer.Typer(
    help="Read models: their status, rebuilds and parked events.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")

console = Console()
errors = Console(stderr=True)

StoreUrl = Annotated[
    str | None, typer.Option("--store-url", help="The event store URL (sqlite:///, postgresql://).")
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Use the embedded SQLite store in this directory.")
]

EMBEDDED_FILE = "chronik.db"


def embedded_url(data_dir: Path) -> str:
    """The URL of the embedded store kept in ``data_dir``."""
    return f"sqlite:///{data_dir.resolve()}/{EMBEDDED_FILE}"


def _store_url(store_url: str | None, data_dir: Path | None) -> str:
    if store_url and data_dir:
        raise typer.BadParameter("give --store-url or --data-dir, not both")
    if store_url:
        return store_url
    if data_dir:
        return embedded_url(data_dir)
    raise typer.BadParameter("say which store: --store-url URL or --data-dir DIR")


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; a chronik error is one line on stderr and exit code 1."""
    try:
        return asyncio.run(work())
    except (ChronikError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        errors.print(f"[red]error:[/] {escape(str(message))}")
        raise typer.Exit(1) from None


@app.callback()
def _root() -> None:
    """Event-sourced, CQRS services built the domain-driven way."""


@app.command()
def tour(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the embedded SQLite file is kept.")
    ] = Path(".chronik"),
) -> None:
    """A short scripted tour of the event store on an embedded SQLite file."""
    from chronik.tour import run_tour

    asyncio.run(run_tour(data_dir))


# -- projections ---------------------------------------------------------------------


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f} s ago"


@projections_app.command("status")
def projections_status(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Every projection in the store: state, checkpoint, lag, parked events, rebuilds."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        store = await open_event_store(url, EventTypes([]))
        try:
            backend = backend_for(store)
            await backend.setup()
            head = await store.head_position()
            table = Table("projection", "state", "gen", "checkpoint", "lag", "lag (s)", "parked")
            table.add_column("rebuild")
            table.add_column("heartbeat")
            rows = await backend.load_all()
            for row in rows:
                oldest = (
                    await store.recorded_at_after(row.checkpoint) if row.state != "inline" else None
                )
                lag = 0 if row.state == "inline" else max(0, head - row.checkpoint)
                lag_s = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
                rebuild = "-"
                if row.rebuild_generation is not None:
                    done = row.rebuild_checkpoint or 0
                    rebuild = f"gen {row.rebuild_generation}: {done}/{head}"
                table.add_row(
                    row.name,
                    row.state,
                    str(row.generation),
                    str(row.checkpoint),
                    str(lag),
                    f"{lag_s:.1f}",
                    str(len(await backend.parked(row.name))),
                    rebuild,
                    _age(row.heartbeat_at),
                )
            if not rows:
                console.print(f"No projection has run in this store yet (head at {head}).")
            else:
                console.print(table)
        finally:
            await store.close()

    _run(work)


async def _request(url: str, name: str, request: str) -> tuple[BaseEventStore, ProjectionBackend]:
    store = await open_event_store(url, EventTypes([]))
    backend = backend_for(store)
    await backend.setup()
    await backend.request(name, request)
    return store, backend


def _stale(heartbeat: datetime | None) -> bool:
    return heartbeat is None or (datetime.now(UTC) - heartbeat).total_seconds() > 30


@projections_app.command("rebuild")
def projections_rebuild(
    name: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    wait: Annotated[bool, typer.Option(help="Follow the rebuild until it switches.")] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds.")] = 3600,
) -> None:
    """Rebuild a read model beside the serving one; it switches in once caught up."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        store, back = await _request(url, name, "rebuild")
        try:
            before = await back.load(name)
            assert before is not None
            console.print(
                f"Rebuild of {name!r} requested (serving generation {before.generation})."
            )
            if _stale(before.heartbeat_at):
                console.print(
                    "[yellow]No runner has reported for this projection lately: the rebuild "
                    "starts when one runs.[/]"
                )
            if not wait:
                return
            deadline = time.monotonic() + timeout
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(f"rebuilding {name}", total=1)
                while time.monotonic() < deadline:
                    row = await back.load(name)
                    assert row is not None
                    head = await store.head_position()
                    if row.generation > before.generation and row.rebuild_generation is None:
                        progress.update(task, total=max(head, 1), completed=max(head, 1))
                        break
                    progress.update(task, total=max(head, 1), completed=row.rebuild_checkpoint or 0)
                    await asyncio.sleep(0.2)
                else:
                    raise ChronikError(
                        f"the rebuild of {name!r} did not switch within {timeout:g} s"
                    )
            row = await back.load(name)
            assert row is not None
            console.print(f"Rebuilt: {name!r} now serves generation {row.generation}.")
        finally:
            await store.close()

    _run(work)


def _parked_command(name: str, url: str, request: str, verb: str, timeout: float) -> None:
    async def work() -> None:
        store, back = await _request(url, name, request)
        try:
            before = len(await back.parked(name))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                row = await back.load(name)
                if row is not None and row.request is None:
                    break
                await asyncio.sleep(0.2)
            else:
                console.print(
                    f"[yellow]The request is stored; no runner took it within {timeout:g} s.[/]"
                )
                return
            left = await back.parked(name)
            console.print(f"{verb} {before - len(left)} of {before} parked events of {name!r}.")
            for parked in left:
                console.print(
                    f"  still parked: position {parked.position} ({escape(parked.stream_id)} "
                    f"v{parked.version}, {parked.type}): {escape(parked.error)}"
                )
        finally:
            await store.close()

    _run(work)


@projections_app.command("replay-parked")
def projections_replay_parked(
    name: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Wait this long for a runner.")] = 60,
) -> None:
    """Apply the parked events of a projection again (after fixing its handler)."""
    _parked_command(name, _store_url(store_url, data_dir), "replay-parked", "Replayed", timeout)


@projections_app.command("skip-parked")
def projections_skip_parked(
    name: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Wait this long for a runner.")] = 60,
) -> None:
    """Drop the parked events of a projection without applying them."""
    _parked_command(name, _store_url(store_url, data_dir), "skip-parked", "Skipped", timeout)


@projections_app.command("parked")
def projections_parked(name: str, store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """List the parked events of a projection, with their errors."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        store = await open_event_store(url, EventTypes([]))
        try:
            backend = backend_for(store)
            await backend.setup()
            parked = await backend.parked(name)
            if not parked:
                console.print(f"No parked events for {name!r}.")
            for p in parked:
                console.print(
                    f"position {p.position}  {escape(p.stream_id)} v{p.version}  {p.type}  "
                    f"attempts {p.attempts}  {p.parked_at:%Y-%m-%d %H:%M:%S}\n  {escape(p.error)}"
                )
        finally:
            await store.close()

    _run(work)


def main() -> None:
    app()
