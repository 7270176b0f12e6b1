"""``chronik config``: the effective settings and where each came from."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from chronik.cli.run import DataDir, StoreUrl, console, errors
from chronik.errors import ChronikError
from chronik.runtime.settings import load_settings

__all__ = ["app"]

app = typer.Typer(help="The effective settings.", no_args_is_help=True)


@app.command("show")
def show(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
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
