"""What every command shares: where it prints, which store it reads, how it runs and fails.

A command's work is a coroutine run by ``run``: a chronik error is one line on stderr,
exit code 2 for configuration (trying again will not help), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from chronik.adapters import Database, open_database
from chronik.errors import ChronikError, ConfigurationError, StoreNotFoundError
from chronik.runtime.service import ServiceSpec
from chronik.runtime.settings import Settings, load_settings

__all__ = [
    "EMBEDDED_FILE",
    "AppRef",
    "BrokerUrl",
    "DataDir",
    "StoreUrl",
    "age",
    "app_specs",
    "console",
    "embedded_url",
    "errors",
    "log_warnings_on_one_line",
    "opened",
    "run",
    "settings_from",
    "store_url_from",
    "within",
]

T = TypeVar("T")

#: what commands print
console = Console()
#: where errors go: one line each, however narrow the terminal (or absent, in a pod's logs)
errors = Console(stderr=True, soft_wrap=True)

StoreUrl = Annotated[
    str | None, typer.Option("--store-url", help="The event store URL (sqlite:///, postgresql://).")
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Use the embedded SQLite store in this directory.")
]
AppRef = Annotated[
    str | None, typer.Option("--app", help="The contexts to run, as module:attribute.")
]
BrokerUrl = Annotated[
    str | None,
    typer.Option(
        "--broker-url", help="CHRONIK_BROKER_URL: nats://HOST:4222 or amqp://USER:PW@HOST/"
    ),
]

#: the file of the embedded store in its data directory
EMBEDDED_FILE = "chronik.db"


def embedded_url(data_dir: Path) -> str:
    """The URL of the embedded store kept in ``data_dir``."""
    return f"sqlite:///{data_dir.resolve()}/{EMBEDDED_FILE}"


def settings_from(**flags: Any) -> Settings:
    """The settings (flags > env > secrets > file > defaults); one line and exit 2 if wrong."""
    try:
        return load_settings(flags).settings
    except ChronikError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def store_url_from(store_url: str | None, data_dir: Path | None) -> str:
    """The store a command reads: --store-url, --data-dir, or the settings."""
    if store_url and data_dir:
        raise typer.BadParameter("give --store-url or --data-dir, not both")
    if store_url:
        return store_url
    if data_dir:
        return embedded_url(data_dir)
    return settings_from().store_url


def app_specs(settings: Settings) -> list[ServiceSpec]:
    """The contexts CHRONIK_APP (or --app) names; one line and exit 2 if it cannot."""
    from chronik.runtime.specs import load_specs

    if not settings.app:
        errors.print("[red]configuration:[/] CHRONIK_APP (or --app module:attribute) is not set")
        raise typer.Exit(2)
    try:
        return load_specs(settings.app)
    except ChronikError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def configured(work: Callable[[], T]) -> T:
    """``work()``; a ConfigurationError (a missing extra, demo or setting) is one line, exit 2."""
    try:
        return work()
    except ConfigurationError as exc:
        errors.print(f"[red]configuration:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
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
async def opened(
    url: str, *, create: bool = False, migrate: bool = True
) -> AsyncIterator[Database]:
    """The database at ``url``, closed when the block ends; it must exist unless ``create``.

    ``migrate=False``: no DDL at all (nothing created, not even a missing file).
    """
    database = await open_database(url, create=create, migrate=migrate)
    try:
        yield database
    finally:
        await database.close()


async def within(seconds: float, work: Awaitable[T]) -> T | None:
    """What ``work`` gives, or None if ``seconds`` pass first (a TimeoutError of its own
    is not taken for that)."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await work
    except TimeoutError:
        if deadline.expired():
            return None
        raise


def age(when: datetime | None) -> str:
    """How long ago ``when`` was, for people: ``12 s ago``, or ``-``."""
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f} s ago"


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


def log_warnings_on_one_line() -> None:
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
