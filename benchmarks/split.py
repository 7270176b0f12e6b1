"""The split deployment as users run it: sales, campaigns and travel as separate processes.

    python -m benchmarks.split [--size tiny|quick|full] [--out benchmarks/results/split.json]
        [--markdown docs/benchmarks.md] [--postgres-url ...] [--nats-url ...]

What ``make demo-distributed`` (deploy/local/run-distributed.sh) starts, with names of
the run's own: one ``chronik serve`` per context (``CHRONIK_RUN=http,projections,
consumers,processes``) on a free port and a PostgreSQL schema ``bench_split_<context>_
<run>``, and one ``chronik relay`` per context, on NATS JetStream under the broker
namespace ``bsplit<run>``. Everything is stopped, the schemas dropped and the namespace's
durable consumers and messages removed at the end, whatever happened.

Orders are offered over HTTP (``POST /leads/{id}/orders``, one order per lead: a lead
orders once) from this process with an httpx ``AsyncClient`` whose pool holds at most
``POOL`` connections, open loop: order ``i`` is sent at ``start + i / rate`` by the clock,
whether the ones before it were answered or not, so a slow answer delays nothing after
it and a request's latency counts from when it was due (the wait for a free connection
included). Requests still unanswered ``settle_s`` after the last was sent are given up
and count as unanswered, and the effects are awaited as long again at most: a run whose
system cannot keep up ends in bounded time. Leads are made beforehand, untimed, through
the library on sales' schema, and sales' read models are caught up (a read with
``Chronik-Min-Position``) before any order is offered.

1. **Sales alone** (sales' serve and relay running; campaigns and travel not started, so
   nothing consumes the orders): the offered rate steps up until an order is refused or
   unanswered, the acknowledged rate (answers from the first to the last of a step, so a
   steady latency does not lower it and a growing queue does) falls below 95% of the
   offered one, or the HTTP p99 exceeds 1 s. The highest step that passed is the rate
   sales sustains; when the first step fails, the rate is halved until one passes (down
   to MIN_RATE). Then, for attribution, the same endpoint closed loop
   (``LIBRARY_CONCURRENCY`` requests in flight).
2. **Cross-context**: campaigns and travel start (serve and relay each); orders are offered
   at 25%, 50% and 75% of the sustained rate, each for a fixed window. For every order the
   stages come from the databases: sales' event ``recorded_at`` (``clock_timestamp()``
   inside the append, just before its commit), the outbox's ``published_at`` (``now()`` of
   the relay's marking transaction, which begins once the broker acknowledged the
   publish), campaigns' inbox ``handled_at`` (``now()``: when the transaction of the
   effect began; the handler's load of the budget comes before it) and the ``recorded_at``
   of the event it appended (caused by the message: ``causation_id``). Visible means
   campaigns' ``campaign_board`` projection (the budget's read model) committed a
   checkpoint at or past that event, polled every ``POLL_S``. No stage records the
   commit itself: the fsync of each commit falls into the following stage.
3. **Library direct**: the same command in one process on a fresh schema: load the lead,
   ``submit_order``, append with sales' outbox hook installed, ``LIBRARY_CONCURRENCY``
   commands in flight, closed loop, no HTTP, projections, relay or consumers.

All times compared across processes are wall-clock times of this one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from benchmarks.common import DEFAULT_POSTGRES_URL, percentile

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "split.json"
DEFAULT_LATEST = REPO_ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_MARKDOWN = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
CONTEXTS = ("sales", "campaigns", "travel")
ROLES = "http,projections,consumers,processes"
NATS_STREAM = "CHRONIK"

#: The httpx pool: at most this many connections to sales at once.
POOL = 64
#: A request not answered within this counts as unanswered.
REQUEST_TIMEOUT_S = 30.0
#: Commands in flight in the closed-loop runs (library direct, and sales' HTTP for
#: attribution).
LIBRARY_CONCURRENCY = 16
#: How often the budget's read model checkpoint is read: the resolution of "visible".
POLL_S = 0.01
#: Sales' sustained rate: the acknowledged rate at least this share of the offered one...
MIN_ACK_SHARE = 0.95
#: ...and the HTTP p99 at most this.
MAX_P99_MS = 1000.0
#: When the first step fails, the rate is halved down to this.
MIN_RATE = 2.0
#: Each order's amount: 100.00 EUR, which campaigns credits as 10.00 EUR.
AMOUNT_CENTS, CURRENCY = 10_000, "EUR"
ORDER: dict[str, object] = {"amount_cents": AMOUNT_CENTS, "currency": CURRENCY}
#: Leads made at once through the library (group commit shares their commits).
LEAD_WRITERS = 32
#: How long a process may take to start (ready, or relaying).
START_WITHIN_S = 60.0
#: The campaigns consumer of sales' orders (its inbox rows) and the budget's projection.
CONSUMER = "campaigns"
BUDGET_PROJECTION = "campaign_board"


@dataclass(frozen=True)
class SplitSize:
    name: str
    #: the offered rates of the sales-alone step-up, orders/s
    step_rates: tuple[int, ...]
    step_seconds: float
    #: how long the closed-loop HTTP run lasts
    closed_loop_seconds: float
    #: (share of the sustained rate, window in seconds) of the cross-context runs
    fractions: tuple[tuple[float, float], ...]
    #: how long to wait for the last answers after a window, then for the last effects
    settle_s: float
    library_orders: int


SIZES: dict[str, SplitSize] = {
    # The smoke test's: correctness, seconds.
    "tiny": SplitSize("tiny", (4, 8), 2.0, 1.0, ((0.5, 3.0),), 30.0, 50),
    "quick": SplitSize(
        "quick", (10, 20, 40, 80, 160), 3.0, 3.0, ((0.25, 3.0), (0.5, 5.0), (0.75, 3.0)), 20.0, 300
    ),
    "full": SplitSize(
        "full",
        (10, 15, 20, 30, 45, 70, 100, 150, 220, 330, 500, 750),
        8.0,
        8.0,
        ((0.25, 30.0), (0.5, 60.0), (0.75, 30.0)),
        15.0,
        1_500,
    ),
}


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _ms(values: Sequence[float]) -> dict[str, Any]:
    """p50, p99 and max of latencies in seconds, as milliseconds."""
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


# ---------------------------------------------------------------------------------------
# The processes


def _chronik() -> str:
    return str(Path(sys.executable).with_name("chronik"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _base_env() -> dict[str, str]:
    """This process's environment without any CHRONIK_ setting of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")}


class Process:
    """One ``chronik`` command line as a subprocess, logging to its own file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.args = args
        self.env = {**_base_env(), **env}
        self.log_file = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [_chronik(), *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:]) or "(no output)"

    def failed(self, why: str) -> RuntimeError:
        return RuntimeError(f"{self.name} {why}; its log ends:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C in run-distributed.sh; SIGKILL if it has not ended in 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class Deployment:
    """The three contexts and their relays, on schemas and a namespace of the run's own."""

    def __init__(self, postgres_url: str, nats_url: str, logs: Path) -> None:
        run = uuid.uuid4().hex[:10]
        self.run = run
        self.postgres_url = postgres_url
        self.nats_url = nats_url
        self.namespace = f"bsplit{run}"
        self.broker_url = f"{nats_url}?namespace={self.namespace}"
        self.schemas = {c: f"bench_split_{c}_{run}" for c in CONTEXTS}
        self.logs = logs
        self.services: dict[str, Process] = {}
        self.relays: dict[str, Process] = {}
        self.ports: dict[str, int] = {}

    def store(self, context: str) -> str:
        return f"{self.postgres_url}?schema={self.schemas[context]}"

    def url(self, context: str) -> str:
        return f"http://127.0.0.1:{self.ports[context]}"

    async def start(self, context: str) -> None:
        """``chronik serve`` and ``chronik relay`` of one context, as run-distributed.sh."""
        port = _free_port()
        self.ports[context] = port
        service = Process(
            context,
            ["serve"],
            {
                "CHRONIK_APP": f"{context}:spec",
                "CHRONIK_EVENT_STORE_URL": self.store(context),
                "CHRONIK_BROKER_URL": self.broker_url,
                "CHRONIK_HTTP_PORT": str(port),
                "CHRONIK_RUN": ROLES,
            },
            self.logs,
        )
        relay = Process(
            f"{context}-relay",
            ["relay", "--broker-url", self.broker_url],
            {"CHRONIK_EVENT_STORE_URL": self.store(context)},
            self.logs,
        )
        self.services[context] = service
        self.relays[context] = relay
        service.start()
        # The relay waits for the outbox's tables, which the service makes at its start.
        await self._ready(service, self.url(context))
        relay.start()
        deadline = time.monotonic() + START_WITHIN_S
        while "relaying the outbox" not in relay.output():
            if not relay.running:
                raise relay.failed(f"exited with {relay.process and relay.process.returncode}")
            if time.monotonic() > deadline:
                raise relay.failed(f"did not start relaying within {START_WITHIN_S:g} s")
            await asyncio.sleep(0.1)

    async def _ready(self, service: Process, url: str) -> None:
        deadline = time.monotonic() + START_WITHIN_S
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            while True:
                if not service.running:
                    raise service.failed("exited before it was ready")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise service.failed(f"was not ready within {START_WITHIN_S:g} s")
                await asyncio.sleep(0.1)

    def check_running(self) -> None:
        for process in [*self.services.values(), *self.relays.values()]:
            if not process.running:
                raise process.failed("exited during the run")

    def stop(self) -> None:
        """SIGTERM to every process at once, then wait for each (SIGKILL after 15 s)."""
        processes = [*self.relays.values(), *self.services.values()]
        for process in processes:
            if process.running and process.process is not None:
                process.process.send_signal(signal.SIGTERM)
        for process in processes:
            process.stop()

    async def forget(self) -> None:
        """Remove the namespace's durable consumers and messages from the shared stream."""
        await purge_namespace(self.nats_url, self.namespace, consumers=True)
        await drop_schemas(self.postgres_url, list(self.schemas.values()))


async def purge_namespace(nats_url: str, namespace: str, *, consumers: bool) -> None:
    import nats
    import nats.js.errors

    client = await nats.connect(servers=[nats_url], connect_timeout=5)
    try:
        js = client.jetstream(timeout=10)
        if consumers:
            for info in await js.consumers_info(NATS_STREAM):
                if info.name.startswith(f"{namespace}-"):
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await js.delete_consumer(NATS_STREAM, info.name)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.purge_stream(NATS_STREAM, subject=f"chronik.{namespace}.>")
    finally:
        await client.close()


async def consumer_pending(nats_url: str, durable: str) -> int | None:
    """Messages of a durable consumer not yet acknowledged (waiting, or in flight)."""
    import nats
    import nats.js.errors

    client = await nats.connect(servers=[nats_url], connect_timeout=5)
    try:
        info = await client.jetstream(timeout=5).consumer_info(NATS_STREAM, durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    except nats.js.errors.NotFoundError:
        return None
    finally:
        await client.close()


async def drop_schemas(postgres_url: str, schemas: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("SET lock_timeout = '10s'")
        for schema in schemas:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


# ---------------------------------------------------------------------------------------
# Leads, made through the library (untimed)


@contextlib.asynccontextmanager
async def sales_library(store_url: str) -> AsyncIterator[Any]:
    """Sales' handlers on a plain store with sales' outbox hook, as its runtime has it."""
    import sales
    from chronik.adapters import open_database
    from chronik.eventstore import EventTypes
    from chronik.messaging import Outbox
    from sales import handlers

    spec = sales.spec()
    database = await open_database(store_url)
    try:
        types = EventTypes(list(spec.event_types), upcasters=list(spec.upcasters))
        store = database.event_store(types)
        outbox = Outbox(
            store, spec.translate, spec.language, source=spec.name, storage=database.messages()
        )
        await outbox.setup()
        yield handlers.LeadHandlers(store)
    finally:
        await database.close()


async def make_leads(lead_handlers: Any, count: int) -> tuple[list[str], int]:
    """``count`` new leads; their ids and the highest position appended."""
    from sales import commands

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    ids: list[str] = []
    last = 0

    async def writer() -> None:
        nonlocal last
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            changed = await lead_handlers.create_lead(
                commands.CreateLead(f"Bench Customer {i}", "+44 20 7946 0958")
            )
            ids.append(changed.id)
            last = max(last, changed.result.position)

    await asyncio.gather(*(writer() for _ in range(min(LEAD_WRITERS, max(count, 1)))))
    return ids, last


async def caught_up(client: httpx.AsyncClient, position: int, within: float = 120.0) -> None:
    """Wait until sales' read models passed ``position`` (a read that waits for it)."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.TransportError):
            answer = await client.get(
                "/funnel", headers={"Chronik-Min-Position": str(position)}, timeout=30
            )
            if answer.status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sales' read models did not reach {position} in {within:g} s")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------
# Offering orders over HTTP


@dataclass
class Sent:
    """One order offered: when it was due, and what sales answered."""

    lead_id: str
    due: float  # perf_counter
    due_wall: float  # time.time()
    done: float | None = None  # perf_counter of the answer (or of the failure)
    ack_wall: float | None = None  # time.time() of a 2xx
    status: int | None = None
    error: str | None = None
    stream_id: str | None = None
    version: int | None = None
    position: int | None = None

    @property
    def acked(self) -> bool:
        return self.ack_wall is not None


async def _send(client: httpx.AsyncClient, sent: Sent) -> None:
    try:
        answer = await client.post(f"/leads/{sent.lead_id}/orders", json=ORDER)
    except httpx.HTTPError as exc:
        sent.done = time.perf_counter()
        sent.error = f"{type(exc).__name__}: {exc}"
        return
    sent.done = time.perf_counter()
    sent.status = answer.status_code
    if 200 <= answer.status_code < 300:
        sent.ack_wall = time.time()
        body = answer.json()
        sent.stream_id, sent.version, sent.position = (
            body["stream_id"],
            int(body["version"]),
            int(body["position"]),
        )
    else:
        sent.error = f"HTTP {answer.status_code}: {answer.text[:200]}"


async def offer(
    client: httpx.AsyncClient, leads: list[str], rate: float, drain_s: float
) -> list[Sent]:
    """One order per lead at ``rate``/s, open loop.

    It returns when every order is answered, or ``drain_s`` after the last was sent: the
    requests still open then are given up (the connection closed) and count as
    unanswered, so a run whose server cannot keep up still ends in bounded time (sales
    may yet commit some of them; only acknowledged orders are traced).
    """
    interval = 1.0 / rate
    tasks: list[asyncio.Task[None]] = []
    sent: list[Sent] = []
    start = time.perf_counter()
    wall = time.time()
    for i, lead in enumerate(leads):
        due = start + i * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        s = Sent(lead, due, wall + (due - start))
        sent.append(s)
        tasks.append(asyncio.create_task(_send(client, s)))
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    given_up = time.perf_counter()
    for s in sent:
        if s.done is None:
            s.done = given_up
            s.error = f"unanswered {drain_s:g} s after the last order was sent"
    return sent


def summarize_offer(sent: list[Sent], rate: float, seconds: float) -> dict[str, Any]:
    """The acknowledged rate and the HTTP latency (from when each was due)."""
    acked = [s for s in sent if s.acked]
    # From the first answer to the last: a steady latency shifts both alike, a growing
    # queue stretches the span.
    answered = sorted(s.done for s in acked if s.done is not None)
    span = answered[-1] - answered[0] if len(answered) > 1 else 0.0
    per_s = (len(answered) - 1) / span if span > 0 else 0.0
    latencies = [(s.done or 0) - s.due for s in sent]
    errors = sorted({s.error for s in sent if s.error})
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "offered": len(sent),
        "acked": len(acked),
        "acked_per_s": round(per_s, 1),
        "http": _ms(latencies),
        "errors": errors[:3],
    }


def client_for(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S)


async def closed_loop(
    leads: list[str], concurrency: int, command: Callable[[str], Awaitable[None]]
) -> dict[str, Any]:
    """``command`` for every lead, ``concurrency`` at a time; its rate and latency."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for lead in leads:
        queue.put_nowait(lead)
    latencies: list[float] = []

    async def worker() -> None:
        while True:
            try:
                lead = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            await command(lead)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "orders": len(leads),
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "orders_per_s": round(len(leads) / seconds, 1),
        "latency": _ms(latencies),
    }


# ---------------------------------------------------------------------------------------
# The stages, from the databases


class CheckpointPoller:
    """Reads the budget projection's checkpoint every POLL_S: (wall time, checkpoint)."""

    def __init__(self, store_schema: str, postgres_url: str) -> None:
        self.schema = store_schema
        self.postgres_url = postgres_url
        self.times: list[float] = []
        self.checkpoints: list[int] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        query = sql.SQL("SELECT checkpoint FROM {}.chronik_projections WHERE name = %s").format(
            sql.Identifier(self.schema)
        )
        async with await psycopg.AsyncConnection.connect(
            self.postgres_url, autocommit=True
        ) as conn:
            highest = -1
            while not self._stop.is_set():
                row = await (await conn.execute(query, (BUDGET_PROJECTION,))).fetchone()
                at = time.time()
                if row is not None and int(row[0]) > highest:
                    highest = int(row[0])
                    self.times.append(at)
                    self.checkpoints.append(highest)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def visible_at(self, position: int) -> float | None:
        """When the checkpoint was first seen at or past ``position``."""
        i = bisect.bisect_left(self.checkpoints, position)
        return self.times[i] if i < len(self.checkpoints) else None


@dataclass
class Traced:
    """One order through the stages: wall-clock seconds since the epoch."""

    ack: float
    recorded: float | None = None  # sales' event, in its append (just before commit)
    published: float | None = None  # the relay's marking transaction began
    consumed: float | None = None  # campaigns' effect transaction began (inbox handled_at)
    effected: float | None = None  # campaigns' event, in its append (just before commit)
    effect_position: int | None = None
    visible: float | None = None  # the budget's checkpoint seen past the effect


async def trace(sent: list[Sent], deployment: Deployment, poller: CheckpointPoller) -> list[Traced]:
    acked = [s for s in sent if s.acked]
    sales = sql.Identifier(deployment.schemas["sales"])
    campaigns = sql.Identifier(deployment.schemas["campaigns"])
    by_stream = {s.stream_id: s for s in acked}
    traced: dict[str, Traced] = {}
    async with await psycopg.AsyncConnection.connect(
        deployment.postgres_url, autocommit=True
    ) as conn:
        rows = await (
            await conn.execute(
                sql.SQL(
                    "SELECT stream_id, version, id::text, extract(epoch FROM recorded_at)"
                    " FROM {}.chronik_events WHERE stream_id = ANY(%s)"
                ).format(sales),
                (list(by_stream),),
            )
        ).fetchall()
        for stream_id, version, event_id, recorded in rows:
            s = by_stream[stream_id]
            if version == s.version:
                assert s.ack_wall is not None
                traced[event_id] = Traced(s.ack_wall, recorded=float(recorded))
        ids = list(traced)
        for message_id, published in await (
            await conn.execute(
                sql.SQL(
                    "SELECT message_id, extract(epoch FROM published_at)"
                    " FROM {}.chronik_outbox WHERE message_id = ANY(%s)"
                ).format(sales),
                (ids,),
            )
        ).fetchall():
            if published is not None:
                traced[message_id].published = float(published)
        for message_id, handled in await (
            await conn.execute(
                sql.SQL(
                    "SELECT message_id, extract(epoch FROM handled_at) FROM {}.chronik_inbox"
                    " WHERE consumer = %s AND message_id = ANY(%s)"
                ).format(campaigns),
                (CONSUMER, ids),
            )
        ).fetchall():
            traced[message_id].consumed = float(handled)
        for cause, position, recorded in await (
            await conn.execute(
                sql.SQL(
                    "SELECT causation_id, position, extract(epoch FROM recorded_at)"
                    " FROM {}.chronik_events WHERE causation_id = ANY(%s)"
                ).format(campaigns),
                (ids,),
            )
        ).fetchall():
            t = traced[cause]
            if t.effect_position is None or position > t.effect_position:
                t.effect_position, t.effected = int(position), float(recorded)
    for t in traced.values():
        if t.effect_position is not None:
            t.visible = poller.visible_at(t.effect_position)
    return list(traced.values())


def _span(traced: list[Traced], a: str, b: str) -> list[float]:
    out = []
    for t in traced:
        start, end = getattr(t, a), getattr(t, b)
        if start is not None and end is not None:
            out.append(end - start)
    return out


#: The stages reported, each (name, from, to, what it holds).
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("commit + answer", "recorded", "ack", "sales' append recorded -> 2xx received"),
    ("relay + broker", "recorded", "published", "recorded -> relay marks it published"),
    (
        "delivery + load",
        "published",
        "consumed",
        "published -> campaigns' effect transaction begins",
    ),
    ("effect append", "consumed", "effected", "transaction begins -> budget event recorded"),
    ("commit + project", "effected", "visible", "budget event recorded -> read model past it"),
    ("commit to visible", "recorded", "visible", "sales' append recorded -> budget visible"),
    ("end to end", "ack", "visible", "sales' 2xx -> budget visible in campaigns"),
)


def stage_figures(traced: list[Traced]) -> dict[str, dict[str, Any]]:
    return {name: _ms(_span(traced, a, b)) for name, a, b, _ in STAGES}


def backlog(sent: list[Sent], traced: list[Traced], at: float) -> int:
    """Orders acknowledged by ``at`` (wall) and not yet visible in campaigns then."""
    acked = sum(1 for s in sent if s.ack_wall is not None and s.ack_wall <= at)
    visible = sum(1 for t in traced if t.visible is not None and t.visible <= at)
    return acked - visible


def backlog_figures(
    sent: list[Sent],
    traced: list[Traced],
    first: float,
    early: float,
    end: float,
    samples: list[dict[str, Any]],
) -> dict[str, Any]:
    """The backlog early in the window and at its end, its maximum, and its trend.

    ``growth`` is the least-squares slope of the backlog (sampled every 0.5 s from
    ``early`` to ``end``) times that span: how many orders piled up over the window
    beyond what was in flight when it started; ``grows`` when that exceeds 1 + 1% of
    the orders offered (a backlog in step with the load only wobbles around its level).
    """
    times = [early + k * 0.5 for k in range(int((end - early) / 0.5) + 1)]
    values = [backlog(sent, traced, t) for t in times]
    growth = 0.0
    if len(times) > 2:
        mean_t, mean_v = sum(times) / len(times), sum(values) / len(values)
        var = sum((t - mean_t) ** 2 for t in times)
        slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
        growth = slope / var * (times[-1] - times[0]) if var > 0 else 0.0
    everything = [
        backlog(sent, traced, first + k * 0.5) for k in range(int((end - first) / 0.5) + 1)
    ]
    return {
        "at_s": round(early - first, 1),
        "at_start": backlog(sent, traced, early),
        "at_end": backlog(sent, traced, end),
        "max": max(everything),
        "growth": round(growth, 1),
        "grows": growth > 1 + 0.01 * len(sent),
        "samples": samples,
    }


# ---------------------------------------------------------------------------------------
# The phases


@dataclass
class Run:
    size: SplitSize
    deployment: Deployment
    lead_handlers: Any = None
    sales: httpx.AsyncClient | None = None
    log: Callable[[str], None] = print
    results: dict[str, Any] = field(default_factory=dict)

    async def leads(self, count: int) -> list[str]:
        """New leads, sales' read models caught up with them (untimed)."""
        assert self.sales is not None
        ids, last = await make_leads(self.lead_handlers, count)
        await caught_up(self.sales, last)
        return ids

    async def _step(self, rate: float) -> dict[str, Any]:
        """Offer ``rate`` orders/s to sales for a step; whether it kept up."""
        assert self.sales is not None
        seconds = self.size.step_seconds
        leads = await self.leads(max(2, round(rate * seconds)))
        sent = await offer(self.sales, leads, rate, self.size.settle_s)
        self.deployment.check_running()
        step = summarize_offer(sent, rate, seconds)
        p99 = step["http"]["p99_ms"]
        step["passed"] = bool(
            step["acked"] == step["offered"]
            and step["acked_per_s"] >= MIN_ACK_SHARE * rate
            and p99 is not None
            and p99 <= MAX_P99_MS
        )
        self.log(
            f"  sales alone at {rate}/s: {step['acked']}/{step['offered']} acked at"
            f" {step['acked_per_s']}/s, HTTP p50 {step['http']['p50_ms']} ms"
            f" p99 {p99} ms -> {'sustained' if step['passed'] else 'NOT sustained'}"
        )
        return step

    async def sales_alone(self) -> float:
        size = self.size
        assert self.sales is not None
        steps = []
        sustained: float | None = None
        for rate in size.step_rates:
            step = await self._step(rate)
            steps.append(step)
            if not step["passed"]:
                break
            sustained = float(rate)
        basis = "the highest step that passed"
        lower = float(size.step_rates[0])
        while sustained is None and lower > MIN_RATE:
            # Not even the first step: halve it until one passes.
            lower = max(MIN_RATE, lower / 2)
            step = await self._step(lower)
            steps.append(step)
            if step["passed"]:
                sustained = lower
        if sustained is None:
            sustained = MIN_RATE
            basis = f"no step passed, not even {MIN_RATE:g}/s"
        elif sustained < size.step_rates[0]:
            basis = "the highest step that passed, below the first"
        elif sustained == size.step_rates[-1]:
            basis = "the last step (the size's highest): a lower bound"
        leads = await self.leads(max(10, round(sustained * size.closed_loop_seconds)))
        client = self.sales

        async def post(lead: str) -> None:
            answer = await client.post(f"/leads/{lead}/orders", json=ORDER)
            if answer.status_code >= 300:
                raise RuntimeError(f"order refused: {answer.status_code} {answer.text[:200]}")

        closed = await closed_loop(leads, LIBRARY_CONCURRENCY, post)
        self.log(f"  sales closed loop: {closed['orders_per_s']}/s, {closed['latency']}")
        self.results["sales_alone"] = {
            "steps": steps,
            "sustained_per_s": sustained,
            "basis": basis,
            "closed_loop": closed,
        }
        return sustained

    async def cross(self, sustained: float) -> None:
        size = self.size
        deployment = self.deployment
        assert self.sales is not None
        durable = f"{deployment.namespace}-{CONSUMER}-sales"
        runs = []
        for share, seconds in size.fractions:
            rate = max(1.0, round(sustained * share, 1))
            leads = await self.leads(max(1, round(rate * seconds)))
            poller = CheckpointPoller(deployment.schemas["campaigns"], deployment.postgres_url)
            poller.start()
            samples: list[dict[str, Any]] = []
            sampling = asyncio.create_task(self._sample(durable, samples))
            try:
                sent = await offer(self.sales, leads, rate, size.settle_s)
                offered_end = time.time()
                deployment.check_running()
                await self._settle(sent, size.settle_s)
            finally:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
                await poller.stop()
            traced = await trace(sent, deployment, poller)
            run = summarize_offer(sent, rate, seconds)
            first = sent[0].due_wall
            visible = [t.visible for t in traced if t.visible is not None]
            early = first + min(max(5.0, seconds / 10), seconds / 2)
            run.update(
                share=share,
                effected=sum(1 for t in traced if t.effected is not None),
                visible=len(visible),
                visible_per_s=round(len(visible) / max(max(visible) - first, seconds), 1)
                if visible
                else 0.0,
                stages=stage_figures(traced),
                backlog=backlog_figures(sent, traced, first, early, offered_end, samples),
            )
            e2e = run["stages"]["end to end"]
            self.log(
                f"  cross at {rate}/s ({share:.0%}) for {seconds:g} s: {run['acked']} acked,"
                f" {run['visible']} visible; end to end p50 {e2e['p50_ms']} ms"
                f" p99 {e2e['p99_ms']} ms; backlog {run['backlog']['at_start']}"
                f" -> {run['backlog']['at_end']}"
            )
            runs.append(run)
        self.results["cross"] = runs

    async def _sample(self, durable: str, samples: list[dict[str, Any]]) -> None:
        """Every second: sales' outbox not yet published, the consumer's pending messages."""
        schema = sql.Identifier(self.deployment.schemas["sales"])
        query = sql.SQL("SELECT count(*) FROM {}.chronik_outbox WHERE published_at IS NULL").format(
            schema
        )
        started = time.time()
        async with await psycopg.AsyncConnection.connect(
            self.deployment.postgres_url, autocommit=True
        ) as conn:
            while True:
                row = await (await conn.execute(query)).fetchone()
                pending = await consumer_pending(self.deployment.nats_url, durable)
                samples.append(
                    {
                        "t_s": round(time.time() - started, 1),
                        "outbox_pending": int(row[0]) if row else None,
                        "consumer_pending": pending,
                    }
                )
                await asyncio.sleep(1.0)

    async def _settle(self, sent: list[Sent], within: float) -> None:
        """Wait until every acknowledged order's effect is visible, at most ``within`` s."""
        deployment = self.deployment
        campaigns = sql.Identifier(deployment.schemas["campaigns"])
        ids = [s.stream_id for s in sent if s.acked]
        deadline = time.monotonic() + within
        async with await psycopg.AsyncConnection.connect(
            deployment.postgres_url, autocommit=True
        ) as conn:
            # The orders' event ids, then their inbox rows and the budget's checkpoint.
            sales = sql.Identifier(deployment.schemas["sales"])
            rows = await (
                await conn.execute(
                    sql.SQL(
                        "SELECT id::text FROM {}.chronik_events WHERE stream_id = ANY(%s)"
                        " AND type = 'sales.order_submitted'"
                    ).format(sales),
                    (ids,),
                )
            ).fetchall()
            messages = [r[0] for r in rows]
            while time.monotonic() < deadline:
                row = await (
                    await conn.execute(
                        sql.SQL(
                            "SELECT count(*), max(e.position) FROM {c}.chronik_events e"
                            " WHERE e.causation_id = ANY(%s)"
                        ).format(c=campaigns),
                        (messages,),
                    )
                ).fetchone()
                checkpoint = await (
                    await conn.execute(
                        sql.SQL(
                            "SELECT checkpoint FROM {}.chronik_projections WHERE name = %s"
                        ).format(campaigns),
                        (BUDGET_PROJECTION,),
                    )
                ).fetchone()
                effected, highest = (int(row[0]), row[1]) if row else (0, None)
                if (
                    effected >= len(messages)
                    and highest is not None
                    and checkpoint is not None
                    and int(checkpoint[0]) >= int(highest)
                ):
                    # One more poll of the checkpoint so the poller saw it too.
                    await asyncio.sleep(POLL_S * 3)
                    return
                await asyncio.sleep(0.1)


async def library_direct(postgres_url: str, run: str, size: SplitSize) -> dict[str, Any]:
    """The order command through the library alone, on a fresh schema."""
    from sales import commands

    schema = f"bench_split_library_{run}"
    try:
        async with sales_library(f"{postgres_url}?schema={schema}") as lead_handlers:
            leads, _ = await make_leads(lead_handlers, size.library_orders)

            async def submit(lead: str) -> None:
                await lead_handlers.submit_order(commands.SubmitOrder(lead, AMOUNT_CENTS, CURRENCY))

            return await closed_loop(leads, LIBRARY_CONCURRENCY, submit)
    finally:
        await drop_schemas(postgres_url, [schema])


async def measure(
    size: SplitSize,
    postgres_url: str,
    nats_url: str,
    logs: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    deployment = Deployment(postgres_url, nats_url, logs)
    run = Run(size, deployment, log=log)
    run.results["run"] = deployment.run
    log(f"split run {deployment.run}: schemas bench_split_*_{deployment.run}, logs in {logs}")
    try:
        # Phase 1: sales and its relay alone.
        began = time.perf_counter()
        await deployment.start("sales")
        log(f"  sales started ({time.perf_counter() - began:.0f} s)")
        # A small pool: the PostgreSQL server's connections are shared with the services.
        async with sales_library(f"{deployment.store('sales')}&pool_max=4") as lead_handlers:
            run.lead_handlers = lead_handlers
            run.sales = client_for(deployment.url("sales"))
            try:
                sustained = await run.sales_alone()
                # Phase 2: the orders so far are published and dropped from the broker, so
                # that campaigns starts with nothing to catch up on.
                await _outbox_drained(deployment)
                await purge_namespace(nats_url, deployment.namespace, consumers=False)
                await asyncio.gather(deployment.start("campaigns"), deployment.start("travel"))
                log(f"  campaigns and travel started ({time.perf_counter() - began:.0f} s)")
                await run.cross(sustained)
            finally:
                await run.sales.aclose()
    finally:
        deployment.stop()
        await deployment.forget()
    # Phase 3: the library alone, nothing else of the run left running.
    library = await library_direct(postgres_url, deployment.run, size)
    log(f"  library direct: {library['orders_per_s']}/s, {library['latency']}")
    run.results["library"] = library
    alone = run.results["sales_alone"]
    run.results["ratios"] = {
        "sales_sustained_to_library": round(alone["sustained_per_s"] / library["orders_per_s"], 3),
        "sales_closed_loop_to_library": round(
            alone["closed_loop"]["orders_per_s"] / library["orders_per_s"], 3
        ),
    }
    return run.results


async def _outbox_drained(deployment: Deployment, within: float = 120.0) -> None:
    schema = sql.Identifier(deployment.schemas["sales"])
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(
        deployment.postgres_url, autocommit=True
    ) as conn:
        while True:
            row = await (
                await conn.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {}.chronik_outbox WHERE published_at IS NULL"
                    ).format(schema)
                )
            ).fetchone()
            if row is not None and int(row[0]) == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sales' outbox still holds {row} messages after {within} s")
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------
# The command line


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def render(markdown: Path, latest: Path, split: Path) -> bool:
    """Re-render the benchmarks page from the results files; False if there is none."""
    from benchmarks.report import render_markdown

    doc = _load(latest)
    if doc is None:
        return False
    _write_text(markdown, render_markdown(doc, _load(split)))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.split", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--quick", action="store_true", help="the same as --size quick")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--markdown", type=Path, default=DEFAULT_MARKDOWN, help="re-rendered with the result"
    )
    parser.add_argument("--no-markdown", action="store_true", help="write only the JSON")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CHRONIK_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument(
        "--nats-url", default=os.environ.get("CHRONIK_BENCH_NATS_URL", DEFAULT_NATS_URL)
    )
    parser.add_argument("--logs", type=Path, default=None, help="the processes' logs (a temp dir)")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else args.size]

    from benchmarks.run import machine_description

    logs = args.logs or Path(tempfile.mkdtemp(prefix="chronik-split-"))
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = _load_average()
    doc: dict[str, Any] = {
        "size": size.name,
        "parameters": asdict(size),
        "started_at": started_at,
        "machine": machine_description(args.postgres_url),
    }
    try:
        doc.update(asyncio.run(measure(size, args.postgres_url, args.nats_url, logs)))
    except Exception as exc:
        doc["error"] = f"{type(exc).__name__}: {exc}"
        print(f"split benchmark failed: {doc['error']} (logs in {logs})", file=sys.stderr)
    doc["load_average"] = {"start": load_start, "end": _load_average()}
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    _write_text(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out} ({doc['wall_seconds']} s)")
    if not args.no_markdown and render(args.markdown, DEFAULT_LATEST, args.out):
        print(f"wrote {args.markdown}")
    if "error" in doc:
        return 1
    if args.logs is None:
        shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
