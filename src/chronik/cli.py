"""The ``chronik`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="chronik",
    help="Event-sourced, CQRS services built the domain-driven way.",
    no_args_is_help=True,
    add_completion=False,
)


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


def main() -> None:
    app()
