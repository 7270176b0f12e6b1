"""The commands that run something: ``serve``, ``relay``, ``migrate``, ``demo``, ``tour``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

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
from chronik.errors import ChronikError
from chronik.eventstore import EventTypes
from chronik.runtime.service import ServiceSpec
from chronik.runtime.settings import LoadedSettings, Settings, load_settings

#: a context of nothing, so that a Runtime can name the schema's own tables
_NO_CONTEXT = ServiceSpec(name="store", event_types=())

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
    port: Annotated[
        int | None,
        typer.Option(help="Serve /healthz, /readyz and /metrics here (CHRONIK_HTTP_PORT)."),
    ] = None,
) -> None:
    """Relay the outbox to the broker until SIGTERM or Ctrl-C (for its own Deployment).

    Configured by the environment alone if need be (CHRONIK_BROKER_URL,
    CHRONIK_EVENT_STORE_URL). With CHRONIK_HTTP_PORT (or --port) set it serves the
    probes and metrics there, as ``chronik serve`` does; without, none (so that several
    relays on one machine need no port each).
    """
    url = store_url_from(store_url, data_dir)
    loaded = _loaded(broker_url=broker_url, event_store_url=url, http_port=port, run="relay")
    settings = loaded.settings
    if settings.broker_url.lower().startswith("memory:"):
        errors.print(
            "[red]configuration:[/] CHRONIK_BROKER_URL: the relay needs nats:// or amqp://; "
            "memory:// reaches no other process"
        )
        raise typer.Exit(2)
    if "http_port" in loaded.sources:
        _relay_with_probes(settings, url)
        return

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
            async with opened(url, create=True, migrate=settings.auto_migrate) as database:
                storage = database.messages()
                await storage.setup()  # without auto-migrate: a check, no DDL
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


def _loaded(**flags: Any) -> LoadedSettings:
    """The settings and where each came from; one line and exit 2 if wrong."""
    try:
        return load_settings(flags)
    except ChronikError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _relay_with_probes(settings: Settings, url: str) -> None:
    """The relay as a runtime of the relay role alone, served as ``chronik serve`` is."""
    configured(lambda: require("http", "chronik relay --port"))
    from chronik.http.serve import serve as serve_http
    from chronik.runtime.observability import configure_logging
    from chronik.runtime.service import Runtime

    configure_logging(settings.log_level, settings.log_format, service=settings.service)
    specs = [_NO_CONTEXT]
    runtime = Runtime(settings, specs, relay_all=True)
    errors.print(
        f"relaying the outbox of {escape(redact(url))} to {escape(redact(settings.broker_url))}"
        f"; probes on port {settings.http_port}"
    )
    run(lambda: serve_http(settings, specs, prepared=runtime))


def migrate(
    app_ref: AppRef = None,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    status: Annotated[
        bool,
        typer.Option(
            "--status", help="Show what is applied and pending; exit 1 while anything is pending."
        ),
    ] = False,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL that would run, and run nothing.")
    ] = False,
) -> None:
    """Create or migrate the store's tables: events, read models, outbox and inbox, and
    the projections of CHRONIK_APP (or --app) when set."""
    if status and sql:
        raise typer.BadParameter("give --status or --sql, not both")
    url = store_url_from(store_url, data_dir)
    settings = settings_from(app=app_ref)
    specs = app_specs(settings) if settings.app else []
    from chronik.runtime.migrations import plan
    from chronik.runtime.service import Runtime

    async def report() -> int:
        async with opened(url, create=True, migrate=False) as database:
            runtime = Runtime(settings, specs or [_NO_CONTEXT])
            runtime.wire(database)  # the parts, to name their tables; no I/O
            steps = await plan(database, runtime.store, specs)
        pending = [s for s in steps if not s.applied]
        if sql:
            # Plain text, never wrapped: it is for psql or a reviewer's diff.
            for step in pending:
                typer.echo(f"-- {step.part}: {step.name}\n{step.sql.rstrip()}")
            if not pending:
                typer.echo(f"-- {redact(url)}: nothing to migrate")
            return 0
        width = max((len(s.name) for s in steps), default=0)
        for step in steps:
            typer.echo(f"{step.part:<12} {step.name:<{width}}  {step.state}")
        verdict = f"{len(pending)} pending" if pending else "up to date"
        typer.echo(f"{redact(url)}: {verdict}")
        return 1 if pending else 0

    if status or sql:
        code = run(report)
        raise typer.Exit(code)

    async def work() -> None:
        with Progress(TextColumn("{task.description}"), BarColumn(), console=console) as progress:
            task = progress.add_task("migrating", total=4)
            async with opened(url, create=True) as database:
                progress.advance(task)
                await database.projections().setup()
                progress.advance(task)
                await database.messages().setup()
                progress.advance(task)
                rebuilds: list[str] = []
                if specs:
                    runtime = Runtime(settings, specs)
                    await runtime.prepare(database)
                    rebuilds = await runtime.engine.begin_rebuilds()
                progress.advance(task)
        what = "events, read models, outbox and inbox"
        if specs:
            what += f", and the projections of {', '.join(s.name for s in specs)}"
        console.print(f"Migrated {escape(redact(url))}: {what}.")
        for name in rebuilds:
            console.print(f"Projection {name}: new tables made; its runner rebuilds them.")

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
