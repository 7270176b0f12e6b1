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

The projection workloads (``g_catchup``, ``g_tail_p99_ms``) use the package's own idiom
(``EventCountersView`` in ``eventsourcing/tests/projection.py``): a view class that is a
tracking recorder and, in one ``datastore.transaction(commit=True)``, records the
tracking object with ``_insert_tracking()`` and upserts one row into ``items``; and a
``Projection`` whose ``process_event()`` calls it. Which path each backend takes:

- PostgreSQL: ``PostgresItemsView`` (a ``PostgresTrackingRecorder``) run by
  ``ProjectionRunner``, which subscribes to the application (LISTEN/NOTIFY plus pulls of
  500 notifications) and processes events in its own thread; the benchmark blocks with
  ``runner.wait(notification_id)``.
- SQLite: the package has no subscriptions there (``SQLiteApplicationRecorder.subscribe``
  raises ``NotImplementedError``), so ``ProjectionRunner`` cannot run. ``g_catchup`` does
  what a follower does: it pages through ``app.recorder.select_notifications()``, maps
  each notification with ``app.mapper.to_domain_event`` and calls the same projection
  on ``SQLiteItemsView`` (a ``SQLiteTrackingRecorder``), one transaction per event.
  ``g_tail_p99_ms`` is not applicable on SQLite.

``g_catchup``'s clock starts just before the runner (or the follower's application and
view) is constructed and stops at the view's commit of the last event. The moment an
event has been processed is taken in the view, right after its transaction commits:
``runner.wait()`` polls the tracking table with a back-off that starts at 100 ms (up to
800 ms), so its return time says more about the poll than about the projection. The
benchmark still blocks in ``runner.wait()``, and the tail puts how long it took in the
measurement's note.
"""

from __future__ import annotations

import os
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Protocol, cast
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from eventsourcing.persistence import InfrastructureFactory, StoredEvent, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore, SQLiteTrackingRecorder
from eventsourcing.system import NotificationLogReader
from eventsourcing.utils import Environment
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from benchmarks.common import (
    BATCH_EVENTS,
    ITEMS_TABLE,
    READ_PAGE,
    TAIL_SPACING_S,
    Measurement,
    NotApplicable,
    Size,
    Target,
    item_key,
    make_payload,
    percentile,
    unknown_workload,
)

# Events per save when pre-filling (e) and (g_catchup): 50 new aggregates of 100 events in
# each save.
_PREFILL_AGGREGATES_PER_SAVE = 50
# How long the projection workloads wait at most for the projection (the runner's worker
# timeout, 60 s quick and 600 s full, kills the worker first).
_WAIT_TIMEOUT_S = 900.0


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


def _environment(target: Target) -> dict[str, str]:
    """The package's settings for the target, as environment variables."""
    if target.backend == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": target.sqlite_path}
    if target.backend == "postgres":
        if psycopg.pq.__impl__ not in ("c", "binary"):
            raise RuntimeError(f"psycopg is not compiled here: {psycopg.pq.__impl__}")
        params = conninfo_to_dict(target.postgres_url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
            "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(params.get("port", "5432")),
            "POSTGRES_USER": str(params.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_SCHEMA": target.postgres_schema,
        }
    raise ValueError(f"unknown backend {target.backend!r}")


def _configure_environment(target: Target) -> dict[str, str]:
    """Set the package's environment variables in this (fresh, single-use) process."""
    env = _environment(target)
    os.environ.update(env)
    return env


def _check_sqlite_durability(app: Application[UUID]) -> None:
    """Fail unless the package's own SQLite connections are in WAL mode, synchronous=FULL."""
    recorder = app.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return
    _check_sqlite_datastore(recorder.datastore)


def _check_sqlite_datastore(datastore: SQLiteDatastore) -> None:
    with datastore.transaction(commit=False) as cursor:
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


def _prefill(app: BenchApplication, total: int) -> int:
    """Write total events as new streams of 100, 50 streams per save; the last notification id."""
    written = 0
    last_id = 0
    while written < total:
        streams: list[Stream] = []
        while written < total and len(streams) < _PREFILL_AGGREGATES_PER_SAVE:
            stream = _new_stream(0)
            length = min(BATCH_EVENTS, total - written)
            for n in range(1, length):
                _add_item(stream, n)
            streams.append(stream)
            written += length
        recordings = app.save(*streams)
        last_id = recordings[-1].notification.id
    return last_id


def _e_read_all(app: BenchApplication, size: Size) -> Measurement:
    _prefill(app, size.read_all)
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


# ---------------------------------------------------------------------------------------
# Projections (g_catchup, g_tail_p99_ms)


class _HasAmount(Protocol):
    amount: int


class ItemsView(TrackingRecorder):
    """The read model: ``items(key, amount)``, one row per event, with exactly-once tracking."""

    # (notification id, time.perf_counter()) of the last event whose transaction committed.
    last_processed: tuple[int, float] = (0, 0.0)

    @abstractmethod
    def upsert_item(self, key: str, amount: int, tracking: Tracking) -> None:
        """Upsert the row and record the tracking object, in one transaction."""

    @abstractmethod
    def count_items(self) -> int:
        pass

    @abstractmethod
    def close_view(self) -> None:
        """Close the view's own connections."""


class PostgresItemsView(PostgresTrackingRecorder, ItemsView):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        table = Identifier(self.datastore.schema, ITEMS_TABLE)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (key text PRIMARY KEY, amount bigint NOT NULL)"
            ).format(table)
        )
        self.upsert_item_statement = SQL(
            "INSERT INTO {0} (key, amount) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET amount = EXCLUDED.amount"
        ).format(table)
        self.count_items_statement = SQL("SELECT count(*) AS n FROM {0}").format(table)

    def upsert_item(self, key: str, amount: int, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first, as the package's views do: a duplicate fails before the work.
            self._insert_tracking(curs, tracking)
            curs.execute(self.upsert_item_statement, (key, amount), prepare=True)
        self.last_processed = (tracking.notification_id, time.perf_counter())

    def count_items(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.count_items_statement)
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    def close_view(self) -> None:
        self.datastore.close()


class SQLiteItemsView(SQLiteTrackingRecorder, ItemsView):
    _upsert_item = (
        f"INSERT INTO {ITEMS_TABLE} (key, amount) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET amount = excluded.amount"
    )

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {ITEMS_TABLE} "
            "(key TEXT PRIMARY KEY, amount INTEGER NOT NULL)"
        )
        return statements

    def upsert_item(self, key: str, amount: int, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._insert_tracking(c, tracking)
            c.execute(self._upsert_item, (key, amount))
        self.last_processed = (tracking.notification_id, time.perf_counter())

    def count_items(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) FROM {ITEMS_TABLE}")
            row = c.fetchone()
        return int(row[0]) if row else 0

    def close_view(self) -> None:
        self.datastore.close()


class ItemsProjection(Projection[ItemsView]):
    name = "items"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.upsert_item(
            item_key(domain_event.originator_id, domain_event.originator_version),
            cast(_HasAmount, domain_event).amount,
            tracking,
        )


def _runner(env: dict[str, str]) -> ProjectionRunner[BenchApplication, ItemsView]:
    return ProjectionRunner(
        application_class=BenchApplication,
        projection_class=ItemsProjection,
        view_class=PostgresItemsView,
        env=env,
    )


def _check_caught_up(view: ItemsView, app_name: str, last_id: int, expected_rows: int) -> float:
    """When the view committed last_id; fail unless it did and holds expected_rows rows."""
    done_id, done_at = view.last_processed
    if done_id != last_id or view.max_tracking_id(app_name) != last_id:
        raise RuntimeError(f"the projection stopped at {done_id}, not at {last_id}")
    rows = view.count_items()
    if rows != expected_rows:
        raise RuntimeError(f"the projection wrote {rows} rows, expected {expected_rows}")
    return done_at


def _g_catchup(
    app: BenchApplication, size: Size, target: Target, env: dict[str, str]
) -> Measurement:
    last_id = _prefill(app, size.catchup)
    if target.backend == "postgres":
        start = time.perf_counter()
        with _runner(env) as runner:
            try:
                runner.wait(last_id, timeout=_WAIT_TIMEOUT_S)
                done_at = _check_caught_up(runner.view, runner.app.name, last_id, size.catchup)
            finally:
                runner.view.close_view()
        return Measurement(events=size.catchup, seconds=done_at - start)

    # SQLite: a follower paging through the notification log (no subscriptions here).
    start = time.perf_counter()
    upstream = BenchApplication(env)
    factory = InfrastructureFactory[SQLiteItemsView].construct(
        env=Environment(ItemsProjection.name, env)
    )
    view = factory.tracking_recorder(SQLiteItemsView)
    try:
        projection = ItemsProjection(view=view)
        name = upstream.name
        select = upstream.recorder.select_notifications
        to_domain_event = upstream.mapper.to_domain_event
        position = view.max_tracking_id(name) or 0
        while True:
            notifications = select(start=position, limit=READ_PAGE, inclusive_of_start=False)
            if not notifications:
                break
            for notification in notifications:
                projection.process_event(
                    to_domain_event(notification), Tracking(name, notification.id)
                )
            position = notifications[-1].id
        done_at = _check_caught_up(view, name, last_id, size.catchup)
        _check_sqlite_datastore(view.datastore)
    finally:
        upstream.close()
        factory.close()
    return Measurement(events=size.catchup, seconds=done_at - start)


def _g_tail(app: BenchApplication, size: Size, target: Target, env: dict[str, str]) -> Measurement:
    if target.backend != "postgres":
        raise NotApplicable(
            "eventsourcing has no live subscription on SQLite (its SQLite recorder's"
            " subscribe() raises NotImplementedError), so its ProjectionRunner cannot run"
        )
    with _runner(env) as runner:
        try:
            view = runner.view
            # Start caught up: one stream processed before the timed loop.
            stream = _new_stream(0)
            recordings = app.save(stream)
            runner.wait(recordings[-1].notification.id, timeout=_WAIT_TIMEOUT_S)
            processed: list[float] = []
            waited: list[float] = []
            start = time.perf_counter()
            for n in range(size.tail_events):
                time.sleep(TAIL_SPACING_S)
                _add_item(stream, n)
                recordings = app.save(stream)
                appended = time.perf_counter()
                notification_id = recordings[-1].notification.id
                runner.wait(notification_id, timeout=_WAIT_TIMEOUT_S)
                returned = time.perf_counter()
                done_id, done_at = view.last_processed
                if done_id != notification_id:
                    raise RuntimeError(f"waited for {notification_id}, last processed {done_id}")
                processed.append((done_at - appended) * 1000)
                waited.append((returned - appended) * 1000)
            seconds = time.perf_counter() - start
            _check_caught_up(view, runner.app.name, notification_id, size.tail_events + 1)
        finally:
            view.close_view()
    note = (
        f"latency to the view's commit; runner.wait() itself returned after p50"
        f" {percentile(waited, 0.5):.1f} ms, p99 {percentile(waited, 0.99):.1f} ms (it polls"
        " the tracking table, the first time after 100 ms)"
    )
    return Measurement(
        events=size.tail_events,
        seconds=seconds,
        p50_ms=percentile(processed, 0.5),
        p99_ms=percentile(processed, 0.99),
        note=note,
    )


_PROJECTION_WORKLOADS: dict[
    str, Callable[[BenchApplication, Size, Target, dict[str, str]], Measurement]
] = {
    "g_catchup": _g_catchup,
    "g_tail_p99_ms": _g_tail,
}


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
    if workload not in _WORKLOADS and workload not in _PROJECTION_WORKLOADS:
        raise unknown_workload(workload)
    env = _configure_environment(target)
    if workload == "d_load_snapshot":
        app: BenchApplication = _snapshotting_application(size.load_events)()
    else:
        app = BenchApplication()
    try:
        _check_sqlite_durability(app)
        if workload in _PROJECTION_WORKLOADS:
            return _PROJECTION_WORKLOADS[workload](app, size, target, env)
        return _WORKLOADS[workload](app, size)
    finally:
        app.close()
