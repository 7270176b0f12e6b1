"""The interface shared by the benchmark runner, the worker and every system module.

Each system module (``benchmarks.systems.<module>``) provides::

    def run(workload: str, target: Target, size: Size) -> Measurement

where ``workload`` is one of the names in :data:`WORKLOADS`. Set-up (building the
1000-event aggregate, pre-filling events, taking the snapshot) is untimed; only the
part described by the workload is timed, with :func:`time.perf_counter`.
"""

from __future__ import annotations

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
)

# The same workloads, small enough that a whole quick run (3 systems x 7 workloads x
# 2 backends, one fresh process each) stays well under 90 seconds on 2 cores.
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
)

SIZES: dict[str, Size] = {"quick": QUICK, "full": FULL}

# Events per batch in workload (c) and per stream when pre-filling (e).
BATCH_EVENTS = 100
# Page size when reading all events in workload (e).
READ_PAGE = 1_000


@dataclass(frozen=True)
class Measurement:
    """What one timed run produced.

    ``events`` counts what the timed part wrote, read or replayed: for ``d_load`` that is
    ``loads * load_events``; for ``d_load_snapshot`` one snapshot record per load, so
    ``events == ops == snapshot_loads``. The runner derives events/s and ops/s from it.
    """

    events: int  # events written/read/replayed during the timed part
    seconds: float  # wall time of the timed part only (time.perf_counter)
    ops: int | None = None  # for d_load / d_load_snapshot: number of loads


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
    # "events": report events_per_s; "loads": report ops_per_s (loads per second).
    unit: Literal["events", "loads"] = "events"


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


def new_stream_id() -> str:
    """A realistic stream id: one random UUID per aggregate, as a string."""
    return str(uuid.uuid4())
