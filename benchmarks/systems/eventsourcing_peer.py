"""The ``eventsourcing`` package (9.5.6) doing the same work, the way its users would.

An ``Aggregate`` subclass with ``@event`` methods, an ``Application`` subclass, ``app.save()``
and ``app.repository.get()``, configured by environment variables set in this process
before the application is constructed:

- SQLite: ``PERSISTENCE_MODULE=eventsourcing.sqlite`` and ``SQLITE_DBNAME``. The package
  switches every file database to WAL itself and leaves ``synchronous`` at SQLite's
  default, FULL; :func:`_check_sqlite_durability` verifies both on its own connection.
- PostgreSQL: ``PERSISTENCE_MODULE=eventsourcing.postgres`` with ``POSTGRES_DBNAME``,
  ``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_USER``, ``POSTGRES_PASSWORD`` and
  ``POSTGRES_SCHEMA``, through compiled psycopg 3 (checked).

Each ``save()`` is one transaction; its optimistic-concurrency check is the primary key
``(originator_id, originator_version)``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.system import NotificationLogReader
from psycopg.conninfo import conninfo_to_dict

from benchmarks.common import (
    BATCH_EVENTS,
    READ_PAGE,
    Measurement,
    Size,
    Target,
    make_payload,
    unknown_workload,
)

# Events per save when pre-filling (e): 50 new aggregates of 100 events in each save.
_PREFILL_AGGREGATES_PER_SAVE = 50


class Stream(Aggregate):
    """An aggregate whose events carry the shared payload: a short string, an int, a time."""

    @event("Created")
    def __init__(self, label: str, amount: int, at: datetime) -> None:
        self.label = label
        self.total = amount
        self.at = at
        self.count = 1

    @event("ItemAdded")
    def add_item(self, label: str, amount: int, at: datetime) -> None:
        self.label = label
        self.total += amount
        self.at = at
        self.count += 1


def _new_stream(n: int) -> Stream:
    p = make_payload(n)
    return Stream(label=p.label, amount=p.amount, at=p.at)


def _add_item(stream: Stream, n: int) -> None:
    p = make_payload(n)
    stream.add_item(label=p.label, amount=p.amount, at=p.at)


class BenchApplication(Application[UUID]):
    # Read the notification log in pages of READ_PAGE (the default section is 10).
    log_section_size = READ_PAGE


def _snapshotting_application(interval: int) -> type[BenchApplication]:
    class SnapshottingBenchApplication(BenchApplication):
        snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Stream: interval}

    return SnapshottingBenchApplication


def _configure_environment(target: Target) -> None:
    """Set the package's environment variables in this (fresh, single-use) process."""
    if target.backend == "sqlite":
        os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
        os.environ["SQLITE_DBNAME"] = target.sqlite_path
    elif target.backend == "postgres":
        if psycopg.pq.__impl__ not in ("c", "binary"):
            raise RuntimeError(f"psycopg is not compiled here: {psycopg.pq.__impl__}")
        params = conninfo_to_dict(target.postgres_url)
        os.environ["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
        os.environ["POSTGRES_DBNAME"] = str(params.get("dbname", "postgres"))
        os.environ["POSTGRES_HOST"] = str(params.get("host", "127.0.0.1"))
        os.environ["POSTGRES_PORT"] = str(params.get("port", "5432"))
        os.environ["POSTGRES_USER"] = str(params.get("user", "postgres"))
        os.environ["POSTGRES_PASSWORD"] = str(params.get("password", ""))
        os.environ["POSTGRES_SCHEMA"] = target.postgres_schema
    else:
        raise ValueError(f"unknown backend {target.backend!r}")


def _check_sqlite_durability(app: Application[UUID]) -> None:
    """Fail unless the package's own SQLite connections are in WAL mode, synchronous=FULL."""
    recorder = app.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal_mode = str(cursor.fetchone()[0]).lower()
        cursor.execute("PRAGMA synchronous")
        synchronous = int(cursor.fetchone()[0])
    if journal_mode != "wal" or synchronous != 2:  # 2 == FULL
        raise RuntimeError(
            f"eventsourcing's SQLite is not WAL + synchronous=FULL: "
            f"journal_mode={journal_mode}, synchronous={synchronous}"
        )


def _a_create(app: BenchApplication, size: Size) -> Measurement:
    start = time.perf_counter()
    for n in range(size.create):
        app.save(_new_stream(n))
    return Measurement(events=size.create, seconds=time.perf_counter() - start)


def _b_append(app: BenchApplication, size: Size) -> Measurement:
    stream = _new_stream(0)
    app.save(stream)
    start = time.perf_counter()
    for n in range(size.append):
        _add_item(stream, n)
        app.save(stream)
    seconds = time.perf_counter() - start
    stored: Stream = app.repository.get(stream.id)
    if stored.version != size.append + 1:
        raise RuntimeError("not every append was stored")
    return Measurement(events=size.append, seconds=seconds)


def _c_batch(app: BenchApplication, size: Size) -> Measurement:
    start = time.perf_counter()
    for _ in range(size.batches):
        stream = _new_stream(0)
        for n in range(1, BATCH_EVENTS):
            _add_item(stream, n)
        app.save(stream)
    return Measurement(events=size.batches * BATCH_EVENTS, seconds=time.perf_counter() - start)


def _long_stream(app: BenchApplication, length: int) -> UUID:
    stream = _new_stream(0)
    for n in range(1, length):
        _add_item(stream, n)
    app.save(stream)
    return stream.id


def _count_decoded(app: BenchApplication, body: Callable[[], object]) -> int:
    """How many stored records the application's mapper decodes while running body."""
    mapper = app.mapper
    original = mapper.to_domain_event
    decoded = 0

    def counting(stored: StoredEvent) -> DomainEventProtocol[UUID]:
        nonlocal decoded
        decoded += 1
        return original(stored)

    mapper.to_domain_event = counting  # type: ignore[method-assign,assignment]
    try:
        body()
    finally:
        del mapper.to_domain_event
    return decoded


def _d_load(app: BenchApplication, size: Size) -> Measurement:
    stream_id = _long_stream(app, size.load_events)
    decoded = _count_decoded(app, lambda: app.repository.get(stream_id))
    if decoded != size.load_events:
        raise RuntimeError(f"expected to replay {size.load_events} events, decoded {decoded}")
    start = time.perf_counter()
    for _ in range(size.loads):
        stream: Stream = app.repository.get(stream_id)
    seconds = time.perf_counter() - start
    if stream.version != size.load_events:
        raise RuntimeError(f"loaded version {stream.version}, expected {size.load_events}")
    return Measurement(events=size.loads * size.load_events, seconds=seconds, ops=size.loads)


def _d_load_snapshot(app: BenchApplication, size: Size) -> Measurement:
    # The application snapshots every load_events versions, so saving the long
    # stream in setup takes a snapshot at its last version.
    stream_id = _long_stream(app, size.load_events)
    if app.snapshots is None:
        raise RuntimeError("snapshotting is not enabled")
    snapshots = list(app.snapshots.get(stream_id, desc=True, limit=1))
    if not snapshots or snapshots[0].originator_version != size.load_events:
        raise RuntimeError("no snapshot at the last version")
    # get() must decode the snapshot and nothing else.
    decoded = _count_decoded(app, lambda: app.repository.get(stream_id))
    if decoded != 1:
        raise RuntimeError(f"get() decoded {decoded} records, not just the snapshot")
    start = time.perf_counter()
    for _ in range(size.snapshot_loads):
        stream: Stream = app.repository.get(stream_id)
    seconds = time.perf_counter() - start
    if stream.version != size.load_events or stream.count != size.load_events:
        raise RuntimeError(f"loaded version {stream.version}, expected {size.load_events}")
    # One snapshot record read per load.
    return Measurement(events=size.snapshot_loads, seconds=seconds, ops=size.snapshot_loads)


def _e_read_all(app: BenchApplication, size: Size) -> Measurement:
    written = 0
    while written < size.read_all:
        streams: list[Stream] = []
        while written < size.read_all and len(streams) < _PREFILL_AGGREGATES_PER_SAVE:
            stream = _new_stream(0)
            length = min(BATCH_EVENTS, size.read_all - written)
            for n in range(1, length):
                _add_item(stream, n)
            streams.append(stream)
            written += length
        app.save(*streams)
    read = 0
    reader = NotificationLogReader(app.notification_log, section_size=READ_PAGE)
    to_domain_event = app.mapper.to_domain_event
    start = time.perf_counter()
    for notifications in reader.select(start=1):
        for notification in notifications:
            to_domain_event(notification)
        read += len(notifications)
    seconds = time.perf_counter() - start
    if read != size.read_all:
        raise RuntimeError(f"read {read} events, expected {size.read_all}")
    return Measurement(events=read, seconds=seconds)


def _f_concurrent(app: BenchApplication, size: Size) -> Measurement:
    # One application shared by the writer threads, as in a threaded web server.
    barrier = threading.Barrier(size.writers + 1)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            barrier.wait()
            for n in range(size.per_writer):
                app.save(_new_stream(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(size.writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return Measurement(events=size.writers * size.per_writer, seconds=seconds)


_WORKLOADS: dict[str, Callable[[BenchApplication, Size], Measurement]] = {
    "a_create": _a_create,
    "b_append": _b_append,
    "c_batch": _c_batch,
    "d_load": _d_load,
    "d_load_snapshot": _d_load_snapshot,
    "e_read_all": _e_read_all,
    "f_concurrent": _f_concurrent,
}


def run(workload: str, target: Target, size: Size) -> Measurement:
    try:
        body = _WORKLOADS[workload]
    except KeyError:
        raise unknown_workload(workload) from None
    _configure_environment(target)
    if workload == "d_load_snapshot":
        app: BenchApplication = _snapshotting_application(size.load_events)()
    else:
        app = BenchApplication()
    try:
        _check_sqlite_durability(app)
        return body(app, size)
    finally:
        app.close()
