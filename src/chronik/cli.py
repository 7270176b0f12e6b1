"""The ``chronik`` command line.

Every command that reads a store takes ``--store-url URL`` or ``--data-dir DIR`` (the
embedded SQLite store in that directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from chronik import __version__
from chronik._demos import find_demo
from chronik._extras import require
from chronik.adapters import Database, open_database
from chronik.adapters.url import redact
from chronik.errors import ChronikError, ConfigurationError, StoreNotFoundError
from chronik.eventstore import BaseEventStore, EventTypes
from chronik.projections.health import describe, shown_state
from chronik.projections.port import ProjectionBackend, ProjectionRow
from chronik.runtime.settings import Settings, load_settings

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
outbox_app = typer.Typer(help="The transactional outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
dead_app = typer.Typer(help="Messages consumers gave up on.", no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters")

console = Console()
# Errors are one line each, however narrow the terminal (or absent, in a pod's logs).
errors = Console(stderr=True, soft_wrap=True)

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


def _settings(**flags: Any) -> Settings:
    """The settings (flags > env > secrets > file > defaults); one line and exit 2 if wrong."""
    try:
        return load_settings(flags).settings
    except ChronikError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _store_url(store_url: str | None, data_dir: Path | None) -> str:
    """The store a command reads: --store-url, --data-dir, or the settings."""
    if store_url and data_dir:
        raise typer.BadParameter("give --store-url or --data-dir, not both")
    if store_url:
        return store_url
    if data_dir:
        return embedded_url(data_dir)
    return _settings().store_url


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; a chronik error is one line on stderr and exit code 1.

    Exit code 2 for a configuration problem (a URL that cannot work, credentials a
    server refused, a store that is not there: a mistyped --data-dir), as for a bad
    setting: trying again will not help.
    """
    try:
        return asyncio.run(work())
    except StoreNotFoundError as exc:
        errors.print(
            f"[red]configuration:[/] {escape(str(exc))} (commands that read create no store; "
            "`chronik migrate` does)"
        )
        raise typer.Exit(2) from None
    except ConfigurationError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except (ChronikError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        errors.print(f"[red]error:[/] {escape(str(message))}")
        raise typer.Exit(1) from None


@contextlib.asynccontextmanager
async def _opened(url: str, *, create: bool = False) -> AsyncIterator[Database]:
    """The database at ``url``, closed when the block ends; it must exist unless ``create``."""
    database = await open_database(url, create=create)
    try:
        yield database
    finally:
        await database.close()


def _configured(work: Callable[[], T]) -> T:
    """``work()``; a ConfigurationError (a missing extra, demo or setting) is one line, exit 2."""
    try:
        return work()
    except ConfigurationError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _print_version(value: bool) -> None:
    if value:
        console.print(f"chronik {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Event-sourced, CQRS services built the domain-driven way."""
    _configure_logging()


class _PoolRetries(logging.Filter):
    """Drops psycopg_pool's warnings about failed connection attempts.

    Each is several lines (the driver's message); a command that cannot connect says so
    itself, once, as chronik's one-line error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("psycopg.pool") and record.levelno < logging.ERROR)


class _OneLine(logging.Formatter):
    """``level: logger: message`` on one line, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f" ({type(error).__name__}: {error})"
        return " ".join(text.split())


def _configure_logging() -> None:
    """Warnings on stderr, one line each, for the commands that run and exit.

    Without a handler, Python's last-resort one prints library warnings as they come.
    ``serve`` and ``demo`` replace this with the runtime's structured logs; a handler
    someone else installed (a test's, an embedding program's) is left alone.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine())
    handler.addFilter(_PoolRetries())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


@app.command()
def tour(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the embedded SQLite file is kept.")
    ] = Path(".chronik"),
) -> None:
    """A short scripted tour of the event store on an embedded SQLite file."""
    found = _configured(lambda: find_demo("chronik tour"))
    asyncio.run(found.run_tour(data_dir, console))


# -- projections ---------------------------------------------------------------------


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f} s ago"


@projections_app.command("status")
def projections_status(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Every projection and process runner in the store: state, checkpoint, lag, parked.

    The state is computed as /readyz computes it; a runner whose heartbeat is older than
    CHRONIK_STALE_AFTER seconds shows as "stale" (no process runs it, or it is stuck).
    """
    url = _store_url(store_url, data_dir)
    stale_after = _settings().stale_after

    async def work() -> None:
        async with _opened(url) as database:
            store = database.event_store(EventTypes([]))
            backend = database.projections()
            await backend.setup()
            head = await store.head_position()
            table = Table("projection", "state", "gen", "checkpoint", "lag", "lag (s)", "parked")
            table.add_column("rebuild")
            table.add_column("heartbeat")
            rows = await backend.load_all()
            failing = []
            for row in rows:
                oldest = (
                    await store.recorded_at_after(row.checkpoint) if row.state != "inline" else None
                )
                status = describe(
                    row,
                    head=head,
                    parked=len(await backend.parked(row.name)),
                    lag_seconds=(datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0,
                    stale_after=stale_after,
                )
                rebuild = "-"
                if status.rebuild is not None:
                    rebuild = f"gen {row.rebuild_generation}: {status.rebuild.done}/{head}"
                if status.state == "error" and status.error:
                    failing.append(f"{row.name}: {status.error}")
                table.add_row(
                    row.name,
                    status.state,
                    str(status.generation),
                    str(status.checkpoint),
                    str(status.lag_events),
                    f"{status.lag_seconds:.1f}",
                    str(status.parked),
                    rebuild,
                    _age(row.heartbeat_at),
                )
            if not rows:
                console.print(f"No projection has run in this store yet (head at {head}).")
            else:
                console.print(table)
                for line in failing:
                    console.print(f"[red]error[/] {escape(line)}", soft_wrap=True)

    _run(work)


@contextlib.asynccontextmanager
async def _requested(
    url: str, name: str, request: str
) -> AsyncIterator[tuple[BaseEventStore, ProjectionBackend]]:
    """The store and its projection backend, once ``request`` is stored for ``name``."""
    async with _opened(url) as database:
        backend = database.projections()
        await backend.setup()
        await backend.request(name, request)
        yield database.event_store(EventTypes([])), backend


def _stale(row: ProjectionRow, stale_after: float) -> bool:
    now = datetime.now(UTC)
    return shown_state(row.state, row.heartbeat_at, now=now, stale_after=stale_after) == "stale"


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
    stale_after = _settings().stale_after

    async def work() -> None:
        async with _requested(url, name, "rebuild") as (store, back):
            before = await back.load(name)
            assert before is not None
            console.print(
                f"Rebuild of {name!r} requested (serving generation {before.generation})."
            )
            if _stale(before, stale_after):
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

    _run(work)


def _parked_command(name: str, url: str, request: str, verb: str, timeout: float) -> None:
    async def work() -> None:
        async with _requested(url, name, request) as (_, back):
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
        async with _opened(url) as database:
            backend = database.projections()
            await backend.setup()
            parked = await backend.parked(name)
            if not parked:
                console.print(f"No parked events for {name!r}.")
            for p in parked:
                console.print(
                    f"position {p.position}  {escape(p.stream_id)} v{p.version}  {p.type}  "
                    f"attempts {p.attempts}  {p.parked_at:%Y-%m-%d %H:%M:%S}\n  {escape(p.error)}"
                )

    _run(work)


# -- messaging -----------------------------------------------------------------------

BrokerUrl = Annotated[
    str | None,
    typer.Option(
        "--broker-url", help="CHRONIK_BROKER_URL: nats://HOST:4222 or amqp://USER:PW@HOST/"
    ),
]


@app.command()
def relay(
    broker_url: BrokerUrl = None,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="Messages per pipelined batch.")] = 256,
) -> None:
    """Relay the outbox to the broker until SIGTERM or Ctrl-C (for its own Deployment)."""
    settings = _settings(broker_url=broker_url)
    if settings.broker_url.lower().startswith("memory:"):
        errors.print(
            "[red]configuration:[/] CHRONIK_BROKER_URL: the relay needs nats:// or amqp://; "
            "memory:// reaches no other process"
        )
        raise typer.Exit(2)
    url = _store_url(store_url, data_dir)

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
            async with _opened(url, create=True) as database:
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

    _run(work)


@outbox_app.command("status")
def outbox_status(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Messages waiting in the outbox, the oldest one's age, messages published."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        async with _opened(url) as database:
            storage = database.messages()
            await storage.setup()
            status = await storage.outbox_status()
            console.print(f"pending    {status.pending}")
            console.print(f"oldest     {_age(status.oldest_pending)}")
            console.print(f"published  {status.published} (kept for an hour)")

    _run(work)


@dead_app.command("list")
def dead_letters_list(
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
) -> None:
    """Dead letters with their errors."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        async with _opened(url) as database:
            storage = database.messages()
            await storage.setup()
            letters = await storage.dead_letters(consumer)
            if not letters:
                console.print("No dead letters.")
            for d in letters:
                console.print(
                    f"{escape(d.consumer)}  {d.message_id}  {d.type}  attempts {d.attempts}  "
                    f"{d.dead_at:%Y-%m-%d %H:%M:%S}\n  {escape(d.error)}"
                )

    _run(work)


@dead_app.command("redeliver")
def dead_letters_redeliver(
    consumer: str,
    message_id: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Wait this long for the consumer.")] = 30,
) -> None:
    """Ask the running consumer to handle a dead letter again (after fixing its handler)."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        async with _opened(url) as database:
            storage = database.messages()
            await storage.setup()
            if not await storage.request_redelivery(consumer, message_id):
                raise ChronikError(f"consumer {consumer!r} has no dead letter {message_id}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if message_id not in await storage.requested_redeliveries(consumer):
                    break
                await asyncio.sleep(0.2)
            else:
                console.print(
                    f"[yellow]Requested; {consumer!r} did not take it within {timeout:g} s.[/]"
                )
                return
            again = [d for d in await storage.dead_letters(consumer) if d.message_id == message_id]
            if again:
                console.print(f"Redelivered; it failed again: {escape(again[0].error)}")
                raise typer.Exit(1)
            console.print(f"Redelivered: {consumer!r} handled {message_id}.")

    _run(work)


@app.command()
def asyncapi(
    language: Annotated[
        list[str],
        typer.Option(help="A PublishedLanguage to describe, as module:attribute (repeatable)."),
    ],
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    server: Annotated[
        list[str] | None, typer.Option(help="A server as name=url (repeatable).")
    ] = None,
) -> None:
    """Write the AsyncAPI 3 document of the public events, as JSON."""
    import importlib
    import json

    from chronik.messaging.asyncapi import asyncapi_document, languages
    from chronik.messaging.contracts import PublishedLanguage

    found = []
    for spec in language:
        module_name, _, attribute = spec.partition(":")
        try:
            value = getattr(importlib.import_module(module_name), attribute or "LANGUAGE")
        except (ImportError, AttributeError) as exc:
            raise typer.BadParameter(f"{spec}: {exc}") from None
        if not isinstance(value, PublishedLanguage):
            raise typer.BadParameter(f"{spec} is not a PublishedLanguage")
        found.append(value)
    servers = dict(item.split("=", 1) for item in server or [])
    document = asyncapi_document(languages(*found), servers=servers)
    text = json.dumps(document, indent=2, sort_keys=False)
    if output is None:
        console.print_json(text)
    else:
        output.write_text(text + "\n")
        errors.print(f"wrote {output} ({len(document['channels'])} channels)")


# -- processes -------------------------------------------------------------------------

processes_app = typer.Typer(help="Sagas and process managers.", no_args_is_help=True)
app.add_typer(processes_app, name="processes")


@processes_app.command("list")
def processes_list(
    process: Annotated[str | None, typer.Option(help="Only instances of this process.")] = None,
    status: Annotated[str | None, typer.Option(help="Only instances in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Running and finished instances with their status, last step and pending timeouts."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        async with _opened(url) as database:
            backend = database.projections()
            await backend.setup()
            if await backend.load("process_index") is None:
                console.print("No process has run in this store yet.")
                return
            where = {k: v for k, v in (("process", process), ("status", status)) if v is not None}
            docs = await backend.find("process_index", "instances", where, None, False, limit, 0)
            table = Table("process", "instance", "status", "steps", "last step", "timeouts")
            for d in docs:
                timeouts = ", ".join(
                    f"{t['name']} @ {t['due'][:19]}" for t in d["timeouts"].values()
                )
                table.add_row(
                    d["process"],
                    escape(d["instance"]),
                    d["status"] + (" (finished)" if d["finished"] else ""),
                    str(d["steps"]),
                    f"{d['last_trigger']} {str(d['last_step'] or '')[:19]}",
                    timeouts or "-",
                )
            console.print(table)

    _run(work)


@processes_app.command("show")
def processes_show(
    reference: Annotated[str, typer.Argument(help="PROCESS/INSTANCE, as `processes list` shows")],
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """One instance: its state, data, pending timeouts and every step it took."""
    url = _store_url(store_url, data_dir)
    process, _, instance = reference.partition("/")
    if not instance:
        raise typer.BadParameter("give PROCESS/INSTANCE, like trip_booking/t-42")

    async def work() -> None:
        import msgspec

        async with _opened(url) as database:
            store = database.event_store(EventTypes([]))
            backend = database.projections()
            await backend.setup()
            doc = await backend.get("process_index", "instances", reference)
            if doc is None:
                raise ChronikError(f"no instance {reference!r}")
            console.print_json(msgspec.json.encode(doc).decode())
            for step in await store.read_stream_raw(f"process-{process}-{instance}"):
                data = step["data"]
                commands = ", ".join(c["type"] for c in data.get("commands", [])) or "-"
                console.print(
                    f"v{step['version']}  {step['recorded_at'][:19]}  {data['trigger_type']} -> "
                    f"{data['status']}  commands: {commands}",
                    markup=False,
                )

    _run(work)


# -- serving, configuration, streams -----------------------------------------------------

AppRef = Annotated[
    str | None, typer.Option("--app", help="The contexts to run, as module:attribute.")
]


def _specs(settings: Settings) -> list[Any]:
    from chronik.runtime.specs import load_specs

    if not settings.app:
        errors.print("[red]configuration:[/] CHRONIK_APP (or --app module:attribute) is not set")
        raise typer.Exit(2)
    try:
        return load_specs(settings.app)
    except ChronikError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    app_ref: AppRef = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (CHRONIK_HTTP_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP address (CHRONIK_HTTP_HOST).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="CHRONIK_DATA_DIR")] = None,
    store_url: Annotated[str | None, typer.Option(help="CHRONIK_EVENT_STORE_URL")] = None,
    broker_url: Annotated[str | None, typer.Option(help="CHRONIK_BROKER_URL")] = None,
    run: Annotated[
        str | None, typer.Option(help="CHRONIK_RUN: all, or http,projections,...")
    ] = None,
) -> None:
    """Run a service: HTTP API, projections, relay, consumers and processes."""
    _configured(lambda: require("http", "chronik serve"))
    settings = _settings(
        app=app_ref,
        http_port=port,
        http_host=host,
        data_dir=data_dir,
        event_store_url=store_url,
        broker_url=broker_url,
        run=run,
    )
    specs = _specs(settings)
    from chronik.http.serve import serve as serve_http
    from chronik.runtime.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    _run(lambda: serve_http(settings, specs))


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where the embedded store lives.")] = Path(
        ".chronik"
    ),
    host: Annotated[str, typer.Option(help="HTTP address.")] = "127.0.0.1",
) -> None:
    """Run the reference system embedded (sales, campaigns, travel), with example data."""
    found = _configured(lambda: find_demo("chronik demo"))
    settings = _settings(
        app=found.app,
        http_port=port,
        http_host=host,
        data_dir=data_dir,
        run="all",
        log_format="console",
        log_level="warning",
        shutdown_drain_delay=0,
    )
    specs = _specs(settings)
    from chronik.http.serve import serve as serve_http
    from chronik.runtime.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    async def work() -> None:
        server = asyncio.create_task(serve_http(settings, specs))
        try:
            await found.seed_and_explain(f"http://{host}:{port}", settings.data_dir, console)
        except Exception:
            server.cancel()
            raise
        await server

    _run(work)


config_app = typer.Typer(help="The effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Every setting, its value (secrets masked) and where it came from."""
    try:
        loaded = load_settings({"event_store_url": store_url, "data_dir": data_dir})
    except ChronikError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    table = Table("variable", "value", "from")
    for variable, value, source in loaded.rows():
        table.add_row(variable, escape(value), source)
    console.print(table)


streams_app = typer.Typer(help="Streams of the event store.", no_args_is_help=True)
app.add_typer(streams_app, name="streams")


@streams_app.command("list")
def streams_list(
    prefix: Annotated[str, typer.Option(help="Only streams whose id starts with this.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Stream ids and their versions."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        async with _opened(url) as database:
            rows = await database.event_store(EventTypes([])).list_streams(prefix, limit)
            for stream_id, version in rows:
                console.print(f"{escape(stream_id)}  v{version}", markup=False)
            if not rows:
                console.print("No streams.")

    _run(work)


@streams_app.command("show")
def streams_show(
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
    url = _store_url(store_url, data_dir)
    settings = _settings(app=app_ref)
    specs = _specs(settings) if settings.app else []

    async def work() -> None:
        import msgspec

        types = EventTypes([t for spec in specs for t in spec.event_types])
        async with _opened(url) as database:
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
                        from chronik.eventstore import Repository

                        repo = Repository(store, cls, prefix=stream_prefix)
                        state = await repo.load(stream_id.removeprefix(stream_prefix), version=at)
                        shown = {k: v for k, v in vars(state).items() if not k.startswith("_")}
                        console.print(f"state of {cls.__name__} at version {state.version}:")
                        console.print_json(msgspec.json.encode(shown).decode())
                        return

    _run(work)


@app.command()
def migrate(app_ref: AppRef = None, store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Create or migrate the store's tables (events, read models, outbox, inbox)."""
    url = _store_url(store_url, data_dir)

    async def work() -> None:
        with Progress(TextColumn("{task.description}"), BarColumn(), console=console) as progress:
            task = progress.add_task("migrating", total=3)
            async with _opened(url, create=True) as database:
                progress.advance(task)
                await database.projections().setup()
                progress.advance(task)
                await database.messages().setup()
                progress.advance(task)
        console.print(f"Migrated {escape(redact(url))}: events, read models, outbox and inbox.")

    _run(work)


personal_app = typer.Typer(help="Personal data: forgotten data subjects.", no_args_is_help=True)
app.add_typer(personal_app, name="personal-data")


@personal_app.command("check")
def personal_data_check(
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
    url = _store_url(store_url, data_dir)
    specs = _specs(_settings(app=app_ref))
    types = EventTypes([t for spec in specs for t in spec.event_types])
    if not types.forgetting_names:
        errors.print("[red]configuration:[/] no event type of the app forgets its subject")
        raise typer.Exit(2)

    async def work() -> list[str]:
        async with _opened(url) as database:
            return await database.event_store(types).check_forgetting(repair=repair)

    found = _run(work)
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


def main() -> None:
    app()
