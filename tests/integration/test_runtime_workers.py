"""The relay and the consumers in readiness: a stopped or failing one makes /readyz 503.

A relay that dies of an error that is not the store's, or whose broker connection is
gone for good, used to be logged once and never shown: now ``/readyz`` names it and
says why, and lists every worker with its state and whether this replica leads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronik.http.app import create_app
from chronik.messaging import MessageContext, PublishedLanguage, public
from chronik.runtime.service import ConsumerSpec, Runtime, ServiceSpec, Worker
from chronik.runtime.settings import load_settings
from chronik.worker import Worker as SupervisedWorker
from reference.tickets import SPEC
from reference.tour import TicketOpened

NEW_TICKET = {"title": "Printer on fire", "reporter": "Ada"}

Start = Callable[..., AbstractAsyncContextManager[tuple[Runtime, httpx.AsyncClient]]]


@public("tickets.ticket_opened.v1")
@dataclasses.dataclass(frozen=True)
class PublicTicketOpened:
    title: str


LANGUAGE = PublishedLanguage([PublicTicketOpened])


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


CHRONIK = str(Path(sys.executable).with_name("chronik"))


@asynccontextmanager
async def started(
    specs: list[ServiceSpec], store_url: str = "memory://"
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    flags: dict[str, Any] = {"event_store_url": store_url, "broker_url": "memory://"}
    runtime = Runtime(load_settings(flags).settings, specs)
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield runtime, client
    finally:
        await runtime.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


def says(client: httpx.AsyncClient, reason: str) -> Callable[[], Awaitable[bool]]:
    """True once /readyz is 503 with a reason that starts with ``reason``."""

    async def check() -> bool:
        answer = await client.get("/readyz")
        reasons: list[str] = answer.json()["reasons"]
        return answer.status_code == 503 and any(r.startswith(reason) for r in reasons)

    return check


def publishing(consumer: bool = False) -> ServiceSpec:
    """The ticket service publishing its openings, and consuming them itself if asked."""
    heard: list[str] = []

    async def hear(event: PublicTicketOpened, context: MessageContext) -> None:
        heard.append(event.title)

    consumers = [ConsumerSpec("ticket-echo", LANGUAGE, lambda _: {PublicTicketOpened: hear})]
    return dataclasses.replace(
        SPEC,
        language=LANGUAGE,
        translate=lambda recorded: (
            PublicTicketOpened(recorded.event.title)
            if isinstance(recorded.event, TicketOpened)
            else None
        ),
        consumers=consumers if consumer else [],
        extra={"heard": heard},
    )


async def test_readyz_lists_the_relay_and_each_consumer_with_their_state_and_leadership() -> None:
    async with started([publishing(consumer=True)]) as (_, client):
        assert await eventually(lambda: ready(client))
        workers = {w["name"]: w for w in (await client.get("/readyz")).json()["workers"]}
        assert workers["relay"]["kind"] == "relay"
        assert workers["relay"]["state"] in ("idle", "relaying")
        assert workers["ticket-echo"]["kind"] == "consumer"
        assert workers["ticket-echo"]["state"] == "running"
        assert all(w["leading"] and w["reason"] is None for w in workers.values())


async def test_a_relay_whose_task_raises_makes_readyz_503_naming_it_and_why_until_it_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with started([publishing()]) as (runtime, client):
        assert await eventually(lambda: ready(client))
        relay = runtime.relay
        assert relay is not None

        async def on_fire() -> bool:
            raise RuntimeError("the outbox is on fire")

        monkeypatch.setattr(relay, "step", on_fire)
        assert await eventually(
            says(client, "relay relay is backing_off: RuntimeError: the outbox is on fire")
        ), (await client.get("/readyz")).json()
        assert (await client.get("/healthz")).status_code == 200

        monkeypatch.undo()  # mended: the supervisor's next try succeeds
        assert await eventually(lambda: ready(client)), (await client.get("/readyz")).json()
        opened = await client.post("/tickets", json=NEW_TICKET)
        assert opened.status_code < 300, opened.text

        async def relayed() -> bool:
            return (await runtime.messages.outbox_status()).pending == 0

        assert await eventually(relayed)


async def test_a_relay_whose_broker_connection_is_gone_for_good_makes_readyz_503_naming_it() -> (
    None
):
    async with started([publishing()]) as (runtime, client):
        assert await eventually(lambda: ready(client))
        assert runtime.broker is not None
        await runtime.broker.close()  # for good: nothing reconnects a closed broker
        opened = await client.post("/tickets", json=NEW_TICKET)
        assert opened.status_code < 300, opened.text
        assert await eventually(says(client, "relay relay is broker_down: ")), (
            await client.get("/readyz")
        ).json()
        workers = {w["name"]: w for w in (await client.get("/readyz")).json()["workers"]}
        assert "not connected" in workers["relay"]["reason"]
        assert (await runtime.messages.outbox_status()).pending == 1, "kept for a later relay"


async def test_a_consumer_that_stopped_makes_readyz_503_naming_it() -> None:
    async with started([publishing(consumer=True)]) as (runtime, client):
        assert await eventually(lambda: ready(client))
        [consumer] = runtime.consumers
        await consumer.stop()
        assert await eventually(says(client, "consumer ticket-echo is stopped")), (
            await client.get("/readyz")
        ).json()


async def status_shown(store_url: str) -> str:
    """What ``chronik workers status`` prints for the store at ``store_url``."""
    process = await asyncio.create_subprocess_exec(
        CHRONIK,
        "workers",
        "status",
        "--store-url",
        store_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


def row_of(shown: str, name: str) -> list[str]:
    """The cells of the table row that starts with ``name``."""
    for line in shown.splitlines():
        cells = [c.strip() for c in line.strip(" │┃|").split("│")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{shown}")


async def test_the_status_command_lists_the_relay_and_each_consumer_and_one_that_stopped(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/chronik.db"
    async with started([publishing(consumer=True)], url) as (runtime, client):
        assert await eventually(lambda: ready(client))
        shown = await status_shown(url)
        assert row_of(shown, "relay")[1] in ("idle", "relaying"), shown
        assert row_of(shown, "consumer.ticket-echo")[1] == "running", shown

        [consumer] = runtime.consumers
        await consumer.stop()
        shown = await status_shown(url)
        assert row_of(shown, "consumer.ticket-echo")[1] == "stopped", shown
        assert row_of(shown, "relay")[1] in ("idle", "relaying"), shown


class Crashing(Worker):
    """A worker of the user's own making whose run ends with an error after a start."""

    name = "crashing"

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("the worker's disk is full")


class Hooked(SupervisedWorker):
    """A chronik worker whose own stop hook is broken: its supervisor notes it failed."""

    kind = "hooked"

    def __init__(self) -> None:
        super().__init__("hooked", idle_wait=0.01)
        self.heartbeat, self.stale_after = 5.0, 30.0

    async def setup(self) -> None:
        """Nothing to create."""

    async def step(self) -> bool:
        raise OSError("a step that fails")

    async def failed(self, exc: Exception, led: bool) -> None:
        raise RuntimeError("the failure report broke")

    async def readiness(self) -> list[str]:
        return []

    async def statuses(self) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("worker", "reason"),
    [
        (Crashing, "worker crashing stopped: RuntimeError: the worker's disk is full"),
        (Hooked, "hooked hooked is failed: RuntimeError: the failure report broke"),
    ],
)
async def test_a_service_worker_whose_task_ended_with_an_error_makes_readyz_503_naming_it(
    worker: Callable[[], Any], reason: str
) -> None:
    spec = dataclasses.replace(SPEC, workers=lambda _: [worker()])
    async with started([spec]) as (_, client):
        assert await eventually(says(client, reason)), (await client.get("/readyz")).json()
