"""The raw drivers on a minimal table: the physical limit chronik is measured against.

The table is what any event store needs and nothing more: ``id INTEGER PRIMARY KEY``
(``bigserial`` on PostgreSQL; it is the global position), ``stream``, ``version``,
``type``, ``data`` and ``UNIQUE (stream, version)``, the optimistic-concurrency check of
(b): an append inserts ``expected + 1`` and a conflict would fail its transaction. The
payload is the JSON chronik stores for the same event, byte for byte (msgspec encodes
the same three fields in the same order: 68-72 bytes), under chronik's stored type
name. Every row is built before the timed loop; the loop only calls the driver.

- SQLite: the stdlib ``sqlite3``, WAL mode with ``synchronous=FULL``, one
  ``BEGIN IMMEDIATE``/``INSERT``/``COMMIT`` per single append, ``executemany`` inside one
  such transaction for (c). Each connection has a busy timeout of 60 s (sqlite3's
  ``timeout``): the 8 threads of (f), each on its own connection, wait for the write lock
  in SQLite's busy handler, which sleeps between tries. They serialize on that lock: that
  is what 8 writers to one SQLite file do.
- PostgreSQL: compiled psycopg 3 (sync), ``synchronous_commit=on``, a prepared autocommit
  ``INSERT`` per single append, ``executemany`` (pipelined by psycopg) in one transaction
  for (c), 8 threads with their own connections for (f).

Variants, each its own labelled system (the runner passes the entry point):

- ``raw`` (:func:`run`): the writes above; reads fetch the rows and stop there.
- ``raw_decode`` (:func:`run_decode`): reads fetch and decode each row with msgspec into
  what chronik returns, a frozen msgspec Struct per event holding the decoded domain
  event (a frozen dataclass), choosing the decoder by the stored type; ``d_load`` also
  folds every event into the aggregate as the benchmark's aggregate does.
- ``raw_copy`` (:func:`run_copy`): ``c_batch`` on PostgreSQL with binary ``COPY``.

``a_create_fsync_off`` and ``b_append_fsync_off`` are (a) and (b) with SQLite's
``synchronous=OFF`` or PostgreSQL's ``synchronous_commit=off`` on this connection: what
is left is CPU, not the durability anything ships with.

The projection workloads read events in pages of 1,000 and, per page, run one
transaction that upserts one ``items`` row per event (``executemany``) and moves a
checkpoint row from the page's start to its end (a compare-and-set, so a page cannot be
applied twice), decoding only the ``amount`` the upsert needs. ``g_tail_p99_ms`` on
PostgreSQL: each append is one autocommit statement that inserts the event and calls
``pg_notify`` (delivered at commit); a projector thread on its own connection LISTENs,
projects what is new on each notification (polling every 0.5 s in case one is missed)
and signals the writer after its commit. On SQLite there is no live tail without a
framework: not applicable.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import psycopg
from psycopg import sql

from benchmarks.common import (
    BATCH_EVENTS,
    EVENT_LABEL,
    ITEMS_TABLE,
    READ_PAGE,
    TAIL_SPACING_S,
    Measurement,
    NotApplicable,
    Size,
    Target,
    item_key,
    new_stream_id,
    percentile,
    unknown_workload,
)

Row = tuple[Any, ...]

# chronik's stored name of the benchmark event: the rows are as long as chronik's.
EVENT_TYPE = "bench.item_added"


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """The domain event, the same class shape as chronik's benchmark event."""

    label: str
    amount: int
    at: datetime


class Recorded(msgspec.Struct, frozen=True, gc=False):
    """An event as read: where it is, and the decoded domain event (cf. RecordedEvent)."""

    position: int
    stream: str
    version: int
    type: str
    event: object


class Basket:
    """The aggregate of ``d_load``: the benchmark's Basket, folded by event class."""

    __slots__ = ("id", "items", "total", "version")

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self.total = 0
        self.items = 0

    def _added(self, e: ItemAdded) -> None:
        self.total += e.amount
        self.items += 1


class BasketState(msgspec.Struct, frozen=True, gc=False):
    """What the snapshot of ``d_load_snapshot`` holds."""

    total: int
    items: int


_APPLY: dict[type, Callable[[Basket, Any], None]] = {ItemAdded: Basket._added}
_json_encode = msgspec.json.Encoder().encode
_DECODERS: dict[str, Callable[[bytes], object]] = {
    EVENT_TYPE: msgspec.json.Decoder(ItemAdded).decode
}
_decode_state = msgspec.json.Decoder(BasketState).decode


class _Amount(msgspec.Struct):
    """The one field of the payload that the projection needs (the others are skipped)."""

    amount: int


_decode_amount = msgspec.json.Decoder(_Amount).decode


def _data(n: int) -> bytes:
    return _json_encode(ItemAdded(EVENT_LABEL, n, datetime.now(UTC)))


def _rows(stream: str, first_version: int, count: int) -> list[Row]:
    """``count`` events of one stream from ``first_version``, ready to insert."""
    return [(stream, v, EVENT_TYPE, _data(v)) for v in range(first_version, first_version + count)]


def decode(rows: Sequence[Row]) -> list[Recorded]:
    """Rows of (id, stream, version, type, data) as events, decoded by their type."""
    decoders = _DECODERS
    return [
        Recorded(position, stream, version, type_, decoders[type_](data))
        for position, stream, version, type_, data in rows
    ]


def fold(basket: Basket, events: Sequence[Recorded]) -> Basket:
    for e in events:
        _APPLY[type(e.event)](basket, e.event)
        basket.version = e.version
    return basket


_COLUMNS = "stream, version, type, data"
_SELECT = "SELECT id, stream, version, type, data FROM events"

_SQLITE_DDL = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        data BLOB NOT NULL,
        UNIQUE (stream, version)
    )
    """,
    "CREATE TABLE snapshots"
    " (stream TEXT PRIMARY KEY, version INTEGER NOT NULL, data BLOB NOT NULL)",
)
_POSTGRES_DDL = (
    """
    CREATE TABLE events (
        id bigserial PRIMARY KEY,
        stream text NOT NULL,
        version integer NOT NULL,
        type text NOT NULL,
        data bytea NOT NULL,
        UNIQUE (stream, version)
    )
    """,
    "CREATE TABLE snapshots"
    " (stream text PRIMARY KEY, version integer NOT NULL, data bytea NOT NULL)",
)
_PROJECTION = "items"
_PROJECTION_DDL = (
    f"CREATE TABLE {ITEMS_TABLE} (key text PRIMARY KEY, amount bigint NOT NULL)",
    "CREATE TABLE checkpoints (name text PRIMARY KEY, position bigint NOT NULL)",
    f"INSERT INTO checkpoints VALUES ('{_PROJECTION}', 0)",
)
_CHANNEL = "bench_events"
_WAIT_TIMEOUT_S = 60.0


class _Store(Protocol):
    """One connection to the raw event table."""

    def create_tables(self) -> None: ...

    def insert_one(self, row: Row) -> None: ...

    def insert_many(self, rows: Sequence[Row]) -> None: ...

    def copy_many(self, rows: Sequence[Row]) -> None: ...

    def put_snapshot(self, stream: str, version: int, data: bytes) -> None: ...

    def select_stream(self, stream: str, after: int) -> list[Row]: ...

    def select_snapshot(self, stream: str) -> Row | None: ...

    def select_page(self, after: int, limit: int) -> list[Row]: ...

    def create_projection_tables(self) -> None: ...

    def project_page(self, items: Sequence[Row], start: int, end: int) -> None: ...

    def checkpoint(self) -> int: ...

    def count_items(self) -> int: ...

    def close(self) -> None: ...


class _SQLiteStore:
    _insert = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?)"
    _select_stream = f"{_SELECT} WHERE stream = ? AND version > ? ORDER BY version"
    _select_snapshot = "SELECT version, data FROM snapshots WHERE stream = ?"
    _select_page = f"{_SELECT} WHERE id > ? ORDER BY id LIMIT ?"
    _upsert_item = (
        f"INSERT INTO {ITEMS_TABLE} (key, amount) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET amount = excluded.amount"
    )
    _move_checkpoint = "UPDATE checkpoints SET position = ? WHERE name = ? AND position = ?"

    def __init__(self, path: str, fsync: bool = True) -> None:
        # isolation_level=None: no implicit BEGIN, we issue our own. timeout: the busy
        # timeout, how long a writer waits for another connection's write lock.
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=60.0
        )
        (mode,) = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
        self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
        (level,) = self._conn.execute("PRAGMA synchronous").fetchone()
        if str(mode).lower() != "wal" or level != (2 if fsync else 0):
            raise RuntimeError(f"SQLite is not in WAL mode with fsync={fsync}: {mode}, {level}")
        self._cur = self._conn.cursor()

    def create_tables(self) -> None:
        for statement in _SQLITE_DDL:
            self._cur.execute(statement)

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
        cur = self._cur
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(self._insert, row)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def insert_many(self, rows: Sequence[Row]) -> None:
        self._transaction(lambda: self._cur.executemany(self._insert, rows))

    def copy_many(self, rows: Sequence[Row]) -> None:
        raise NotApplicable("SQLite has no COPY: its batch is executemany (the raw row)")

    def put_snapshot(self, stream: str, version: int, data: bytes) -> None:
        self._transaction(
            lambda: self._cur.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?)", (stream, version, data)
            )
        )

    def select_stream(self, stream: str, after: int) -> list[Row]:
        return self._cur.execute(self._select_stream, (stream, after)).fetchall()

    def select_snapshot(self, stream: str) -> Row | None:
        row: Row | None = self._cur.execute(self._select_snapshot, (stream,)).fetchone()
        return row

    def select_page(self, after: int, limit: int) -> list[Row]:
        return self._cur.execute(self._select_page, (after, limit)).fetchall()

    def create_projection_tables(self) -> None:
        for statement in _PROJECTION_DDL:
            self._cur.execute(statement)

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
    _insert = sql.SQL(f"INSERT INTO events ({_COLUMNS}) VALUES (%s, %s, %s, %s)")
    _copy = sql.SQL(f"COPY events ({_COLUMNS}) FROM STDIN (FORMAT BINARY)")
    _select_stream = sql.SQL(f"{_SELECT} WHERE stream = %s AND version > %s ORDER BY version")
    _select_snapshot = sql.SQL("SELECT version, data FROM snapshots WHERE stream = %s")
    _select_page = sql.SQL(f"{_SELECT} WHERE id > %s ORDER BY id LIMIT %s")
    _upsert_item = sql.SQL(
        f"INSERT INTO {ITEMS_TABLE} (key, amount) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET amount = EXCLUDED.amount"
    )
    _move_checkpoint = sql.SQL(
        "UPDATE checkpoints SET position = %s WHERE name = %s AND position = %s"
    )
    # One autocommit statement: the event and its notification commit together.
    _insert_notify = sql.SQL(
        f"WITH e AS (INSERT INTO events ({_COLUMNS}) VALUES (%s, %s, %s, %s) RETURNING id)"
        f" SELECT id, pg_notify('{_CHANNEL}', id::text) FROM e"
    )

    def __init__(self, url: str, schema: str, fsync: bool = True) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        if not fsync:
            self._conn.execute("SET synchronous_commit = off")
        row = self._conn.execute("SHOW synchronous_commit").fetchone()
        if row is None or row[0] != ("on" if fsync else "off"):
            raise RuntimeError(f"synchronous_commit is {row}, expected fsync={fsync}")
        self._cur = self._conn.cursor()

    def create_tables(self) -> None:
        for statement in _POSTGRES_DDL:
            self._cur.execute(sql.SQL(statement))

    def insert_one(self, row: Row) -> None:
        # Autocommit: the INSERT is its own transaction.
        self._cur.execute(self._insert, row, prepare=True)

    def insert_many(self, rows: Sequence[Row]) -> None:
        with self._conn.transaction():
            self._cur.executemany(self._insert, rows)

    def copy_many(self, rows: Sequence[Row]) -> None:
        with self._conn.transaction(), self._cur.copy(self._copy) as copy:
            copy.set_types(["text", "int4", "text", "bytea"])
            for row in rows:
                copy.write_row(row)

    def put_snapshot(self, stream: str, version: int, data: bytes) -> None:
        self._cur.execute("INSERT INTO snapshots VALUES (%s, %s, %s)", (stream, version, data))

    def select_stream(self, stream: str, after: int) -> list[Row]:
        self._cur.execute(self._select_stream, (stream, after), prepare=True)
        return self._cur.fetchall()

    def select_snapshot(self, stream: str) -> Row | None:
        self._cur.execute(self._select_snapshot, (stream,), prepare=True)
        return self._cur.fetchone()

    def select_page(self, after: int, limit: int) -> list[Row]:
        self._cur.execute(self._select_page, (after, limit), prepare=True)
        return self._cur.fetchall()

    def create_projection_tables(self) -> None:
        for statement in _PROJECTION_DDL:
            self._cur.execute(sql.SQL(statement))

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
            raise RuntimeError("the insert returned no id")
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


def _open(target: Target, fsync: bool = True) -> _Store:
    if target.backend == "sqlite":
        return _SQLiteStore(target.sqlite_path, fsync)
    if target.backend == "postgres":
        return _PostgresStore(target.postgres_url, target.postgres_schema, fsync)
    raise ValueError(f"unknown backend {target.backend!r}")


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# Writes


def _a_create(store: _Store, size: Size) -> Measurement:
    rows = [(new_stream_id(), 1, EVENT_TYPE, _data(n)) for n in range(size.create)]

    def work() -> None:
        insert = store.insert_one
        for row in rows:
            insert(row)

    return Measurement(events=size.create, seconds=_timed(work))


def _b_append(store: _Store, size: Size) -> Measurement:
    stream = new_stream_id()
    store.insert_one((stream, 1, EVENT_TYPE, _data(0)))
    rows = _rows(stream, 2, size.append)

    def work() -> None:
        insert = store.insert_one
        for row in rows:
            insert(row)

    return Measurement(events=size.append, seconds=_timed(work))


def _batches(size: Size) -> list[list[Row]]:
    return [_rows(new_stream_id(), 1, BATCH_EVENTS) for _ in range(size.batches)]


def _c_batch(store: _Store, size: Size) -> Measurement:
    batches = _batches(size)

    def work() -> None:
        for rows in batches:
            store.insert_many(rows)

    return Measurement(events=size.batches * BATCH_EVENTS, seconds=_timed(work))


def _c_batch_copy(store: _Store, size: Size) -> Measurement:
    batches = _batches(size)

    def work() -> None:
        for rows in batches:
            store.copy_many(rows)

    return Measurement(events=size.batches * BATCH_EVENTS, seconds=_timed(work))


def _f_concurrent(target: Target, size: Size) -> Measurement:
    stores = [_open(target) for _ in range(size.writers)]
    plans = [
        [(new_stream_id(), 1, EVENT_TYPE, _data(n)) for n in range(size.per_writer)]
        for _ in range(size.writers)
    ]
    barrier = threading.Barrier(size.writers + 1)
    errors: list[BaseException] = []

    def writer(store: _Store, rows: list[Row]) -> None:
        try:
            barrier.wait()
            insert = store.insert_one
            for row in rows:
                insert(row)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(store, rows))
        for store, rows in zip(stores, plans, strict=True)
    ]
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


# ---------------------------------------------------------------------------------------
# Reads: each takes `decoded`, whether to decode (and fold) what it fetched


def _prefill(store: _Store, total: int) -> None:
    """``total`` events as new streams of 100, the fastest way (COPY or executemany)."""
    rows: list[Row] = []
    while len(rows) < total:
        rows.extend(_rows(new_stream_id(), 1, min(BATCH_EVENTS, total - len(rows))))
    try:
        store.copy_many(rows)
    except NotApplicable:
        store.insert_many(rows)


def _fill_stream(store: _Store, stream: str, length: int) -> None:
    for first in range(1, length + 1, BATCH_EVENTS):
        store.insert_many(_rows(stream, first, min(BATCH_EVENTS, length - first + 1)))


def _d_load(store: _Store, size: Size, decoded: bool) -> Measurement:
    stream = new_stream_id()
    _fill_stream(store, stream, size.load_events)
    loaded: list[Basket] = []

    def work() -> None:
        for _ in range(size.loads):
            rows = store.select_stream(stream, 0)
            if decoded:
                loaded.append(fold(Basket(stream), decode(rows)))
            elif len(rows) != size.load_events:
                raise RuntimeError(f"fetched {len(rows)} events of {size.load_events}")

    seconds = _timed(work)
    for basket in loaded:
        if basket.items != size.load_events or basket.version != size.load_events:
            raise RuntimeError(f"folded {basket.items} events of {size.load_events}")
    return Measurement(events=size.loads * size.load_events, seconds=seconds, ops=size.loads)


def _d_load_snapshot(store: _Store, size: Size, decoded: bool) -> Measurement:
    """A load at the latest version: the snapshot, then the events after it (none)."""
    stream = new_stream_id()
    _fill_stream(store, stream, size.load_events)
    state = BasketState(total=sum(range(1, size.load_events + 1)), items=size.load_events)
    store.put_snapshot(stream, size.load_events, _json_encode(state))
    loaded: list[Basket] = []

    def work() -> None:
        for _ in range(size.snapshot_loads):
            snapshot = store.select_snapshot(stream)
            if snapshot is None:
                raise RuntimeError("snapshot not found")
            version, data = snapshot
            rows = store.select_stream(stream, version)
            if decoded:
                basket = Basket(stream)
                saved = _decode_state(data)
                basket.total, basket.items, basket.version = saved.total, saved.items, version
                loaded.append(fold(basket, decode(rows)))

    seconds = _timed(work)
    for basket in loaded:
        if basket.items != size.load_events:
            raise RuntimeError(f"loaded {basket.items} events of {size.load_events}")
    # One snapshot record read per load.
    return Measurement(events=size.snapshot_loads, seconds=seconds, ops=size.snapshot_loads)


def _e_read_all(store: _Store, size: Size, decoded: bool) -> Measurement:
    _prefill(store, size.read_all)
    read = 0

    def pages() -> Iterator[list[Row]]:
        after = 0
        while page := store.select_page(after, READ_PAGE):
            yield page
            after = page[-1][0]

    def work() -> None:
        nonlocal read
        if decoded:
            for page in pages():
                events = decode(page)
                read += len(events)
        else:
            for page in pages():
                read += len(page)

    seconds = _timed(work)
    if read != size.read_all:
        raise RuntimeError(f"read {read} events, expected {size.read_all}")
    return Measurement(events=read, seconds=seconds)


# ---------------------------------------------------------------------------------------
# Projections


def _project_page(store: _Store, checkpoint: int) -> int | None:
    """Project the next page after checkpoint in one transaction; the new checkpoint or None."""
    page = store.select_page(checkpoint, READ_PAGE)
    if not page:
        return None
    items = [
        (item_key(stream, version), _decode_amount(data).amount)
        for _, stream, version, _, data in page
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
    _prefill(store, size.catchup)
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
    stream = new_stream_id()
    rows = _rows(stream, 1, size.tail_events + 1)
    projector = _TailProjector(target)
    try:
        # Start caught up: one event processed before the timed loop.
        position = store.insert_notify(rows[0])
        projector.wait(position, _WAIT_TIMEOUT_S)
        latencies: list[float] = []
        start = time.perf_counter()
        for row in rows[1:]:
            time.sleep(TAIL_SPACING_S)
            position = store.insert_notify(row)
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


# ---------------------------------------------------------------------------------------
# Entry points, one per labelled system


_FETCH: dict[str, Callable[[_Store, Size, bool], Measurement]] = {
    "d_load": _d_load,
    "d_load_snapshot": _d_load_snapshot,
    "e_read_all": _e_read_all,
}
_WRITES: dict[str, Callable[[_Store, Size], Measurement]] = {
    "a_create": _a_create,
    "b_append": _b_append,
    "c_batch": _c_batch,
    "g_catchup": _g_catchup,
}
_FSYNC_OFF: dict[str, Callable[[_Store, Size], Measurement]] = {
    "a_create_fsync_off": _a_create,
    "b_append_fsync_off": _b_append,
}


def _with_store(
    target: Target, measure: Callable[[_Store], Measurement], fsync: bool = True
) -> Measurement:
    store = _open(target, fsync)
    try:
        store.create_tables()
        return measure(store)
    finally:
        store.close()


def run(workload: str, target: Target, size: Size) -> Measurement:
    """``raw``: the minimal table; reads fetch and stop there."""
    if workload in _WRITES:
        return _with_store(target, lambda store: _WRITES[workload](store, size))
    if workload in _FETCH:
        return _with_store(target, lambda store: _FETCH[workload](store, size, False))
    if workload in _FSYNC_OFF:
        return _with_store(target, lambda store: _FSYNC_OFF[workload](store, size), fsync=False)
    if workload == "f_concurrent":
        return _with_store(target, lambda _: _f_concurrent(target, size))
    if workload == "g_tail_p99_ms":
        return _with_store(target, lambda store: _g_tail(target, store, size))
    raise unknown_workload(workload)


def run_decode(workload: str, target: Target, size: Size) -> Measurement:
    """``raw_decode``: the reads of ``raw``, each row decoded (and ``d_load`` folded)."""
    measure = _FETCH.get(workload)
    if measure is None:
        raise NotApplicable(f"raw + decode measures the reads ({', '.join(_FETCH)}) only")
    return _with_store(target, lambda store: measure(store, size, True))


def run_copy(workload: str, target: Target, size: Size) -> Measurement:
    """``raw_copy``: ``c_batch`` with COPY (PostgreSQL only)."""
    if workload != "c_batch":
        raise NotApplicable("raw COPY measures c_batch only")
    return _with_store(target, lambda store: _c_batch_copy(store, size))
