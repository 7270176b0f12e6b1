"""``chronik clock``: show or move a running demo's virtual clock, over its admin route.

A service runs the virtual clock with ``CHRONIK_CLOCK=virtual`` and ``CHRONIK_DEMO=1``
(``chronik demo`` sets both). The commands call ``GET /admin/clock`` and
``POST /admin/clock/advance`` of the service at ``--url`` (default: the address the
settings give, ``http://CHRONIK_HTTP_HOST:CHRONIK_HTTP_PORT``), with ``CHRONIK_API_TOKEN``
(or ``--token``) when the service asks for one.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from chronik._extras import require
from chronik.cli.run import configured, console, errors, settings_from
from chronik.processes.clock import parse_duration

__all__ = ["app"]

app = typer.Typer(help="A demo's virtual clock (CHRONIK_CLOCK=virtual).", no_args_is_help=True)

Url = Annotated[
    str | None,
    typer.Option(help="The service, like http://127.0.0.1:8000 (default: from the settings)."),
]
Token = Annotated[
    str | None, typer.Option(help="The API token (default: CHRONIK_API_TOKEN).", show_default=False)
]


@app.command("show")
def show(url: Url = None, token: Token = None) -> None:
    """The processes' time in the running service, and how far ahead it is."""
    _print(_call("GET", "/admin/clock", url, token, None))


@app.command("advance")
def advance(
    by: Annotated[str, typer.Argument(help="How far: 48h, 2m, 90s, 1d12h.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Move the clock forward: timeouts due by then fire within about a second."""
    try:
        parse_duration(by)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="BY") from None
    _print(_call("POST", "/admin/clock/advance", url, token, {"by": by}))


def _print(answer: dict[str, Any]) -> None:
    console.print(
        f"the processes' clock reads {answer['now']} "
        f"({float(answer['ahead_seconds']) / 3600:.2f} h ahead of the system's)",
        markup=False,
    )


def _call(
    method: str, path: str, url: str | None, token: str | None, body: dict[str, Any] | None
) -> dict[str, Any]:
    configured(lambda: require("http", "chronik clock"))
    import httpx

    settings = settings_from()
    base = url or f"http://{settings.http_host}:{settings.http_port}{settings.http_root_path}"
    if token is None and settings.api_token is not None:
        token = settings.api_token.get_secret_value()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    target = base.rstrip("/") + path
    try:
        response = httpx.request(method, target, json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        errors.print(f"[red]error:[/] {escape(target)}: {escape(str(exc) or type(exc).__name__)}")
        raise typer.Exit(1) from None
    if response.status_code == 404:
        errors.print(
            f"[red]error:[/] {escape(target)}: 404: the service runs no virtual clock "
            "(CHRONIK_CLOCK=virtual with CHRONIK_DEMO=1; `chronik demo` sets both)"
        )
        raise typer.Exit(1)
    if response.is_error:
        detail = response.text
        if response.headers.get("content-type", "").endswith("json"):
            found = response.json()
            detail = str(found.get("detail", found)) if isinstance(found, dict) else detail
        errors.print(f"[red]error:[/] {escape(target)}: {response.status_code}: {escape(detail)}")
        raise typer.Exit(1)
    answer: dict[str, Any] = response.json()
    return answer
