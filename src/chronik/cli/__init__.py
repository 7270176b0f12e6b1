"""The ``chronik`` command line: the typer app, one module per command group.

Each group is a thin layer over an admin API (``chronik.projections.admin``,
``chronik.processes.admin``, ``chronik.messaging.admin``) that renders what it returns;
what every command shares (the store options, running a command's coroutine, its
one-line errors) is ``chronik.cli.run``. Every command that reads a store takes
``--store-url URL`` or ``--data-dir DIR`` (the embedded SQLite store in that directory).
"""

from __future__ import annotations

from typing import Annotated

import typer

from chronik import __version__
from chronik.cli import (
    asyncapi,
    clock,
    config,
    outbox,
    personal_data,
    processes,
    projections,
    serve,
    streams,
)
from chronik.cli.run import console, embedded_url, log_warnings_on_one_line

__all__ = ["app", "embedded_url", "main"]

app = typer.Typer(
    name="chronik",
    help="Event-sourced, CQRS services built the domain-driven way.",
    no_args_is_help=True,
    add_completion=False,
)


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
    log_warnings_on_one_line()


app.add_typer(projections.app, name="projections")
app.add_typer(projections.workers_app, name="workers")
app.add_typer(outbox.outbox_app, name="outbox")
app.add_typer(outbox.dead_letters_app, name="dead-letters")
app.add_typer(processes.app, name="processes")
app.add_typer(streams.app, name="streams")
app.add_typer(config.app, name="config")
app.add_typer(clock.app, name="clock")
app.add_typer(personal_data.app, name="personal-data")
for command in (serve.serve, serve.relay, serve.migrate, serve.demo, serve.tour):
    app.command()(command)
app.command()(asyncapi.asyncapi)


def main() -> None:
    """The ``chronik`` command (the entry point pyproject.toml names)."""
    app()
