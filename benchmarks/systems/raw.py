"""The raw drivers doing the same work with no framework: the physical limit.

SQLite: the stdlib ``sqlite3`` in WAL mode with ``PRAGMA synchronous=FULL``, one explicit
``BEGIN IMMEDIATE``/``INSERT``/``COMMIT`` per transaction. PostgreSQL: compiled psycopg 3
(sync), prepared statements, an autocommit ``INSERT`` per event for (a), (b) and (f) and
one transaction with ``executemany`` for (c). Both use a table shaped like an event store.
The expected-version check of (b) is the unique ``(stream_id, version)`` constraint: the
append inserts ``expected + 1`` and a conflict would fail the transaction.

The projection workloads read events in pages of 1,000 ordered by position and, per page,
run one transaction that upserts one ``items`` row per event (``executemany``) and moves a
checkpoint row from the page's start to its end (a compare-and-set, so a page cannot be
applied twice): exactly once, with no decoding beyond the ``amount`` the upsert needs.
``g_tail_p99_ms`` on PostgreSQL: each append is one autocommit statement that inserts the
event and calls ``pg_notify`` (delivered at commit); a projector thread on its own
connection LISTENs, projects whatever is new on each notification (and polls every 0.5 s
in case one is missed), and signals the writer through a condition variable after its
commit. On SQLite it is not applicable: without a framework there is no live tail there.
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
    ITEMS_TABLE,
    READ_PAGE,
    TAIL_SPACING_S,
    Measurement,
    NotApplicable,
    Payload,
    Size,
    Target,
    item_key,
    make_payload,
    new_stream_id,
    percentile,
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

# The read model of the projection workloads, and its checkpoint (one row per projection).
_PROJECTION = "items"
_PROJECTION_DDL = (
    f"CREATE TABLE {ITEMS_TABLE} (key text PRIMARY KEY, amount bigint NOT NULL)",
    "CREATE TABLE checkpoints (name text PRIMARY KEY, position bigint NOT NULL)",
    f"INSERT INTO checkpoints VALUES ('{_PROJECTION}', 0)",
)
# The PostgreSQL channel the tail's appends notify.
_CHANNEL = "bench_events"
_WAIT_TIMEOUT_S = 60.0

_json_encode = msgspec.json.Encoder().encode


class _Amount(msgspec.Struct):
    """The one field of the payload that the projection needs (the others are skipped)."""

    amount: int


_decode_amount = msgspec.json.Decoder(_Amount).decode


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

    def create_projection_tables(self) -> None: ...

    def select_projection_page(self, after: int, limit: int) -> list[Row]: ...

    def project_page(self, items: Sequence[Row], start: int, end: int) -> None: ...

    def checkpoint(self) -> int: ...

    def count_items(self) -> int: ...

    def close(self) -> None: ...


class _SQLiteStore:
    _insert = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    _select_stream = "SELECT * FROM events WHERE stream_id = ? ORDER BY version"
    _select_snapshot = "SELECT * FROM snapshots WHERE stream_id = ?"
    _select_page = "SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?"
    _select_projection_page = (
        "SELECT position, stream_id, version, data FROM events"
        " WHERE position > ? ORDER BY position LIMIT ?"
    )
    _upsert_item = (
        f"INSERT INTO {ITEMS_TABLE} (key, amount) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET amount = excluded.amount"
    )
    _move_checkpoint = "UPDATE checkpoints SET position = ? WHERE name = ? AND position = ?"

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

    def create_projection_tables(self) -> None:
        for statement in _PROJECTION_DDL:
            self._cur.execute(statement)

    def select_projection_page(self, after: int, limit: int) -> list[Row]:
        return self._cur.execute(self._select_projection_page, (after, limit)).fetchall()

    def project_page(self, items: Sequence[Row], start: int, end: int) -> None:
        def body() -> None:
            self._cur.executemany(self._upsert_item, items)
            self._cur.execute(self._move_checkpoint, (end, _PROJECTION, start))
            if self._cur.rowcount != 1:
                raise RuntimeError(f"the checkpoint is not at {start}: page applied twice?")

        self._transaction(body)

    def checkpoint(self) -> int:
        row = self._cur.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (_PROJECTION,)
        ).fetchone()
        return int(row[0])

    def count_items(self) -> int:
        (count,) = self._cur.execute(f"SELECT count(*) FROM {ITEMS_TABLE}").fetchone()
        return int(count)

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
    _select_projection_page = sql.SQL(
        "SELECT position, stream_id, version, data FROM events"
        " WHERE position > %s ORDER BY position LIMIT %s"
    )
    _upsert_item = sql.SQL(
        f"INSERT INTO {ITEMS_TABLE} (key, amount) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET amount = EXCLUDED.amount"
    )
    _move_checkpoint = sql.SQL(
        "UPDATE checkpoints SET position = %s WHERE name = %s AND position = %s"
    )
    # One autocommit statement: the event and its notification commit together.
    _insert_notify = sql.SQL(
        f"WITH e AS (INSERT INTO events ({_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING position)"
        f" SELECT position, pg_notify('{_CHANNEL}', position::text) FROM e"
    )

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

    def create_projection_tables(self) -> None:
        for statement in _PROJECTION_DDL:
            self._cur.execute(sql.SQL(statement))

    def select_projection_page(self, after: int, limit: int) -> list[Row]:
        self._cur.execute(self._select_projection_page, (after, limit), prepare=True)
        return self._cur.fetchall()

    def project_page(self, items: Sequence[Row], start: int, end: int) -> None:
        with self._conn.transaction():
            self._cur.executemany(self._upsert_item, items)
            self._cur.execute(self._move_checkpoint, (end, _PROJECTION, start), prepare=True)
            if self._cur.rowcount != 1:
                raise RuntimeError(f"the checkpoint is not at {start}: page applied twice?")

    def checkpoint(self) -> int:
        self._cur.execute("SELECT position FROM checkpoints WHERE name = %s", (_PROJECTION,))
        row = self._cur.fetchone()
        return int(row[0]) if row else 0

    def count_items(self) -> int:
        self._cur.execute(sql.SQL(f"SELECT count(*) FROM {ITEMS_TABLE}"))
        row = self._cur.fetchone()
        return int(row[0]) if row else 0

    def insert_notify(self, row: Row) -> int:
        """Insert one event and notify the channel, in one autocommit statement."""
        self._cur.execute(self._insert_notify, row, prepare=True)
        result = self._cur.fetchone()
        if result is None:
            raise RuntimeError("the insert returned no position")
        return int(result[0])

    def listen(self) -> None:
        self._cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(_CHANNEL)))

    def wait_for_notification(self, timeout: float) -> None:
        """Return after the next notification (or one received meanwhile), or the timeout."""
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            pass

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


def _prefill_streams(store: _Store, total: int) -> None:
    """Write total events as new streams of 100 events, the fastest way: COPY / executemany."""
    rows: list[Row] = []
    while len(rows) < total:
        stream_id = new_stream_id()
        count = min(BATCH_EVENTS, total - len(rows))
        rows.extend(store.make_row(stream_id, v, make_payload(v)) for v in range(1, count + 1))
    store.prefill(rows)


def _project_page(store: _Store, checkpoint: int) -> int | None:
    """Project the next page after checkpoint in one transaction; the new checkpoint or None."""
    page = store.select_projection_page(checkpoint, READ_PAGE)
    if not page:
        return None
    items = [
        (item_key(stream_id, version), _decode_amount(data).amount)
        for _, stream_id, version, data in page
    ]
    end = int(page[-1][0])
    store.project_page(items, checkpoint, end)
    return end


def _check_projected(store: _Store, position: int, rows: int) -> None:
    if store.checkpoint() != position:
        raise RuntimeError(f"the checkpoint is at {store.checkpoint()}, expected {position}")
    if store.count_items() != rows:
        raise RuntimeError(f"the projection wrote {store.count_items()} rows, expected {rows}")


def _g_catchup(store: _Store, size: Size) -> Measurement:
    store.create_projection_tables()
    _prefill_streams(store, size.catchup)
    last = store.select_page(0, size.catchup)[-1][0]
    start = time.perf_counter()
    checkpoint = store.checkpoint()
    while (moved := _project_page(store, checkpoint)) is not None:
        checkpoint = moved
    seconds = time.perf_counter() - start
    _check_projected(store, last, size.catchup)
    return Measurement(events=size.catchup, seconds=seconds)


class _TailProjector:
    """A projector thread on its own connection: LISTEN, project what is new, signal."""

    def __init__(self, target: Target) -> None:
        self._store = _PostgresStore(target.postgres_url, target.postgres_schema)
        self._store.listen()
        self._changed = threading.Condition()
        # (checkpoint, time.perf_counter() right after the commit that moved it there)
        self.processed: tuple[int, float] = (self._store.checkpoint(), time.perf_counter())
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="raw-tail-projector")
        self._thread.start()

    def _loop(self) -> None:
        try:
            checkpoint = self.processed[0]
            while not self._stopping.is_set():
                while (moved := _project_page(self._store, checkpoint)) is not None:
                    checkpoint = moved
                    with self._changed:
                        self.processed = (checkpoint, time.perf_counter())
                        self._changed.notify_all()
                self._store.wait_for_notification(timeout=0.5)
        except BaseException as exc:
            self._error = exc
            with self._changed:
                self._changed.notify_all()

    def wait(self, position: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(
                lambda: self.processed[0] >= position or self._error is not None, timeout
            )
        if self._error is not None:
            raise self._error
        if self.processed[0] < position:
            raise TimeoutError(f"position {position} not processed within {timeout} s")

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._store.close()


def _g_tail(target: Target, store: _Store, size: Size) -> Measurement:
    if not isinstance(store, _PostgresStore):
        raise NotApplicable(
            "no live tail without a framework: SQLite has no change notification"
            " between connections, only polling"
        )
    store.create_projection_tables()
    projector = _TailProjector(target)
    try:
        # Start caught up: one event processed before the timed loop.
        stream_id = new_stream_id()
        position = store.insert_notify(store.make_row(stream_id, 1, make_payload(1)))
        projector.wait(position, _WAIT_TIMEOUT_S)
        latencies: list[float] = []
        start = time.perf_counter()
        for version in range(2, size.tail_events + 2):
            time.sleep(TAIL_SPACING_S)
            position = store.insert_notify(
                store.make_row(stream_id, version, make_payload(version))
            )
            appended = time.perf_counter()
            projector.wait(position, _WAIT_TIMEOUT_S)
            done, done_at = projector.processed
            if done != position:
                raise RuntimeError(f"waited for {position}, the projector is at {done}")
            latencies.append((done_at - appended) * 1000)
        seconds = time.perf_counter() - start
    finally:
        projector.close()
    _check_projected(store, position, size.tail_events + 1)
    return Measurement(
        events=size.tail_events,
        seconds=seconds,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
    )


_SINGLE_CONNECTION: dict[str, Callable[[_Store, Size], Measurement]] = {
    "a_create": _a_create,
    "b_append": _b_append,
    "c_batch": _c_batch,
    "d_load": _d_load,
    "d_load_snapshot": _d_load_snapshot,
    "e_read_all": _e_read_all,
    "g_catchup": _g_catchup,
}


def run(workload: str, target: Target, size: Size) -> Measurement:
    if workload not in _SINGLE_CONNECTION and workload not in ("f_concurrent", "g_tail_p99_ms"):
        raise unknown_workload(workload)
    store = _open(target)
    try:
        store.create_tables()
        if workload == "f_concurrent":
            return _f_concurrent(target, size)
        if workload == "g_tail_p99_ms":
            return _g_tail(target, store, size)
        return _SINGLE_CONNECTION[workload](store, size)
    finally:
        store.close()
