"""The raw drivers on a table shaped like chronik's: "raw, same schema as chronik".

This was the benchmark's raw baseline until issue 14, kept as a labelled row (workloads
a to f) so that a change of ratio can be attributed; the baseline is now ``raw.py``, on a
minimal table. What this one does that the minimal one does not: ten columns with a
second unique index on a random UUIDv4 id (every insert lands at a random point of it,
where chronik's UUIDv7 ids land at the index's edge); rows built (uuid4, timestamp, JSON
encoding) inside the timed loop, all 100 of a ``c_batch`` batch included; ``SELECT *`` of
eleven columns on reads (on PostgreSQL a UUID and a datetime object per row), with no
decoding of the payload; ``d_load_snapshot`` reads the snapshot alone.

SQLite: the stdlib ``sqlite3`` in WAL mode with ``PRAGMA synchronous=FULL``, one explicit
``BEGIN IMMEDIATE``/``INSERT``/``COMMIT`` per transaction. PostgreSQL: compiled psycopg 3
(sync), prepared statements, an autocommit ``INSERT`` per event for (a), (b) and (f) and
one transaction with ``executemany`` for (c). The expected-version check of (b) is the
unique ``(stream_id, version)`` constraint: the append inserts ``expected + 1`` and a
conflict would fail the transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import psycopg
from psycopg import sql

from benchmarks.common import (
    BATCH_EVENTS,
    EVENT_LABEL,
    EVENT_TYPE,
    READ_PAGE,
    Measurement,
    Payload,
    Size,
    Target,
    make_payload,
    new_stream_id,
    unknown_workload,
)

Row = tuple[Any, ...]

_COLUMNS = (
    "stream_id, version, id, type, schema_version, recorded_at, data, correlation_id, causation_id"
)

_SQLITE_DDL = (
    """
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        data BLOB NOT NULL,
        correlation_id TEXT,
        causation_id TEXT,
        UNIQUE (stream_id, version),
        UNIQUE (id)
    )
    """,
    """
    CREATE TABLE snapshots (
        stream_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        data BLOB NOT NULL
    )
    """,
)

_POSTGRES_DDL = (
    """
    CREATE TABLE events (
        position bigserial PRIMARY KEY,
        stream_id text NOT NULL,
        version integer NOT NULL,
        id uuid NOT NULL,
        type text NOT NULL,
        schema_version integer NOT NULL,
        recorded_at timestamptz NOT NULL,
        data bytea NOT NULL,
        correlation_id text,
        causation_id text,
        UNIQUE (stream_id, version),
        UNIQUE (id)
    )
    """,
    """
    CREATE TABLE snapshots (
        stream_id text PRIMARY KEY,
        version integer NOT NULL,
        type text NOT NULL,
        recorded_at timestamptz NOT NULL,
        data bytea NOT NULL
    )
    """,
)

_json_encode = msgspec.json.Encoder().encode


class _Store(Protocol):
    """One connection to the raw event table."""

    def create_tables(self) -> None: ...

    def make_row(self, stream_id: str, version: int, payload: Payload) -> Row: ...

    def insert_one(self, row: Row) -> None: ...

    def insert_many(self, rows: Sequence[Row]) -> None: ...

    def prefill(self, rows: Sequence[Row]) -> None: ...

    def put_snapshot(self, stream_id: str, version: int, state: dict[str, Any]) -> None: ...

    def select_stream(self, stream_id: str) -> list[Row]: ...

    def select_snapshot(self, stream_id: str) -> Row | None: ...

    def select_page(self, after: int, limit: int) -> list[Row]: ...

    def close(self) -> None: ...


class _SQLiteStore:
    _insert = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    _select_stream = "SELECT * FROM events WHERE stream_id = ? ORDER BY version"
    _select_snapshot = "SELECT * FROM snapshots WHERE stream_id = ?"
    _select_page = "SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?"

    def __init__(self, path: str) -> None:
        # isolation_level=None: the module issues no implicit BEGIN; we issue our own.
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=60.0
        )
        (mode,) = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
        self._conn.execute("PRAGMA synchronous=FULL")
        (sync,) = self._conn.execute("PRAGMA synchronous").fetchone()
        if str(mode).lower() != "wal" or sync != 2:
            raise RuntimeError(f"SQLite is not in WAL + synchronous=FULL: {mode}, {sync}")
        self._cur = self._conn.cursor()

    def create_tables(self) -> None:
        for statement in _SQLITE_DDL:
            self._cur.execute(statement)

    def make_row(self, stream_id: str, version: int, payload: Payload) -> Row:
        event_id = str(uuid.uuid4())
        recorded_at = datetime.now(UTC).isoformat()
        data = _json_encode(payload)
        return (stream_id, version, event_id, EVENT_TYPE, 1, recorded_at, data, event_id, None)

    def _transaction(self, body: Callable[[], object]) -> None:
        cur = self._cur
        cur.execute("BEGIN IMMEDIATE")
        try:
            body()
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def insert_one(self, row: Row) -> None:
        self._transaction(lambda: self._cur.execute(self._insert, row))

    def insert_many(self, rows: Sequence[Row]) -> None:
        self._transaction(lambda: self._cur.executemany(self._insert, rows))

    def prefill(self, rows: Sequence[Row]) -> None:
        self.insert_many(rows)

    def put_snapshot(self, stream_id: str, version: int, state: dict[str, Any]) -> None:
        row = (stream_id, version, "Snapshot", datetime.now(UTC).isoformat(), _json_encode(state))
        self._transaction(
            lambda: self._cur.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)", row)
        )

    def select_stream(self, stream_id: str) -> list[Row]:
        return self._cur.execute(self._select_stream, (stream_id,)).fetchall()

    def select_snapshot(self, stream_id: str) -> Row | None:
        row: Row | None = self._cur.execute(self._select_snapshot, (stream_id,)).fetchone()
        return row

    def select_page(self, after: int, limit: int) -> list[Row]:
        return self._cur.execute(self._select_page, (after, limit)).fetchall()

    def close(self) -> None:
        self._cur.close()
        self._conn.close()


class _PostgresStore:
    _insert = sql.SQL(
        f"INSERT INTO events ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    _select_stream = sql.SQL("SELECT * FROM events WHERE stream_id = %s ORDER BY version")
    _select_snapshot = sql.SQL("SELECT * FROM snapshots WHERE stream_id = %s")
    _select_page = sql.SQL("SELECT * FROM events WHERE position > %s ORDER BY position LIMIT %s")

    def __init__(self, url: str, schema: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        self._cur = self._conn.cursor()

    def create_tables(self) -> None:
        for statement in _POSTGRES_DDL:
            self._cur.execute(sql.SQL(statement))

    def make_row(self, stream_id: str, version: int, payload: Payload) -> Row:
        event_id = uuid.uuid4()
        recorded_at = datetime.now(UTC)
        data = _json_encode(payload)
        return (stream_id, version, event_id, EVENT_TYPE, 1, recorded_at, data, str(event_id), None)

    def insert_one(self, row: Row) -> None:
        # Autocommit: the INSERT is its own transaction.
        self._cur.execute(self._insert, row, prepare=True)

    def insert_many(self, rows: Sequence[Row]) -> None:
        with self._conn.transaction():
            self._cur.executemany(self._insert, rows)

    def prefill(self, rows: Sequence[Row]) -> None:
        copy_sql = sql.SQL(f"COPY events ({_COLUMNS}) FROM STDIN")
        with self._conn.transaction(), self._cur.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)

    def put_snapshot(self, stream_id: str, version: int, state: dict[str, Any]) -> None:
        self._cur.execute(
            "INSERT INTO snapshots VALUES (%s, %s, %s, %s, %s)",
            (stream_id, version, "Snapshot", datetime.now(UTC), _json_encode(state)),
        )

    def select_stream(self, stream_id: str) -> list[Row]:
        self._cur.execute(self._select_stream, (stream_id,), prepare=True)
        return self._cur.fetchall()

    def select_snapshot(self, stream_id: str) -> Row | None:
        self._cur.execute(self._select_snapshot, (stream_id,), prepare=True)
        return self._cur.fetchone()

    def select_page(self, after: int, limit: int) -> list[Row]:
        self._cur.execute(self._select_page, (after, limit), prepare=True)
        return self._cur.fetchall()

    def close(self) -> None:
        self._cur.close()
        self._conn.close()


def _open(target: Target) -> _Store:
    if target.backend == "sqlite":
        return _SQLiteStore(target.sqlite_path)
    if target.backend == "postgres":
        return _PostgresStore(target.postgres_url, target.postgres_schema)
    raise ValueError(f"unknown backend {target.backend!r}")


def _a_create(store: _Store, size: Size) -> Measurement:
    start = time.perf_counter()
    for n in range(size.create):
        store.insert_one(store.make_row(new_stream_id(), 1, make_payload(n)))
    return Measurement(events=size.create, seconds=time.perf_counter() - start)


def _b_append(store: _Store, size: Size) -> Measurement:
    stream_id = new_stream_id()
    store.insert_one(store.make_row(stream_id, 1, make_payload(0)))
    version = 1
    start = time.perf_counter()
    for n in range(size.append):
        store.insert_one(store.make_row(stream_id, version + 1, make_payload(n)))
        version += 1
    return Measurement(events=size.append, seconds=time.perf_counter() - start)


def _c_batch(store: _Store, size: Size) -> Measurement:
    start = time.perf_counter()
    for _ in range(size.batches):
        stream_id = new_stream_id()
        rows = [store.make_row(stream_id, v, make_payload(v)) for v in range(1, BATCH_EVENTS + 1)]
        store.insert_many(rows)
    return Measurement(events=size.batches * BATCH_EVENTS, seconds=time.perf_counter() - start)


def _fill_stream(store: _Store, stream_id: str, length: int) -> None:
    store.prefill([store.make_row(stream_id, v, make_payload(v)) for v in range(1, length + 1)])


def _d_load(store: _Store, size: Size) -> Measurement:
    stream_id = new_stream_id()
    _fill_stream(store, stream_id, size.load_events)
    if len(store.select_stream(stream_id)) != size.load_events:
        raise RuntimeError("the stream was not written in full")
    start = time.perf_counter()
    for _ in range(size.loads):
        store.select_stream(stream_id)
    seconds = time.perf_counter() - start
    return Measurement(events=size.loads * size.load_events, seconds=seconds, ops=size.loads)


def _d_load_snapshot(store: _Store, size: Size) -> Measurement:
    stream_id = new_stream_id()
    _fill_stream(store, stream_id, size.load_events)
    state = {"label": EVENT_LABEL, "count": size.load_events, "total": 0}
    store.put_snapshot(stream_id, size.load_events, state)
    start = time.perf_counter()
    for _ in range(size.snapshot_loads):
        if store.select_snapshot(stream_id) is None:
            raise RuntimeError("snapshot not found")
    seconds = time.perf_counter() - start
    # One snapshot record read per load.
    return Measurement(events=size.snapshot_loads, seconds=seconds, ops=size.snapshot_loads)


def _e_read_all(store: _Store, size: Size) -> Measurement:
    rows: list[Row] = []
    while len(rows) < size.read_all:
        stream_id = new_stream_id()
        count = min(BATCH_EVENTS, size.read_all - len(rows))
        rows.extend(store.make_row(stream_id, v, make_payload(v)) for v in range(1, count + 1))
    store.prefill(rows)
    del rows
    read = 0
    start = time.perf_counter()
    position = 0
    while True:
        page = store.select_page(position, READ_PAGE)
        if not page:
            break
        read += len(page)
        position = page[-1][0]
    seconds = time.perf_counter() - start
    if read != size.read_all:
        raise RuntimeError(f"read {read} events, expected {size.read_all}")
    return Measurement(events=read, seconds=seconds)


def _f_concurrent(target: Target, size: Size) -> Measurement:
    stores = [_open(target) for _ in range(size.writers)]
    barrier = threading.Barrier(size.writers + 1)
    errors: list[BaseException] = []

    def writer(store: _Store) -> None:
        try:
            barrier.wait()
            for n in range(size.per_writer):
                store.insert_one(store.make_row(new_stream_id(), 1, make_payload(n)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    finally:
        for store in stores:
            store.close()
    if errors:
        raise errors[0]
    return Measurement(events=size.writers * size.per_writer, seconds=seconds)


_SINGLE_CONNECTION: dict[str, Callable[[_Store, Size], Measurement]] = {
    "a_create": _a_create,
    "b_append": _b_append,
    "c_batch": _c_batch,
    "d_load": _d_load,
    "d_load_snapshot": _d_load_snapshot,
    "e_read_all": _e_read_all,
}


def run(workload: str, target: Target, size: Size) -> Measurement:
    if workload not in _SINGLE_CONNECTION and workload != "f_concurrent":
        raise unknown_workload(workload)
    store = _open(target)
    try:
        store.create_tables()
        if workload == "f_concurrent":
            return _f_concurrent(target, size)
        return _SINGLE_CONNECTION[workload](store, size)
    finally:
        store.close()
