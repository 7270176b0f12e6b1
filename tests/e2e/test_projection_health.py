"""``chronik projections status`` and ``/readyz`` show each runner's state as one computation.

A runner (a projection's, a process manager's follower or dispatcher) keeps its row's
state and heartbeat current; both the CLI (from the stored rows) and ``/readyz`` (from
the process's own runners) turn them into the state shown with the same function, so
they agree: after ``kill -9`` and a restart, and while a rebuild is stuck. A heartbeat
older than ``CHRONIK_STALE_AFTER`` shows as ``stale``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from runtime_process import chronik, serving

from chronik.cli import embedded_url
from chronik.http.app import create_app
from chronik.projections import Projection, ReadModelTx, handles
from chronik.runtime.service import Runtime
from chronik.runtime.settings import load_settings
from reference.tickets import SPEC
from reference.tour import TicketOpened

pytestmark = pytest.mark.slow

#: what a runner that keeps up shows (an inline read model has no runner)
KEEPING_UP = {"live", "inline"}
STALE_AFTER = "3"


@dataclasses.dataclass
class Target:
    url: str  # the store
    env: dict[str, str]  # how a served process finds it
    where: list[str]  # how the CLI does


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "sqlite":
        data = tmp_path / "data"
        data.mkdir()
        return Target(
            embedded_url(data), {"CHRONIK_DATA_DIR": str(data)}, ["--data-dir", str(data)]
        )
    postgres_url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    url = f"{postgres_url}?schema={schema}"
    return Target(url, {"CHRONIK_EVENT_STORE_URL": url}, ["--store-url", url])


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


async def cli_states(where: list[str]) -> dict[str, str]:
    """Projection -> state, as ``chronik projections status`` prints them."""
    done = await chronik("projections", "status", *where, env={"CHRONIK_STALE_AFTER": STALE_AFTER})
    assert done.code == 0, done.err
    states = {}
    for line in done.out.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")]
        cells = [c for c in cells if c]
        if len(cells) >= 2 and cells[0] != "projection":
            states[cells[0]] = cells[1]
    return states


async def readyz(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    answer = await client.get("/readyz")
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


async def eventually(
    probe: Callable[[], Awaitable[Any]], holds: Callable[[Any], bool], what: str, within: float
) -> Any:
    """The probe's value once ``holds`` is true of it; fail with the last value if never."""
    deadline = time.monotonic() + within
    while True:
        seen = await probe()
        if holds(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}: last seen {seen}")
        await asyncio.sleep(0.2)


async def agreeing(where: list[str], client: httpx.AsyncClient) -> dict[str, Any]:
    """The CLI's states and /readyz's, read one after the other (and again, until equal)."""
    cli = await cli_states(where)
    _, ready = await readyz(client)
    return {"cli": cli, "readyz": ready.get("projections")}


def same_and(states: set[str]) -> Callable[[dict[str, Any]], bool]:
    def check(seen: dict[str, Any]) -> bool:
        cli, ready = seen["cli"], seen["readyz"]
        return bool(cli) and cli == ready and set(cli.values()) <= states

    return check


async def test_after_kill_9_and_a_restart_status_and_readiness_agree_that_all_keep_up(
    target: Target, tmp_path: Path
) -> None:
    env = {"CHRONIK_APP": "reference:specs", "CHRONIK_STALE_AFTER": STALE_AFTER, **target.env}
    async with serving(tmp_path / "first", env) as first:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
            lead = await client.post("/sales/leads", json={"name": "Ada", "phone": "12345"})
            assert lead.status_code == 201, lead.text
            seen = await eventually(
                lambda: agreeing(target.where, client),
                same_and(KEEPING_UP),
                "the same states, all keeping up, before the kill",
                within=60,
            )
        processes = [name for name in seen["cli"] if name.endswith(("_events", "_commands"))]
        assert processes, seen  # the process managers' loops are shown too
        first.process.kill()  # SIGKILL: no row is told the process stopped
        await first.process.wait()

    dead = await eventually(
        lambda: cli_states(target.where),
        lambda states: {s for s in states.values() if s != "inline"} == {"stale"},
        "every runner of the killed process shown as stale",
        within=60,
    )
    assert set(dead) == set(seen["cli"])

    async with (
        serving(tmp_path / "second", env) as second,
        httpx.AsyncClient(base_url=second.url, timeout=10) as client,
    ):
        after = await eventually(
            lambda: agreeing(target.where, client),
            same_and(KEEPING_UP),
            "the same states, all keeping up, after the restart",
            within=60,
        )
        status, body = await readyz(client)
    assert set(after["cli"]) == set(seen["cli"])
    assert (status, body["reasons"]) == (200, [])


# -- a rebuild that cannot go on ---------------------------------------------------------


class Fragile(Projection):
    """A read model whose rebuild writes a document no database can store."""

    name = "fragile"
    tables = ("tickets",)
    broken: ClassVar[bool] = False

    @handles(TicketOpened)
    async def _opened(self, e: TicketOpened, tx: ReadModelTx) -> None:
        assert tx.current is not None
        # Not a handler error (that event would be parked): the page's write fails.
        value: object = object() if Fragile.broken else e.title
        tx.put("tickets", tx.current.stream_id, {"title": value})


@asynccontextmanager
async def running(url: str) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    flags = {"event_store_url": url, "stale_after": 3.0}
    spec = dataclasses.replace(SPEC, projections=[*SPEC.projections, Fragile()])
    runtime = Runtime(load_settings(flags).settings, [spec])
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield runtime, client
    finally:
        Fragile.broken = False
        await runtime.stop()


async def test_a_stuck_rebuild_shows_the_same_state_in_status_and_readiness(
    target: Target,
) -> None:
    async with running(target.url) as (_, client):
        for title in ("Printer on fire", "Coffee machine empty"):
            opened = await client.post("/tickets", json={"title": title, "reporter": "Ada"})
            assert opened.status_code == 201, opened.text
        await eventually(
            lambda: agreeing(target.where, client),
            same_and(KEEPING_UP),
            "the same states, all keeping up",
            within=60,
        )
        Fragile.broken = True
        requested = await chronik("projections", "rebuild", "fragile", "--no-wait", *target.where)
        assert requested.code == 0, requested.err

        seen = await eventually(
            lambda: agreeing(target.where, client),
            lambda s: s["cli"].get("fragile") == "error" and s["cli"] == s["readyz"],
            "the stuck rebuild shown as error by both",
            within=60,
        )
        status, body = await readyz(client)
    assert seen["cli"]["ticket_board"] == "live"
    assert status == 503 and "projection fragile is error" in body["reasons"]
