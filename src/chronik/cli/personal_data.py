"""``chronik personal-data``: data subjects a forgetting event names who are not forgotten."""

from __future__ import annotations

from typing import Annotated

import typer

from chronik.cli.run import (
    AppRef,
    DataDir,
    StoreUrl,
    app_specs,
    console,
    errors,
    opened,
    run,
    settings_from,
    store_url_from,
)
from chronik.eventstore import EventTypes

__all__ = ["app"]

app = typer.Typer(help="Personal data: forgotten data subjects.", no_args_is_help=True)


@app.command("check")
def check(
    repair: Annotated[
        bool, typer.Option("--repair", help="Forget each subject the check finds.")
    ] = False,
    app_ref: AppRef = None,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Find data subjects a forgetting event names who are not forgotten (exit 1 if any).

    Stores written before forgetting was part of the forgetting event's append may hold
    them: the event was stored, the separate forget never ran. The app says which event
    types forget (``@event(..., forgets=True)``).
    """
    url = store_url_from(store_url, data_dir)
    specs = app_specs(settings_from(app=app_ref))
    types = EventTypes([t for spec in specs for t in spec.event_types])
    if not types.forgetting_names:
        errors.print("[red]configuration:[/] no event type of the app forgets its subject")
        raise typer.Exit(2)

    async def work() -> list[str]:
        async with opened(url) as database:
            return await database.event_store(types).check_forgetting(repair=repair)

    found = run(work)
    shown = ", ".join(found)
    if not found:
        console.print("Every data subject a forgetting event names is forgotten.")
    elif repair:
        console.print(f"Forgot {len(found)} data subject(s): {shown}", markup=False)
    else:
        console.print(
            f"{len(found)} data subject(s) named by a forgetting event are not forgotten: "
            f"{shown}\nRun again with --repair to forget them.",
            markup=False,
        )
        raise typer.Exit(1)
