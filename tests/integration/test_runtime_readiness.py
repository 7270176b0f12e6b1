"""Readiness of a started runtime: 503 with its reasons while it must not get traffic.

Two honest ways of making a healthy runtime unready: a projection held back by the test
(its handler waits on an event), and a PostgreSQL that goes away after the start (the
runtime reaches it through a TCP proxy the test cuts and restores). Liveness stays 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from messaging_harness import NATS_URL, RABBITMQ_URL, nats_problem, rabbitmq_problem

from chronik.http.app import create_app
from chronik.http.problems import PROBLEM
from chronik.messaging import PublishedLanguage, public
from chronik.projections import Projection, ReadModelTx, handles
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import load_settings
from conftest import service_missing
from reference.tickets import SPEC
from reference.tour import TicketOpened

NEW_TICKET = {"title": "Printer on fire", "reporter": "Ada"}

Start = Callable[..., AbstractAsyncContextManager[tuple[Runtime, httpx.AsyncClient]]]


@pytest.fixture(autouse=True)
def _no_chronik_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHRONIK_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def start() -> Start:
    """Start a runtime of these specs with these settings (as flags), and a client for it."""

    @asynccontextmanager
    async def started(
        specs: list[ServiceSpec], **flags: Any
    ) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
        runtime = Runtime(load_settings(flags).settings, specs)
        await runtime.start()
        transport = httpx.ASGITransport(app=create_app(runtime))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                yield runtime, client
        finally:
            await runtime.stop()

    return started


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.05
) -> bool:
    """True as soon as ``check`` is; False if it is not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(every)
    return False


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


# -- a projection that lags -------------------------------------------------------------


class HeldBoard(Projection):
    """Sees each opened ticket only once the test lets it (``gate``)."""

    name = "held_board"
    tables = ("seen",)

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    @handles(TicketOpened)
    async def _opened(self, e: TicketOpened, tx: ReadModelTx) -> None:
        await self.gate.wait()
        assert tx.current is not None
        tx.put("seen", tx.current.stream_id, {"title": e.title})


@pytest.mark.parametrize("store", ["memory", "sqlite"])
@pytest.mark.parametrize(
    ("threshold", "reason_part"),
    [({"ready_max_lag": 0}, "lags 1 events"), ({"ready_max_lag_seconds": 0.2}, "lags 1 events (")],
    ids=["events", "seconds"],
)
async def test_readyz_is_503_while_a_projection_lags_beyond_the_threshold_and_200_after(
    start: Start, tmp_path: Path, store: str, threshold: dict[str, float], reason_part: str
) -> None:
    held = HeldBoard()
    spec = dataclasses.replace(SPEC, projections=[*SPEC.projections, held])
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path}/chronik.db"
    async with start([spec], event_store_url=url, **threshold) as (_, client):
        assert await eventually(lambda: ready(client))
        opened = await client.post("/tickets", json=NEW_TICKET)
        assert opened.status_code == 201
        await asyncio.sleep(0.3)  # past the seconds threshold too

        lagging = await client.get("/readyz")
        assert lagging.status_code == 503
        assert lagging.json()["status"] == "not ready"
        reasons = lagging.json()["reasons"]
        assert isinstance(reasons, list)
        assert len(reasons) == 1
        assert reasons[0].startswith("projection held_board lags 1 events")
        assert reason_part in reasons[0]
        assert (await client.get("/healthz")).status_code == 200
        # The other projection is not held: reads of one's own writes still work.
        ticket = await client.get(
            f"/tickets/{opened.json()['id']}",
            headers={"Chronik-Min-Position": opened.headers["chronik-position"]},
        )
        assert ticket.status_code == 200

        held.gate.set()
        assert await eventually(lambda: ready(client))
        assert (await client.get("/readyz")).json() == {
            "status": "ready",
            "reasons": [],
            "projections": {"held_board": "live", "ticket_board": "live"},
        }
        assert (await client.get("/healthz")).status_code == 200


async def test_a_runner_stuck_past_the_staleness_bound_is_stale_and_not_ready_until_it_beats(
    start: Start,
) -> None:
    # The memory store: on SQLite the held page's write transaction would hold up the
    # other runner's heartbeat too (and rightly show it stale).
    held = HeldBoard()
    spec = dataclasses.replace(SPEC, projections=[*SPEC.projections, held])
    async with start([spec], event_store_url="memory://", stale_after=0.6) as (_, client):
        try:
            assert await eventually(lambda: ready(client))
            opened = await client.post("/tickets", json=NEW_TICKET)
            assert opened.status_code == 201

            async def stale() -> bool:
                body = (await client.get("/readyz")).json()
                return "projection held_board is stale" in body["reasons"]

            assert await eventually(stale)
            body = (await client.get("/readyz")).json()
            assert body["projections"] == {"held_board": "stale", "ticket_board": "live"}
        finally:
            held.gate.set()  # else stopping waits for the held handler for ever
        assert await eventually(lambda: ready(client))


async def test_a_new_runtime_is_not_ready_until_its_projections_caught_up(
    start: Start, tmp_path: Path
) -> None:
    held = HeldBoard()
    held.gate.set()
    url = f"sqlite:///{tmp_path}/chronik.db"
    spec = dataclasses.replace(SPEC, projections=[*SPEC.projections, held])
    async with start([spec], event_store_url=url) as (_, client):
        for _ in range(3):
            assert (await client.post("/tickets", json=NEW_TICKET)).status_code == 201
    replica = HeldBoard()
    spec = dataclasses.replace(SPEC, projections=[replica])
    # A replica whose projection has a fresh read model and a zero lag tolerance.
    async with start([spec], event_store_url=url, ready_max_lag=0) as (_, client):
        waiting = await client.get("/readyz")
        assert waiting.status_code == 503
        assert any("held_board" in reason for reason in waiting.json()["reasons"])
        replica.gate.set()
        assert await eventually(lambda: ready(client))


# -- a database that goes away after the start ----------------------------------------


class TcpProxy:
    """Forwards TCP connections to a server; ``cut`` drops them all, ``restore`` relistens."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def restore(self) -> None:
        """Listen (again, on the same port)."""
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and reset every open connection, as a database that died."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            pair = {writer, up_writer}
            self._writers |= pair
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                self._writers -= pair
        finally:
            self._handlers.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


@pytest.fixture
async def proxied_url(postgres_url: str, pg_schema: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A URL of the test PostgreSQL through a proxy the test controls, and the proxy."""
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.restore()
    user = f"{parts.username}@" if parts.username else ""
    netloc = f"{user}127.0.0.1:{proxy.port}"
    url = urlunsplit(parts._replace(netloc=netloc, query=f"schema={pg_schema}&connect_timeout=2"))
    try:
        yield url, proxy
    finally:
        await proxy.cut()


@pytest.mark.postgres
@pytest.mark.slow
async def test_readyz_is_503_naming_the_store_while_postgres_is_unreachable_and_healthz_200(
    start: Start, proxied_url: tuple[str, TcpProxy]
) -> None:
    url, proxy = proxied_url
    async with start([SPEC], event_store_url=url) as (_, client):
        assert await eventually(lambda: ready(client))
        assert (await client.post("/tickets", json=NEW_TICKET)).status_code == 201

        await proxy.cut()
        unready = await client.get("/readyz")
        assert unready.status_code == 503
        assert unready.json()["status"] == "not ready"
        [reason] = unready.json()["reasons"]
        assert reason.startswith("event store unreachable")
        assert (await client.get("/healthz")).status_code == 200
        refused = await client.post("/tickets", json=NEW_TICKET)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["retry-after"] == "1"
        assert (await client.get("/healthz")).status_code == 200
        await proxy.restore()


@pytest.mark.postgres
@pytest.mark.slow
async def test_readyz_turns_200_again_once_postgres_is_back_and_projections_resume(
    start: Start, proxied_url: tuple[str, TcpProxy]
) -> None:
    url, proxy = proxied_url
    async with start([SPEC], event_store_url=url) as (runtime, client):
        assert await eventually(lambda: ready(client))
        runner = runtime.engine.runners["ticket_board"]

        await proxy.cut()

        async def failed() -> bool:
            return runner.state == "error"

        assert await eventually(failed, within=30)
        await asyncio.sleep(1.0)  # an outage longer than the runner's first retry
        await proxy.restore()

        assert await eventually(lambda: ready(client), within=60, every=0.2)
        opened = await client.post("/tickets", json=NEW_TICKET)
        assert opened.status_code == 201
        ticket = await client.get(
            f"/tickets/{opened.json()['id']}",
            headers={"Chronik-Min-Position": opened.headers["chronik-position"]},
        )
        assert ticket.status_code == 200


# -- a broker that goes away after the start ------------------------------------------


@public("tickets.ticket_opened.v1")
@dataclasses.dataclass(frozen=True)
class PublicTicketOpened:
    title: str


def _publishing() -> ServiceSpec:
    """The ticket service with a published language: it relays, so it needs a broker."""
    return dataclasses.replace(
        SPEC,
        language=PublishedLanguage([PublicTicketOpened]),
        translate=lambda recorded: (
            PublicTicketOpened(recorded.event.title)
            if isinstance(recorded.event, TicketOpened)
            else None
        ),
    )


@pytest.fixture(params=["nats", "rabbitmq"])
async def proxied_broker(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A URL of a shared broker through a proxy the test controls, and the proxy."""
    if request.param == "nats":
        problem, port = await nats_problem(NATS_URL), 4222
    else:
        problem, port = await rabbitmq_problem(RABBITMQ_URL), 5672
    if problem is not None:
        service_missing(problem)
    proxy = TcpProxy("127.0.0.1", port)
    await proxy.restore()
    namespace = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "nats":
        url = f"nats://127.0.0.1:{proxy.port}?namespace={namespace}"
    else:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?namespace={namespace}"
    try:
        yield url, proxy
    finally:
        await proxy.cut()


@pytest.mark.slow
async def test_readyz_is_503_saying_why_while_the_broker_is_unreachable_and_200_once_back(
    start: Start, tmp_path: Path, proxied_broker: tuple[str, TcpProxy]
) -> None:
    url, proxy = proxied_broker
    shown = url.replace(":guest@", ":***@")
    async with start(
        [_publishing()],
        event_store_url=f"sqlite:///{tmp_path}/chronik.db",
        broker_url=url,
        run="http,relay",
    ) as (_, client):
        assert await eventually(lambda: ready(client))

        await proxy.cut()

        async def says_why() -> bool:
            answer = await client.get("/readyz")
            reasons = answer.json()["reasons"]
            return answer.status_code == 503 and any(
                r.startswith(f"broker {shown} unreachable: ") for r in reasons
            )

        assert await eventually(says_why, within=30, every=0.1), (
            await client.get("/readyz")
        ).json()
        assert (await client.get("/healthz")).status_code == 200

        await proxy.restore()
        assert await eventually(lambda: ready(client), within=60, every=0.2), (
            await client.get("/readyz")
        ).json()
