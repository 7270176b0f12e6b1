"""``chronik demo`` and ``chronik tour``: example data through the public API, what to try next.

chronik finds this module through the ``chronik.demos`` entry point group (this
distribution's pyproject.toml): ``APP`` is what the demo serves, ``seed_and_explain``
runs once it is ready, ``run_tour`` is the event store's tour.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from reference.tour import run_tour

__all__ = ["APP", "run_tour", "seed_and_explain"]

#: the services ``chronik demo`` runs: all three contexts in one process
APP = "reference:specs"


async def _ready(client: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the service did not become ready within 30 s")


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None) -> Any:
    response = await client.post(path, json=body or {})
    response.raise_for_status()
    return response.json()


async def seed(client: httpx.AsyncClient) -> None:
    """A little of everything: leads along the funnel, campaigns, trips, happy and not."""
    soon = datetime.now(UTC) + timedelta(days=3)
    ada = (
        await _post(client, "/sales/leads", {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"})
    )["id"]
    grace = (
        await _post(client, "/sales/leads", {"name": "Grace Hopper", "phone": "+1 202 555 0143"})
    )["id"]
    alan = (
        await _post(client, "/sales/leads", {"name": "Alan Turing", "phone": "+44 161 496 0000"})
    )["id"]
    await _post(
        client, f"/sales/leads/{ada}/contact", {"note": "interested in the analytical engine"}
    )
    await _post(client, f"/sales/leads/{ada}/orders", {"amount_cents": 250_000, "currency": "EUR"})
    await _post(client, f"/sales/leads/{grace}/contact", {"note": "wants a demo on site"})
    await _post(
        client,
        f"/sales/leads/{grace}/follow-up",
        {"on": soon.isoformat(), "needs_visit": True, "city": "Lyon"},
    )
    await _post(client, f"/sales/leads/{alan}/close", {"reason": "not now"})
    await _post(client, "/campaigns/budget/top-up", {"amount_cents": 50_000})
    happy = (
        await _post(client, "/campaigns/campaigns", {"name": "Spring sale", "cost_cents": 20_000})
    )["id"]
    await _post(client, f"/campaigns/campaigns/{happy}/activate")
    declined = (
        await _post(
            client,
            "/campaigns/campaigns",
            {"name": "Too bold", "cost_cents": 10_000, "partner_behaviour": "reject"},
        )
    )["id"]
    await _post(client, f"/campaigns/campaigns/{declined}/activate")
    depart = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    await _post(
        client,
        "/travel/trips",
        {
            "traveller": "Alan",
            "destination": "Nowhere",
            "depart_on": depart,
            "simulate": "no_hotel",
        },
    )


def _chronik() -> str:
    """How the shell that started this demo calls the same ``chronik`` command."""
    started = Path(sys.argv[0]).resolve()
    on_path = shutil.which("chronik")
    if on_path is not None and Path(on_path).resolve() == started:
        return "chronik"
    try:
        return str(started.relative_to(Path.cwd()))  # .venv/bin/chronik in a clone
    except ValueError:
        return str(started)


async def seed_and_explain(base: str, data_dir: Path, console: Console) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await _ready(client)
        leads = (await client.get("/sales/leads")).json()
        if not leads:
            await seed(client)
            seeded = "seeded example data"
        else:
            seeded = f"kept the data in {data_dir} ({len(leads)} leads)"
        turnable = (await client.get("/admin/clock")).status_code == 200
    clock = (
        "The processes' clock turns (a trip awaiting approval is cancelled after 48 hours):\n"
        f"  {_chronik()} clock advance 48h --url {base}\n\n"
        if turnable
        else ""
    )
    console.print(
        f"""
[bold]chronik demo[/]: sales, campaigns and travel in one process
on {data_dir}/chronik.db ({seeded}).

  API and docs   {base}/docs
  leads          {base}/sales/leads          funnel {base}/sales/funnel
  campaigns      {base}/campaigns/campaigns  budget {base}/campaigns/budget
  trips          {base}/travel/trips
  probes         {base}/healthz  {base}/readyz  {base}/metrics

Try:
  curl -s -X POST {base}/sales/leads -H 'content-type: application/json' \\
       -d '{{"name": "Katherine Johnson", "phone": "+1 757 555 0100"}}'
  curl -s {base}/sales/leads?q=kath
  curl -s -X POST {base}/travel/trips -H 'content-type: application/json' \\
       -d '{{"traveller": "Dorothy", "destination": "Paris", "depart_on": "2030-05-01"}}'

{clock}A walk through it all: docs/tour.md. Ctrl-C stops; starting again keeps the data.
""",
        highlight=False,
        # Lines as written, however narrow the terminal, or none (a pipe, a log file):
        # a curl line cut in two cannot be pasted.
        soft_wrap=True,
    )
