"""The interface shared by the benchmark runner, the worker and every system module.

Each system module (``benchmarks.systems.<module>``) provides::

    def run(workload: str, target: Target, size: Size) -> Measurement

where ``workload`` is one of the names in :data:`WORKLOADS`. Set-up (building the
1000-event aggregate, pre-filling events, taking the snapshot) is untimed; only the
part described by the workload is timed, with :func:`time.perf_counter`.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

# The brokers of the messaging backends ("nats", "rabbitmq"): each backend means
# "PostgreSQL event store + that broker". The URL can be overridden by environment.
DEFAULT_BROKER_URLS: dict[str, tuple[str, str]] = {
    "nats": ("CHRONIK_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
    "rabbitmq": ("CHRONIK_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1/"),
}


def broker_url(backend: str) -> str:
    """The broker URL of a messaging backend, or "" for the store-only backends."""
    entry = DEFAULT_BROKER_URLS.get(backend)
    if entry is None:
        return ""
    variable, default = entry
    return os.environ.get(variable, default)


@dataclass(frozen=True)
class Target:
    """Where a system stores its events for one measurement run."""

    backend: str  # "sqlite" | "postgres" | "nats" | "rabbitmq"
    sqlite_path: str  # file path of a fresh SQLite database (backend == "sqlite")
    postgres_url: str  # e.g. postgresql://postgres@127.0.0.1:5432/test
    # A fresh, already-created schema name (every backend but "sqlite"). A system that
    # needs a second database may create schemas named "<postgres_schema>_<suffix>":
    # the worker and the runner drop those with it.
    postgres_schema: str
    broker_url: str = ""  # "nats" / "rabbitmq": the broker next to the PostgreSQL store


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
    relay_drain: int  # (h_relay_drain) outbox messages pre-filled (untimed), then relayed
    e2e_seconds: int  # (h_e2e_p99_ms) how long E2E_RATE events/s are offered


FULL = Size(
    create=20_000,
    append=10_000,
    batches=300,
    load_events=1000,
    # Enough loads that the timed part lasts seconds, not a tenth of one: on a shared
    # machine one descheduling would otherwise decide the row.
    loads=200,
    snapshot_loads=2_000,
    read_all=100_000,
    writers=8,
    per_writer=2_500,
    catchup=100_000,
    tail_events=500,
    relay_drain=50_000,
    e2e_seconds=10,
)

# The same workloads, small enough for a smoke run: every row of `make bench`, one fresh
# process each, in about 2 minutes on 2 cores shared with other engineers' tests (118 s
# measured at a load average of 2.5). The largest shares are eventsourcing's catch-up
# (one transaction per event, about 10 s on PostgreSQL), its live tail, whose wait()
# polls every 100 ms (about 11 s), and h_e2e_p99_ms (3 s of offered load per broker).
# With run.py's 60 s per row, a run with a row that hangs still ends within 5 minutes.
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
    relay_drain=5_000,
    e2e_seconds=3,
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
# The offered load of h_e2e_p99_ms: appends per second, one event each, on a steady
# schedule by absolute time.
E2E_RATE = 1_000
# The window of the broker-only publisher (h_relay_drain's ceiling): messages in flight.
BROKER_WINDOW = 256


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


# The systems the runner knows, mapped to their module under ``benchmarks.systems``, or
# to "module:function" when one module measures several labelled variants.
SYSTEMS: dict[str, str] = {
    "chronik": "chronik_system",
    "eventsourcing": "eventsourcing_peer",
    "raw": "raw",
    "raw_decode": "raw:run_decode",
    "raw_copy": "raw:run_copy",
    "raw_wide": "raw_wide",
    "broker": "broker",
}

# How the report names each system.
SYSTEM_LABELS: dict[str, str] = {
    "chronik": "chronik",
    "eventsourcing": "eventsourcing",
    "raw": "raw",
    "raw_decode": "raw + decode",
    "raw_copy": "raw COPY",
    "raw_wide": "raw, same schema as chronik",
    "broker": "broker",
}

BACKENDS: tuple[str, ...] = ("sqlite", "postgres", "nats", "rabbitmq")

# The event-store workloads: every system with an event store, on SQLite and PostgreSQL.
# Some workloads add raw variants (raw_decode, raw_copy, raw_wide) to these.
STORE_SYSTEMS: tuple[str, ...] = ("chronik", "eventsourcing", "raw")
# The raw variants that are not the baseline of any target: for attribution only.
ATTRIBUTION_SYSTEMS: tuple[str, ...] = ("raw_copy", "raw_wide")
STORE_BACKENDS: tuple[str, ...] = ("sqlite", "postgres")
# The messaging workloads: chronik's outbox, relay and consumer on PostgreSQL with a
# broker, and the broker's own client alone as the ceiling.
MESSAGING_SYSTEMS: tuple[str, ...] = ("chronik", "broker")
MESSAGING_BACKENDS: tuple[str, ...] = ("nats", "rabbitmq")


@dataclass(frozen=True)
class Workload:
    """A registered workload: its name, a one-line description and the rate to report."""

    name: str
    title: str
    # "events": report events_per_s; "loads": report ops_per_s (loads per second);
    # "ms": a latency, report p99_ms (and p50_ms), lower is better.
    unit: Literal["events", "loads", "ms"] = "events"
    # Where it runs: the runner measures only these backends and systems.
    backends: tuple[str, ...] = STORE_BACKENDS
    systems: tuple[str, ...] = STORE_SYSTEMS
    # A latency measured under a steady offered load (events/s): its row also reports
    # the achieved rate (events / seconds of the timed part) as events_per_s.
    offered_per_s: int | None = None
    # The goal the report checks, if any: the least chronik / ceiling rate ratio, or
    # the most p99 in ms.
    target_ratio: float | None = None
    target_p99_ms: float | None = None
    # The event-store workloads: the raw system the fair comparison is against ("raw", or
    # "raw_decode" for the reads), and the least chronik / baseline ratio per backend
    # (issue 14's targets).
    baseline: str = "raw"
    targets: Mapping[str, float] = field(default_factory=dict)
    # Systems that run on only some of the backends: system -> those backends.
    only_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A CPU-only variant of another workload: durability off, reported in its own table.
    fsync_off: bool = False

    @property
    def lower_is_better(self) -> bool:
        return self.unit == "ms"

    def applies_to(self, backend: str, system: str) -> bool:
        if system in self.only_on and backend not in self.only_on[system]:
            return False
        return backend in self.backends and system in self.systems


# The workload registry, in run order. Later workloads (e.g. "g_catchup") are added
# with register_workload(); each system module raises ValueError for names it does
# not implement, which the runner records as an error for that system.
WORKLOADS: dict[str, Workload] = {}


def register_workload(workload: Workload) -> Workload:
    if workload.name in WORKLOADS:
        raise ValueError(f"workload {workload.name!r} is already registered")
    WORKLOADS[workload.name] = workload
    return workload


_WIDE = (*STORE_SYSTEMS, "raw_wide")
_READS = (*STORE_SYSTEMS, "raw_decode", "raw_wide")
register_workload(
    Workload(
        "a_create",
        "new stream, 1 event, 1 transaction",
        systems=_WIDE,
        targets={"sqlite": 0.8, "postgres": 0.8},
    )
)
register_workload(
    Workload(
        "b_append",
        "append 1 event to one stream, version check",
        systems=_WIDE,
        targets={"sqlite": 0.8, "postgres": 0.8},
    )
)
register_workload(
    Workload(
        "a_create_fsync_off",
        "a_create with fsync off (SQLite synchronous=OFF, PostgreSQL synchronous_commit=off):"
        " CPU only, not the durability chronik ships",
        systems=("chronik", "raw"),
        targets={"sqlite": 0.5, "postgres": 0.6},
        fsync_off=True,
    )
)
register_workload(
    Workload(
        "b_append_fsync_off",
        "b_append with fsync off, as a_create_fsync_off",
        systems=("chronik", "raw"),
        targets={"sqlite": 0.5, "postgres": 0.6},
        fsync_off=True,
    )
)
register_workload(
    Workload(
        "c_batch",
        "new stream with 100 events in 1 transaction",
        systems=(*_WIDE, "raw_copy"),
        targets={"sqlite": 0.7, "postgres": 0.8},
        only_on={"raw_copy": ("postgres",)},
    )
)
register_workload(
    Workload(
        "d_load",
        "load a 1,000-event aggregate, no snapshot",
        "loads",
        systems=_READS,
        baseline="raw_decode",
        targets={"sqlite": 0.6, "postgres": 0.6},
    )
)
register_workload(
    Workload(
        "d_load_snapshot",
        "load a 1,000-event aggregate from a snapshot",
        "loads",
        systems=_READS,
        baseline="raw_decode",
    )
)
register_workload(
    Workload(
        "e_read_all",
        "read all events from position 0 and decode",
        systems=_READS,
        baseline="raw_decode",
        targets={"sqlite": 0.6, "postgres": 0.6},
    )
)
register_workload(
    Workload(
        "f_concurrent",
        "8 writers, new streams of 1 event",
        systems=_WIDE,
        targets={"sqlite": 1.5, "postgres": 1.2},
    )
)
register_workload(
    Workload(
        "g_catchup",
        "catch a projection up from position 0: one row upsert per event, exactly-once checkpoint",
    )
)
register_workload(
    Workload(
        "g_catchup_filtered",
        "catch a projection up over a store where its type is 5% of the events, filtered"
        " through the type index (the note: unfiltered and without the index, same store)",
        systems=("chronik",),
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
register_workload(
    Workload(
        "h_relay_drain",
        "drain a pre-filled outbox to the broker (one ~380-byte CloudEvents message per event);"
        " the broker system publishes as many messages of the same size, 256 in flight",
        backends=MESSAGING_BACKENDS,
        systems=MESSAGING_SYSTEMS,
        target_ratio=0.5,
    )
)
register_workload(
    Workload(
        "h_e2e_p99_ms",
        f"end to end at {E2E_RATE:,} events/s offered: ms from the producer's append commit"
        " (outbox) through relay, broker and consumer to the consumer's append commit (inbox)",
        "ms",
        backends=MESSAGING_BACKENDS,
        systems=MESSAGING_SYSTEMS,
        offered_per_s=E2E_RATE,
        target_p99_ms=50.0,
    )
)
register_workload(
    Workload(
        "h_e2e_split_p99_ms",
        f"h_e2e_p99_ms as deployed: producer, `chronik relay` and consumer in three processes"
        f" ({E2E_RATE:,} events/s offered; ms from the producer's append commit to the"
        " consumer's append commit)",
        "ms",
        backends=MESSAGING_BACKENDS,
        systems=MESSAGING_SYSTEMS,
        offered_per_s=E2E_RATE,
        target_p99_ms=50.0,
    )
)


# h_consume_drain: the source streams the pre-filled messages come from.
CONSUME_STREAMS = {"full": 1_000, "quick": 100}
register_workload(
    Workload(
        "h_consume_drain",
        "a consumer drains a pre-filled JetStream stream (h_relay_drain's count of messages"
        " from 1,000 source streams) into effects: one append with its inbox mark per message;"
        " the note gives the same appends without broker or inbox, and the ratio",
        backends=("nats",),
        systems=MESSAGING_SYSTEMS,
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
