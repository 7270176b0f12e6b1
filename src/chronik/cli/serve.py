"""The commands that run something: ``serve``, ``relay``, ``migrate``, ``demo``, ``tour``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from chronik._demos import find_demo
from chronik._extras import require
from chronik.adapters.url import redact
from chronik.cli.run import (
    AppRef,
    BrokerUrl,
    DataDir,
    StoreUrl,
    app_specs,
    configured,
    console,
    errors,
    opened,
    run,
    settings_from,
    store_url_from,
)
from chronik.eventstore import EventTypes

__all__ = ["demo", "migrate", "relay", "serve", "tour"]


def serve(
    app_ref: AppRef = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (CHRONIK_HTTP_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP address (CHRONIK_HTTP_HOST).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="CHRONIK_DATA_DIR")] = None,
    store_url: Annotated[str | None, typer.Option(help="CHRONIK_EVENT_STORE_URL")] = None,
    broker_url: Annotated[str | None, typer.Option(help="CHRONIK_BROKER_URL")] = None,
    run_roles: Annotated[
        str | None, typer.Option("--run", help="CHRONIK_RUN: all, or http,projections,...")
    ] = None,
) -> None:
    """Run a service: HTTP API, projections, relay, consumers and processes."""
    configured(lambda: require("http", "chronik serve"))
    settings = settings_from(
        app=app_ref,
        http_port=port,
        http_host=host,
        data_dir=data_dir,
        event_store_url=store_url,
        broker_url=broker_url,
        run=run_roles,
    )
    specs = app_specs(settings)
    from chronik.http.serve import serve as serve_http
    from chronik.runtime.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format, service=settings.service)
    run(lambda: serve_http(settings, specs))


def relay(
    broker_url: BrokerUrl = None,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="Messages per pipelined batch.")] = 256,
) -> None:
    """Relay the outbox to the broker until SIGTERM or Ctrl-C (for its own Deployment)."""
    settings = settings_from(broker_url=broker_url)
    if settings.broker_url.lower().startswith("memory:"):
        errors.print(
            "[red]configuration:[/] CHRONIK_BROKER_URL: the relay needs nats:// or amqp://; "
            "memory:// reaches no other process"
        )
        raise typer.Exit(2)
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        import signal

        from chronik.adapters import open_broker
        from chronik.messaging.relay import Relay
        from chronik.runtime.settings import opened_from

        # The broker first, within its connect timeout: a relay that cannot reach it
        # exits having opened (or created) no store.
        broker = await opened_from(
            "CHRONIK_BROKER_URL",
            open_broker(settings.broker_url, connect_timeout=settings.broker_connect_timeout),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with opened(url, create=True) as database:
                storage = database.messages()
                await storage.setup()
                worker = Relay(
                    database.event_store(EventTypes([])), broker, storage=storage, batch=batch
                )
                errors.print(
                    f"relaying the outbox of {escape(redact(url))} "
                    f"to {escape(redact(settings.broker_url))}"
                )
                await worker.run(stop)
        finally:
            await broker.close()
        errors.print(f"relay stopped after {worker.relayed} messages")

    run(work)


def migrate(app_ref: AppRef = None, store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Create or migrate the store's tables (events, read models, outbox, inbox)."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        with Progress(TextColumn("{task.description}"), BarColumn(), console=console) as progress:
            task = progress.add_task("migrating", total=3)
            async with opened(url, create=True) as database:
                progress.advance(task)
                await database.projections().setup()
                progress.advance(task)
                await database.messages().setup()
                progress.advance(task)
        console.print(f"Migrated {escape(redact(url))}: events, read models, outbox and inbox.")

    run(work)


def demo(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where the embedded store lives.")] = Path(
        ".chronik"
    ),
    host: Annotated[str, typer.Option(help="HTTP address.")] = "127.0.0.1",
    clock: Annotated[
        str,
        typer.Option(
            help="The processes' clock: 'virtual' (turned by `chronik clock advance`) or 'system'."
        ),
    ] = "virtual",
) -> None:
    """Run the reference system embedded (sales, campaigns, travel), with example data.

    SIGTERM or Ctrl-C stops it as it stops `chronik serve`: requests in flight are
    answered; seeding that has not finished stops where it is.
    """
    found = configured(lambda: find_demo("chronik demo"))
    settings = settings_from(
        app=found.app,
        http_port=port,
        http_host=host,
        data_dir=data_dir,
        run="all",
        log_format="console",
        log_level="warning",
        demo=True,
        clock=clock,
    )
    specs = app_specs(settings)
    from chronik.http.serve import serve as serve_http
    from chronik.runtime.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format, service=settings.service)

    async def work() -> None:
        # A signal before the server has taken over SIGTERM and SIGINT (while the store
        # opens) stops it as soon as it serves; once serving, its own handlers do.
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        server = asyncio.create_task(serve_http(settings, specs, stopping=stopping))
        seeding = asyncio.create_task(
            found.seed_and_explain(f"http://{host}:{port}", settings.data_dir, console)
        )
        asked = asyncio.create_task(stopping.wait())
        await asyncio.wait({server, seeding, asked}, return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        if not seeding.done():
            seeding.cancel()
            if not server.done():
                errors.print("stopping before the example data was all in")
        await asyncio.wait({seeding})
        failed = None if seeding.cancelled() else seeding.exception()
        if failed is not None and not stopping.is_set() and not server.done():
            stopping.set()  # seeding failed while nobody asked to stop: stop, then say why
            await server
            raise failed
        await server

    run(work)


def tour(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the embedded SQLite file is kept.")
    ] = Path(".chronik"),
) -> None:
    """A short scripted tour of the event store on an embedded SQLite file."""
    found = configured(lambda: find_demo("chronik tour"))
    asyncio.run(found.run_tour(data_dir, console))
