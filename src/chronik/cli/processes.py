"""``chronik processes``: instances and their steps, over ``ProcessesAdmin``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
import typer
from rich.markup import escape
from rich.table import Table

from chronik.cli.run import DataDir, StoreUrl, console, opened, run, store_url_from
from chronik.errors import NotFoundError
from chronik.eventstore import EventTypes
from chronik.processes.admin import ProcessesAdmin

__all__ = ["app"]

app = typer.Typer(help="Sagas and process managers.", no_args_is_help=True)


@contextlib.asynccontextmanager
async def _admin(url: str) -> AsyncIterator[ProcessesAdmin]:
    async with opened(url) as database:
        backend = database.projections()
        await backend.setup()
        yield ProcessesAdmin(backend, database.event_store(EventTypes([])))


@app.command("list")
def list_instances(
    process: Annotated[str | None, typer.Option(help="Only instances of this process.")] = None,
    status: Annotated[str | None, typer.Option(help="Only instances in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=10_000)] = 100,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Running and finished instances with their status, last step and pending timeouts."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        async with _admin(url) as admin:
            if not await admin.indexed():
                console.print("No process has run in this store yet.")
                return
            table = Table("process", "instance", "status", "steps", "last step", "timeouts")
            for view in await admin.instances(process=process, status=status, limit=limit):
                timeouts = ", ".join(
                    f"{t['name']} @ {t['due'][:19]}" for t in view.timeouts.values()
                )
                table.add_row(
                    view.process,
                    escape(view.instance),
                    view.status + (" (finished)" if view.finished else ""),
                    str(view.steps),
                    f"{view.last_trigger} {(view.last_step or '')[:19]}",
                    timeouts or "-",
                )
            console.print(table)

    run(work)


@app.command("show")
def show(
    reference: Annotated[str, typer.Argument(help="PROCESS/INSTANCE, as `processes list` shows")],
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """One instance: its state, data, pending timeouts and every step it took."""
    url = store_url_from(store_url, data_dir)
    process, _, instance = reference.partition("/")
    if not instance:
        raise typer.BadParameter("give PROCESS/INSTANCE, like trip_booking/t-42")

    async def work() -> None:
        async with _admin(url) as admin:
            view = await admin.instance(process, instance)
            if view is None:
                raise NotFoundError(f"no instance {reference!r}")
            console.print_json(msgspec.json.encode(view).decode())
            for step in await admin.steps(process, instance):
                commands = ", ".join(step.commands) or "-"
                console.print(
                    f"v{step.version}  {step.recorded_at:%Y-%m-%dT%H:%M:%S}  "
                    f"{step.trigger_type} -> {step.status}  commands: {commands}",
                    markup=False,
                )

    run(work)
