"""``chronik projections``: status, rebuilds and parked events, over ``ProjectionsAdmin``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from chronik.cli.run import (
    DataDir,
    StoreUrl,
    age,
    console,
    opened,
    run,
    settings_from,
    store_url_from,
    within,
)
from chronik.errors import ChronikError
from chronik.eventstore import EventTypes
from chronik.projections.admin import ParkedRequest, ProjectionsAdmin, Rebuild
from chronik.projections.health import STALE_AFTER, WORKER_ROW

__all__ = ["app", "workers_app"]

app = typer.Typer(
    help="Read models: their status, rebuilds and parked events.", no_args_is_help=True
)


workers_app = typer.Typer(
    help="The relay and the consumers: which runs, and why one does not.", no_args_is_help=True
)


@contextlib.asynccontextmanager
async def _admin(url: str, stale_after: float = STALE_AFTER) -> AsyncIterator[ProjectionsAdmin]:
    async with opened(url) as database:
        backend = database.projections()
        await backend.setup()
        store = database.event_store(EventTypes([]))
        yield ProjectionsAdmin(backend, store, stale_after=stale_after)


@app.command("status")
def status(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Every projection and process runner in the store: state, checkpoint, lag, parked.

    The state is computed as /readyz computes it; a runner whose heartbeat is older than
    CHRONIK_STALE_AFTER seconds shows as "stale" (no process runs it, or it is stuck).
    """
    url = store_url_from(store_url, data_dir)
    stale_after = settings_from().stale_after

    async def work() -> None:
        async with _admin(url, stale_after) as admin:
            statuses = await admin.status()
            if not statuses:
                head = await admin.head()
                console.print(f"No projection has run in this store yet (head at {head}).")
                return
            table = Table("projection", "state", "gen", "checkpoint", "lag", "lag (s)", "parked")
            table.add_column("rebuild")
            table.add_column("heartbeat")
            for s in statuses:
                rebuild = "-"
                if s.rebuild is not None:
                    rebuild = f"gen {s.rebuild.generation}: {s.rebuild.done}/{s.head}"
                table.add_row(
                    s.name,
                    s.state,
                    str(s.generation),
                    str(s.checkpoint),
                    str(s.lag_events),
                    f"{s.lag_seconds:.1f}",
                    str(s.parked),
                    rebuild,
                    age(s.heartbeat_at),
                )
            console.print(table)
            for s in statuses:
                if s.state == "error" and s.error:
                    console.print(f"[red]error[/] {escape(f'{s.name}: {s.error}')}", soft_wrap=True)

    run(work)


@workers_app.command("status")
def workers_status(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """The relay and each consumer that ran on the store: state, heartbeat, reason.

    The replica that leads each writes its row (a standby writes none); a row whose
    heartbeat is older than CHRONIK_STALE_AFTER seconds shows as "stale". Projections and
    process runners: `chronik projections status`.
    """
    url = store_url_from(store_url, data_dir)
    stale_after = settings_from().stale_after

    async def work() -> None:
        async with _admin(url, stale_after) as admin:
            workers = await admin.workers()
            if not workers:
                console.print("No relay or consumer has run on this store yet.")
                return
            table = Table("worker", "state", "heartbeat", "reason")
            for w in workers:
                name = w.name.removeprefix(WORKER_ROW)
                table.add_row(name, w.state, age(w.heartbeat_at), escape(w.error or "-"))
            console.print(table)

    run(work)


@app.command("rebuild")
def rebuild(
    name: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    wait: Annotated[bool, typer.Option(help="Follow the rebuild until it switches.")] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds.")] = 3600,
) -> None:
    """Rebuild a read model beside the serving one; it switches in once caught up."""
    url = store_url_from(store_url, data_dir)
    stale_after = settings_from().stale_after

    async def work() -> None:
        async with _admin(url, stale_after) as admin:
            rebuild = await admin.rebuild(name)
            console.print(
                f"Rebuild of {name!r} requested (serving generation {rebuild.generation})."
            )
            if rebuild.unattended:
                console.print(
                    "[yellow]No runner has reported for this projection lately: the rebuild "
                    "starts when one runs.[/]"
                )
            if not wait:
                return
            if not await within(timeout, _follow(rebuild)):
                raise ChronikError(f"the rebuild of {name!r} did not switch within {timeout:g} s")
            console.print(f"Rebuilt: {name!r} now serves generation {await rebuild.serving()}.")

    run(work)


async def _follow(rebuild: Rebuild) -> bool:
    """Show the rebuild's progress as a bar until it switched."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"rebuilding {rebuild.name}", total=1)
        async for step in rebuild.watch():
            progress.update(task, total=max(step.total, 1), completed=step.done)
    return True


def _parked_request(name: str, url: str, verb: str, timeout: float, request: str) -> None:
    async def work() -> None:
        async with _admin(url) as admin:
            asked: ParkedRequest = await (
                admin.replay_parked(name) if request == "replay" else admin.skip_parked(name)
            )
            outcome = await within(timeout, asked.outcome())
            if outcome is None:
                console.print(
                    f"[yellow]The request is stored; no runner took it within {timeout:g} s.[/]"
                )
                return
            console.print(
                f"{verb} {outcome.resolved} of {len(outcome.before)} parked events of {name!r}."
            )
            for parked in outcome.left:
                console.print(
                    f"  still parked: position {parked.position} ({escape(parked.stream_id)} "
                    f"v{parked.version}, {parked.type}): {escape(parked.error)}"
                )

    run(work)


@app.command("replay-parked")
def replay_parked(
    name: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Wait this long for a runner.")] = 60,
) -> None:
    """Apply the parked events of a projection again (after fixing its handler)."""
    url = store_url_from(store_url, data_dir)
    _parked_request(name, url, "Replayed", timeout, "replay")


@app.command("skip-parked")
def skip_parked(
    name: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Wait this long for a runner.")] = 60,
) -> None:
    """Drop the parked events of a projection without applying them."""
    url = store_url_from(store_url, data_dir)
    _parked_request(name, url, "Skipped", timeout, "skip")


@app.command("parked")
def parked(name: str, store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """List the parked events of a projection, with their errors."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        async with _admin(url) as admin:
            events = await admin.parked(name)
            if not events:
                console.print(f"No parked events for {name!r}.")
            for p in events:
                console.print(
                    f"position {p.position}  {escape(p.stream_id)} v{p.version}  {p.type}  "
                    f"attempts {p.attempts}  {p.parked_at:%Y-%m-%d %H:%M:%S}\n  {escape(p.error)}"
                )

    run(work)
