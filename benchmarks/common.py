"""The interface shared by the benchmark runner, the worker and every system module.

Each system module (``benchmarks.systems.<module>``) provides::

    def run(workload: str, target: Target, size: Size) -> Measurement

where ``workload`` is one of the names in :data:`WORKLOADS`. Set-up (building the
1000-event aggregate, pre-filling events, taking the snapshot) is untimed; only the
part described by the workload is timed, with :func:`time.perf_counter`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Target:
    """Where a system stores its events for one measurement run."""

    backend: str  # "sqlite" | "postgres"
    sqlite_path: str  # file path of a fresh SQLite database (backend == "sqlite")
    postgres_url: str  # e.g. postgresql://postgres@127.0.0.1:5432/test
    postgres_schema: str  # a fresh, already-created schema name (backend == "postgres")


@dataclass(frozen=True)
class Size:
    """How much work each workload does."""

    create: int  # (a) new streams, one event each, one transaction each
    append: int  # (b) single-event appends to ONE stream, one transaction each, version check
    batches: int  # (c) new streams created with 100 events in one append/transaction
    load_events: int  # (d) the aggregate's length: 1000
    loads: int  # (d) how many times the 1000-event aggregate is loaded (no snapshot)
    snapshot_loads: int  # (d_load_snapshot) loads when a snapshot at the last version exists
    read_all: int  # (e) events pre-filled (untimed) then read back from position 0 and decoded
    writers: int  # (f) concurrent writers: 8
    per_writer: int  # (f) each writer creates this many new streams of one event
    catchup: int  # (g_catchup) events pre-filled (untimed) then projected from position 0
    tail_events: int  # (g_tail_p99_ms) single events appended one at a time to a live projection


FULL = Size(
    create=20_000,
    append=10_000,
    batches=300,
    load_events=1000,
    loads=50,
    snapshot_loads=500,
    read_all=100_000,
    writers=8,
    per_writer=2_500,
    catchup=100_000,
    tail_events=500,
)

# The same workloads, small enough that a whole quick run (3 systems x 9 workloads x
# 2 backends, one fresh process each) stays under 90 seconds on 2 cores. The largest
# shares are eventsourcing's catch-up (one transaction per event, about 6 s on
# PostgreSQL) and its live tail, whose wait() polls every 100 ms (about 11 s).
QUICK = Size(
    create=1_000,
    append=1_000,
    batches=50,
    load_events=1000,
    loads=20,
    snapshot_loads=300,
    read_all=20_000,
    writers=8,
    per_writer=100,
    catchup=10_000,
    tail_events=100,
)

SIZES: dict[str, Size] = {"quick": QUICK, "full": FULL}

# Events per batch in workload (c) and per stream when pre-filling (e).
BATCH_EVENTS = 100
# Page size when reading all events in workload (e) and when catching up in g_catchup.
READ_PAGE = 1_000
# The pause between two appends of g_tail_p99_ms, after the previous one was processed.
TAIL_SPACING_S = 0.005
# The read model of the g_* workloads: one row per event in a table of this name, keyed
# by "<stream id>:<version>" (see item_key()), with the event's amount.
ITEMS_TABLE = "items"


@dataclass(frozen=True)
class Measurement:
    """What one timed run produced.

    ``events`` counts what the timed part wrote, read or replayed: for ``d_load`` that is
    ``loads * load_events``; for ``d_load_snapshot`` one snapshot record per load, so
    ``events == ops == snapshot_loads``. The runner derives events/s and ops/s from it.

    A latency workload (unit ``"ms"``, e.g. ``g_tail_p99_ms``) sets ``p50_ms`` and ``p99_ms``;
    its ``events`` is the number of latency samples and ``seconds`` the wall time of the
    timed loop, and the runner reports no events/s for it.
    """

    events: int  # events written/read/replayed during the timed part
    seconds: float  # wall time of the timed part only (time.perf_counter)
    ops: int | None = None  # for d_load / d_load_snapshot: number of loads
    p50_ms: float | None = None  # latency workloads: median, in milliseconds
    p99_ms: float | None = None  # latency workloads: 99th percentile, in milliseconds
    note: str | None = None  # optional one-line remark shown under the report's table


class NotApplicable(Exception):
    """Raised by a system module for a workload it cannot do on a backend, with the reason.

    The runner records the row as not applicable (``n/a``), apart from real failures.
    """


class System(Protocol):
    """What a module under ``benchmarks.systems`` provides."""

    def run(self, workload: str, target: Target, size: Size) -> Measurement: ...


# The systems the runner knows, mapped to their module under ``benchmarks.systems``.
SYSTEMS: dict[str, str] = {
    "chronik": "chronik_system",
    "eventsourcing": "eventsourcing_peer",
    "raw": "raw",
}

BACKENDS: tuple[str, ...] = ("sqlite", "postgres")


@dataclass(frozen=True)
class Workload:
    """A registered workload: its name, a one-line description and the rate to report."""

    name: str
    title: str
    # "events": report events_per_s; "loads": report ops_per_s (loads per second);
    # "ms": a latency, report p99_ms (and p50_ms), lower is better.
    unit: Literal["events", "loads", "ms"] = "events"

    @property
    def lower_is_better(self) -> bool:
        return self.unit == "ms"


# The workload registry, in run order. Later workloads (e.g. "g_catchup") are added
# with register_workload(); each system module raises ValueError for names it does
# not implement, which the runner records as an error for that system.
WORKLOADS: dict[str, Workload] = {}


def register_workload(workload: Workload) -> Workload:
    if workload.name in WORKLOADS:
        raise ValueError(f"workload {workload.name!r} is already registered")
    WORKLOADS[workload.name] = workload
    return workload


register_workload(Workload("a_create", "new stream, 1 event, 1 transaction"))
register_workload(Workload("b_append", "append 1 event to one stream, version check"))
register_workload(Workload("c_batch", "new stream with 100 events in 1 transaction"))
register_workload(Workload("d_load", "load a 1,000-event aggregate, no snapshot", "loads"))
register_workload(
    Workload("d_load_snapshot", "load a 1,000-event aggregate from a snapshot", "loads")
)
register_workload(Workload("e_read_all", "read all events from position 0 and decode"))
register_workload(Workload("f_concurrent", "8 writer threads, new streams of 1 event"))
register_workload(
    Workload(
        "g_catchup",
        "catch a projection up from position 0: one row upsert per event, exactly-once checkpoint",
    )
)
register_workload(
    Workload(
        "g_tail_p99_ms",
        "live tail: append 1 event at a time to a caught-up projection,"
        " ms from the append's commit to the projection's commit",
        "ms",
    )
)


def unknown_workload(workload: str) -> ValueError:
    return ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")


# The same small payload everywhere: a short string, an int and a timestamp.
EVENT_LABEL = "item added"
EVENT_TYPE = "ItemAdded"


@dataclass(frozen=True)
class Payload:
    label: str
    amount: int
    at: datetime


def make_payload(n: int) -> Payload:
    return Payload(label=EVENT_LABEL, amount=n, at=datetime.now(UTC))


def item_key(stream_id: object, version: int) -> str:
    """The read-model key of g_catchup and g_tail_p99_ms: unique per event."""
    return f"{stream_id}:{version}"


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of values (fraction 0.5 for p50, 0.99 for p99)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def new_stream_id() -> str:
    """A realistic stream id: one random UUID per aggregate, as a string."""
    return str(uuid.uuid4())
