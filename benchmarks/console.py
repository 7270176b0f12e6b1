"""The console's pages on a store of a million events: p95 of each page's answer.

    python -m benchmarks.console [--backends sqlite,postgres] [--events 1000000]
        [--requests 40] [--postgres-url URL] [--out benchmarks/results/console.json]
        [--pages NAME,...] [--markdown-only]

For each backend, a fresh store (a SQLite file in a temporary directory, a PostgreSQL
schema of its own) is seeded, untimed, through the adapters' schema: the travel context
of the reference system opens and migrates it, one real trip is appended through the
store, and its rows are copied (``executemany`` on SQLite, ``COPY`` on PostgreSQL) into
streams of ten events until the store holds ``--events`` events, each with its
correlation and causation ids; an outbox row for every event (all published but the
last hundred: an outbox nobody purged); five projection rows with parked events;
dead letters; and two thousand instances of the trip booking process, appended
through the store (their process index is kept inline, as in production).

Then the service's HTTP app (``chronik.http.create_app``, the ``http`` role only: no
projection or worker runs beside the measurement) answers ``--requests`` requests to
each console page in turn, each for a different stream, event or instance picked at
random, through httpx's ASGI transport (no sockets): the time is the page's queries and
its rendering. The figure is the p95 per page; the target is p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.common import DEFAULT_POSTGRES_URL
from chronik.eventstore.ids import uuid7s

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "console.json"
TARGET_MS = 300.0
STREAM_LENGTH = 10
PENDING = 100
PROJECTIONS = ("bench_board", "bench_search", "bench_totals", "bench_audit", "bench_mail")
PARKED_EACH = 20
DEAD_LETTERS = 50
INSTANCES = 2000


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


class Seeded:
    """What the seeding left to pick pages from."""

    def __init__(self) -> None:
        self.streams: list[str] = []
        self.event_ids: list[str] = []
        self.correlations: list[str] = []
        self.instances: list[str] = []


async def _template(runtime: Any) -> list[tuple[Any, ...]]:
    """The rows of one real trip (requested, then approved), as the adapter stored them."""
    from travel.domain import TripApproved, TripRequested

    now = datetime.now(UTC)
    await runtime.store.append(
        "trip-template",
        [
            TripRequested("template", "Ada", "Lisbon", date(2027, 5, 1), None, now),
            TripApproved("template", "Grace", now),
        ],
    )
    rows = await runtime.store._stream_rows("trip-template", 1, None, None, False)
    return [tuple(r) for r in rows]


def _event_rows(
    template: list[tuple[Any, ...]], first_position: int, count: int, seeded: Seeded, text: bool
) -> Iterator[tuple[Any, ...]]:
    """``count`` event rows from ``first_position``, in streams of STREAM_LENGTH events."""
    requested, approved = template
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / max(count, 1)
    position = first_position
    stream_no = 0
    made = 0
    while made < count:
        stream = f"trip-bench-{stream_no:07d}"
        stream_no += 1
        seeded.streams.append(stream)
        correlation: str | None = None
        causation: str | None = None
        ids = uuid7s(STREAM_LENGTH)  # time-ordered, as the store makes them
        for version in range(1, STREAM_LENGTH + 1):
            if made == count:
                break
            source = requested if version == 1 else approved
            event_id = ids[version - 1]
            if len(seeded.event_ids) < 5000 or random.random() < 0.001:
                seeded.event_ids.append(str(event_id))
            at = start + step * made
            if correlation is None:
                correlation = str(event_id)
                if len(seeded.correlations) < 5000 or random.random() < 0.001:
                    seeded.correlations.append(correlation)
            yield (
                position,
                stream,
                version,
                event_id.bytes if text else event_id,
                source[4],
                source[5],
                at.isoformat(timespec="microseconds") if text else at,
                source[7],
                correlation,
                causation,
                source[10],
            )
            causation = str(event_id)
            position += 1
            made += 1


def _outbox_rows(first: int, count: int, text: bool) -> Iterator[tuple[Any, ...]]:
    body = b'{"specversion":"1.0","type":"travel.trip_requested.v1","data":{}}' + b" " * 300
    now = datetime.now(UTC)
    for position in range(first, first + count):
        published = None if position >= first + count - PENDING else now
        created = now - timedelta(seconds=(first + count - position) / 1000)
        yield (
            position,
            str(uuid.uuid4()),
            f"trip-bench-{(position - first) // STREAM_LENGTH:07d}",
            "travel.trip_requested.v1",
            body,
            created.isoformat(timespec="microseconds") if text else created,
            (published.isoformat(timespec="microseconds") if published else None)
            if text
            else published,
        )


def _seed_sqlite(path: Path, template: list[tuple[Any, ...]], events: int, seeded: Seeded) -> None:
    import sqlite3

    conn = sqlite3.connect(path, timeout=60)
    try:
        [(head,)] = conn.execute("SELECT coalesce(max(position), 0) FROM chronik_events")
        rows = _event_rows(template, head + 1, events, seeded, text=True)
        with conn:
            conn.executemany(
                "INSERT INTO chronik_events (position, stream_id, version, id, type, "
                "schema_version, recorded_at, data, correlation_id, causation_id, headers) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO chronik_outbox (position, message_id, stream_id, type, body, "
                "created_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _outbox_rows(head + 1, events, text=True),
            )
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _seed_postgres(
    url: str, schema: str, template: list[tuple[Any, ...]], events: int, seeded: Seeded
) -> None:
    with psycopg.connect(url) as conn:
        events_table = f'"{schema}".chronik_events'
        [(head,)] = conn.execute(f"SELECT coalesce(max(position), 0) FROM {events_table}")
        with conn.cursor() as cur:
            with cur.copy(
                f'COPY "{schema}".chronik_events (position, stream_id, version, id, type, '
                "schema_version, recorded_at, data, correlation_id, causation_id, headers) "
                "FROM STDIN"
            ) as copy:
                for row in _event_rows(template, head + 1, events, seeded, text=False):
                    copy.write_row(row)
            with cur.copy(
                f'COPY "{schema}".chronik_outbox (position, message_id, stream_id, type, body, '
                "created_at, published_at) FROM STDIN"
            ) as copy:
                for row in _outbox_rows(head + 1, events, text=False):
                    copy.write_row(row)
            cur.execute(f"SELECT setval('\"{schema}\".chronik_positions', %s)", (head + events,))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{schema}".chronik_events')
        conn.execute(f'VACUUM ANALYZE "{schema}".chronik_outbox')


async def _seed_rest(runtime: Any, seeded: Seeded) -> None:
    """Projection rows with parked events, dead letters, process instances: through the
    adapters' own methods and the store (the process index is kept inline)."""
    from chronik.messaging.port import DeadLetter
    from chronik.processes.process import ProcessStepped, process_stream

    backend = runtime.database.projections()
    await backend.setup()
    head = await runtime.store.head_position()
    for number, name in enumerate(PROJECTIONS):
        row = await backend.load(name) or await backend.create(name, 1, [], {})
        page = await runtime.store.read_all(after=head // 2 + number * 1000, limit=PARKED_EACH)
        async with backend.transaction() as tx:
            for recorded in page:
                await tx.park(name, recorded, f"KeyError: 'budget' (bench {number})", 3)
            await tx.advance(name, row.generation, False, row.checkpoint, head - number * 100)
    messages = runtime.messages
    await messages.setup()
    now = datetime.now(UTC)
    for n in range(DEAD_LETTERS):
        await messages.add_dead_letter(
            DeadLetter(f"bench-{n % 3}", str(uuid.uuid4()), "x.y.v1", b"{}", "boom", 5, now)
        )

    async def instance(n: int) -> None:
        name = f"bench-{n:05d}"
        due = (now + timedelta(hours=48)).isoformat(timespec="microseconds")
        steps = [
            ProcessStepped(
                "trip_booking", name, str(uuid.uuid4()), "TripRequested", "booking_flight", {}
            ),
            ProcessStepped(
                "trip_booking", name, str(uuid.uuid4()), "FlightBooked", "booking_hotel", {}
            ),
            ProcessStepped(
                "trip_booking",
                name,
                str(uuid.uuid4()),
                "HotelBooked",
                "awaiting_approval",
                {},
                scheduled=[{"id": str(uuid.uuid4()), "name": "approval", "due": due}],
                at=now,
            ),
        ]
        await runtime.store.append(process_stream("trip_booking", name), steps)
        seeded.instances.append(name)

    for chunk in _chunks(INSTANCES, 50):
        await asyncio.gather(*(instance(n) for n in chunk))


def _pages(seeded: Seeded) -> dict[str, Callable[[], str]]:
    pick = random.choice
    return {
        "streams (list)": lambda: "/console/streams",
        "streams (prefix)": lambda: f"/console/streams?prefix={pick(seeded.streams)[:-2]}",
        "streams (next page)": lambda: (
            f"/console/streams?category=trip-&after={pick(seeded.streams)}"
        ),
        "streams (event type)": lambda: (
            f"/console/streams?type=travel.trip_approved&after={pick(seeded.streams)}"
        ),
        "stream timeline": lambda: f"/console/streams/{pick(seeded.streams)}",
        "stream time travel": lambda: f"/console/streams/{pick(seeded.streams)}?at=3",
        "event causation": lambda: f"/console/events/{pick(seeded.event_ids)}",
        "correlation": lambda: f"/console/correlations/{pick(seeded.correlations)}",
        "projections": lambda: "/console/projections",
        "projection": lambda: f"/console/projections/{pick(PROJECTIONS)}",
        "projection (live)": lambda: f"/console/projections/{pick(PROJECTIONS)}/live",
        "outbox and inbox": lambda: "/console/messaging",
        "processes": lambda: "/console/processes",
        "process instance": lambda: f"/console/processes/trip_booking/{pick(seeded.instances)}",
    }


async def _measure(
    app: Any, seeded: Seeded, requests: int, only: list[str] | None
) -> dict[str, dict[str, Any]]:
    """Each page's latencies; a page that does not answer 200 is recorded with its error."""
    out: dict[str, dict[str, Any]] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for page, url in _pages(seeded).items():
            if only and page not in only:
                continue
            times = []
            try:
                for index in range(requests + 1):
                    target = url()
                    started = time.perf_counter()
                    answer = await client.get(target)
                    elapsed = (time.perf_counter() - started) * 1000
                    if answer.status_code != 200:
                        raise RuntimeError(f"{target}: {answer.status_code} {answer.text[:200]}")
                    if index:  # the first warms the templates up
                        times.append(elapsed)
            except Exception as exc:  # recorded, and the other pages still measured
                out[page] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  {page:22s} FAILED: {out[page]['error']}")
                continue
            times.sort()
            out[page] = {
                "p50_ms": statistics.median(times),
                "p95_ms": times[max(0, int(len(times) * 0.95 + 0.5) - 1)],
                "max_ms": times[-1],
                "requests": len(times),
            }
            print(
                f"  {page:22s} p50 {out[page]['p50_ms']:7.1f} ms"
                f"  p95 {out[page]['p95_ms']:7.1f} ms  max {out[page]['max_ms']:7.1f} ms"
            )
    return out


async def run_backend(
    backend: str, events: int, requests: int, postgres_url: str, only: list[str] | None = None
) -> dict[str, Any]:
    import travel
    from chronik.http import create_app
    from chronik.runtime.service import Runtime
    from chronik.runtime.settings import Settings

    with tempfile.TemporaryDirectory(prefix="chronik-console-bench-") as tmp:
        schema = f"bench_console_{os.getpid()}"
        env: dict[str, Any] = {"service": "console-bench", "run": "http"}
        if backend == "sqlite":
            env["data_dir"] = Path(tmp)
        else:
            env["event_store_url"] = f"{postgres_url}?schema={schema}"
        settings = Settings(**env)
        runtime = Runtime(settings, [travel.spec()])
        seeded = Seeded()
        try:
            await runtime.start()
            started = time.perf_counter()
            template = await _template(runtime)
            if backend == "sqlite":
                path = runtime.database.path  # type: ignore[attr-defined]
                await asyncio.to_thread(_seed_sqlite, path, template, events, seeded)
            else:
                await asyncio.to_thread(
                    _seed_postgres, postgres_url, schema, template, events, seeded
                )
            await _seed_rest(runtime, seeded)
            seed_seconds = time.perf_counter() - started
            head = await runtime.store.head_position()
            print(f"{backend}: seeded {head:,} events in {seed_seconds:.0f} s (untimed)")
            app = create_app(runtime)
            pages = await _measure(app, seeded, requests, only)
        finally:
            await runtime.stop()
            if backend == "postgres":
                with psycopg.connect(postgres_url, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"backend": backend, "events": head, "seed_seconds": seed_seconds, "pages": pages}


def render(report: dict[str, Any]) -> str:
    """The measured figures as a markdown table: p95 (p50) in ms per page and backend."""
    results = report["results"]
    backends = [r["backend"] for r in results]
    head = "| page | " + " | ".join(f"{b} p95 (p50), ms" for b in backends) + " |"
    lines = [head, "|---|" + "--:|" * len(backends)]
    pages = list(results[0]["pages"])
    for page in pages:
        cells = []
        for result in results:
            m = result["pages"].get(page, {})
            if "error" in m:
                cells.append(f"failed: {m['error'][:60]}")
            else:
                mark = "" if m["p95_ms"] < report["target_p95_ms"] else " **over target**"
                cells.append(f"{m['p95_ms']:.1f} ({m['p50_ms']:.1f}){mark}")
        lines.append(f"| {page} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(report: dict[str, Any]) -> list[str]:
    """docs/benchmarks.md's section on the console (``benchmarks.report`` appends it when
    ``benchmarks/results/console.json`` exists)."""
    results = report["results"]
    before = " / ".join(f"{x:.2f}" for x in report["load_before"])
    after = " / ".join(f"{x:.2f}" for x in report["load_after"])
    seeded = ", ".join(
        f"{r['backend']} {r['events']:,} events (seeded in {r['seed_seconds']:.0f} s)"
        for r in results
    )
    return [
        "",
        "## Console pages on a million events",
        "",
        "Measured by `python -m benchmarks.console` (`benchmarks/results/console.json`, "
        f"run {report['run_at']}): {seeded}, in streams of {STREAM_LENGTH} events with "
        "their correlation and causation ids, an outbox row per event (all published but "
        f"{PENDING}), {len(PROJECTIONS)} projections with {PARKED_EACH} parked events each, "
        f"{DEAD_LETTERS} dead letters and {INSTANCES:,} trip bookings awaiting approval. "
        "The service's app (the `http` role only) answers "
        f"{report['requests_per_page']} requests per page, each for a random stream, event, "
        "correlation or instance, through httpx's ASGI transport: queries and rendering, "
        f"no network. Target: p95 < {report['target_p95_ms']:.0f} ms per page. Load average "
        f"(1 / 5 / 15 min) {before} before, {after} after, on {report['cpus']} CPUs shared "
        "with other work: read the figures as +-30%.",
        "",
        render(report),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CHRONIK_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--pages", default="", help="only these pages (comma list of names)")
    parser.add_argument(
        "--markdown-only", action="store_true", help="print the table of --out, measure nothing"
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        print("\n".join(section(json.loads(args.out.read_text()))))
        return
    load_before = os.getloadavg()
    results = [
        asyncio.run(
            run_backend(
                b.strip(),
                args.events,
                args.requests,
                args.postgres_url,
                [p.strip() for p in args.pages.split(",") if p.strip()] or None,
            )
        )
        for b in args.backends.split(",")
        if b.strip()
    ]
    report = {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "target_p95_ms": TARGET_MS,
        "requests_per_page": args.requests,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average before {load_before}, after {report['load_after']}; wrote {args.out}")
    print(render(report))


if __name__ == "__main__":
    main()
