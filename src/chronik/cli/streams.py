"""``chronik streams``: stream ids and versions, a stream's events, an aggregate's state."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from rich.markup import escape

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
from chronik.errors import ChronikError
from chronik.eventstore import EventTypes, Repository

__all__ = ["app"]

app = typer.Typer(help="Streams of the event store.", no_args_is_help=True)


@app.command("list")
def list_streams(
    prefix: Annotated[str, typer.Option(help="Only streams whose id starts with this.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    after: Annotated[
        str, typer.Option(help="The next page: streams after this id (the last one shown).")
    ] = "",
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="Only streams with an event of this (stored) type."),
    ] = None,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Stream ids and their versions, in id order."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        async with opened(url) as database:
            store = database.event_store(EventTypes([]))
            rows = await store.list_streams(prefix, limit, after=after, event_type=event_type)
            for stream_id, version in rows:
                console.print(f"{escape(stream_id)}  v{version}", markup=False)
            if not rows:
                console.print("No streams.")

    run(work)


@app.command("show")
def show(
    stream_id: str,
    at: Annotated[int | None, typer.Option("--at", help="The state as of this version.")] = None,
    app_ref: AppRef = None,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """A stream's events; with the app known, its aggregate's state as of a version.

    Without the app, events are shown as stored, personal fields as "[encrypted]".
    """
    if at is not None and at < 1:
        errors.print(f"[red]error:[/] --at {at}: versions start at 1")
        raise typer.Exit(2)
    url = store_url_from(store_url, data_dir)
    settings = settings_from(app=app_ref)
    specs = app_specs(settings) if settings.app else []

    async def work() -> None:
        types = EventTypes([t for spec in specs for t in spec.event_types])
        async with opened(url) as database:
            store = database.event_store(types)
            if not specs:
                events = await store.read_stream_raw(stream_id)
                if not events:
                    raise ChronikError(f"stream {stream_id!r} has no events")
                for e in events:
                    if at is not None and e["version"] > at:
                        break
                    console.print_json(msgspec.json.encode(e).decode())
                return
            records = await store.read_stream(stream_id, to_version=at)
            if not records:
                raise ChronikError(f"stream {stream_id!r} has no events")
            for r in records:
                data = msgspec.json.encode(msgspec.to_builtins(r.event)).decode()
                console.print(
                    f"v{r.version}  @{r.position}  {r.recorded_at:%Y-%m-%d %H:%M:%S}  {r.type}"
                )
                console.print_json(data)
            for spec in specs:
                for stream_prefix, cls in spec.aggregates.items():
                    if stream_id.startswith(stream_prefix):
                        repo = Repository(store, cls, prefix=stream_prefix)
                        state = await repo.load(stream_id.removeprefix(stream_prefix), version=at)
                        shown = {k: v for k, v in vars(state).items() if not k.startswith("_")}
                        console.print(f"state of {cls.__name__} at version {state.version}:")
                        console.print_json(msgspec.json.encode(shown).decode())
                        return

    run(work)
