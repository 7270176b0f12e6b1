"""The SQLite event store: one file in WAL mode, for the embedded mode.

SQLite calls run on the event loop's thread. A hop to a worker thread and back
costs about 60 us on the machines we measured, a third of a synchronous commit,
while a commit blocks the loop only for its own fsync. The write lock is taken
without waiting (``busy_timeout=0``); when another process holds it, the store
waits asynchronously and tries again, so the loop never sleeps inside SQLite.
Concurrent appends share a commit (group commit), each in its own savepoint.
See docs/adr/0003-sqlite-on-the-event-loop.md.

Forgetting reaches the files: connections run with ``secure_delete`` (deleted content
is overwritten with zeros), and after a forget commits the write-ahead log, which still
holds earlier copies of the pages, is checkpointed into the database and truncated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from chronik.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventError,
    StoreNotFoundError,
    StoreUnavailableError,
    SubjectForgottenError,
)
from chronik.eventstore.base import AppendRequest, BaseEventStore, Row
from chronik.eventstore.codec import EventTypes, new_subject_key
from chronik.eventstore.groupcommit import GroupCommitter
from chronik.eventstore.ids import uuid_from_bytes
from chronik.eventstore.port import AppendResult, ExpectedVersion, Snapshot

__all__ = ["MIGRATIONS", "SQLiteEventStore"]

T = TypeVar("T")

log = logging.getLogger("chronik.eventstore.sqlite")

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_events",
        """
        CREATE TABLE chronik_events (
            position INTEGER PRIMARY KEY,
            stream_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            id BLOB NOT NULL UNIQUE,
            type TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            recorded_at TEXT NOT NULL,
            data BLOB NOT NULL,
            correlation_id TEXT,
            causation_id TEXT,
            headers BLOB,
            UNIQUE (stream_id, version)
        );
        CREATE TABLE chronik_snapshots (
            stream_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            schema TEXT NOT NULL,
            state BLOB NOT NULL,
            subjects TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (stream_id, version)
        );
        CREATE TABLE chronik_subject_keys (
            subject TEXT PRIMARY KEY,
            key BLOB NOT NULL,
            created_at TEXT NOT NULL
        );
        """,
    ),
    (
        # A forgotten subject keeps their row, without a key: the tombstone that stops a
        # new key being made for them (docs/adr/0010-forgotten-stays-forgotten.md).
        # Subjects forgotten before it existed are found by their sealed values whose
        # key is gone.
        "0002_forgotten_subjects",
        """
        CREATE TABLE chronik_subject_keys_0002 (
            subject TEXT PRIMARY KEY,
            key BLOB,
            created_at TEXT NOT NULL,
            forgotten_at TEXT,
            CHECK ((key IS NULL) = (forgotten_at IS NOT NULL))
        );
        INSERT INTO chronik_subject_keys_0002 (subject, key, created_at)
            SELECT subject, key, created_at FROM chronik_subject_keys;
        DROP TABLE chronik_subject_keys;
        ALTER TABLE chronik_subject_keys_0002 RENAME TO chronik_subject_keys;
        INSERT OR IGNORE INTO chronik_subject_keys (subject, key, created_at, forgotten_at)
            SELECT DISTINCT subject, NULL, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'),
                   strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
            FROM (
                SELECT CASE WHEN f.type = 'object'
                            THEN json_extract(f.value, '$."$enc"[0]') END AS subject
                FROM (
                    SELECT CASE WHEN json_valid(CAST(data AS TEXT))
                                 AND json_type(CAST(data AS TEXT)) = 'object'
                                THEN CAST(data AS TEXT) ELSE '{}' END AS doc
                    FROM chronik_events WHERE instr(data, '"$enc"') > 0
                ) AS e, json_each(e.doc) AS f
            ) WHERE typeof(subject) = 'text'
        """,
    ),
]

_COLUMNS = (
    "position, stream_id, version, id, type, schema_version, recorded_at, data, "
    "correlation_id, causation_id, headers"
)
_INSERT = (
    "INSERT INTO chronik_events (stream_id, version, id, type, schema_version, "
    "recorded_at, data, correlation_id, causation_id, headers) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_CHECKED = (
    "INSERT INTO chronik_events (stream_id, version, id, type, schema_version, "
    "recorded_at, data, correlation_id, causation_id, headers) "
    "SELECT ?, v.current + 1, ?, ?, ?, ?, ?, ?, ?, ? FROM (SELECT coalesce(("
    "SELECT version FROM chronik_events WHERE stream_id = ? ORDER BY version DESC LIMIT 1"
    "), 0) AS current) AS v "
    "WHERE ? < 0 OR v.current = ? "
    "RETURNING position, version"
)
# max(version) with a WHERE walks the stream's whole index range; this is one probe.
_VERSION = (
    "SELECT coalesce((SELECT version FROM chronik_events WHERE stream_id = ? "
    "ORDER BY version DESC LIMIT 1), 0)"
)
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}
_subjects_encode = msgspec.json.Encoder().encode
_subjects_decode = msgspec.json.Decoder(tuple[str, ...]).decode


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


class _Culprit(Exception):
    """An append failed in a way that voids its transaction; ``error`` is its answer."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class SQLiteEventStore(BaseEventStore):
    """An event store in one SQLite file. Open it with ``SQLiteEventStore.open``."""

    _load_id = staticmethod(uuid_from_bytes)
    _load_time = datetime.fromisoformat

    def __init__(
        self,
        types: EventTypes,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        lock_timeout: float,
    ) -> None:
        super().__init__(types)
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock_timeout = lock_timeout
        self._write_lock = asyncio.Lock()
        self._committer: GroupCommitter[AppendRequest, AppendResult] = GroupCommitter(
            self._commit_batch, gather=True
        )

    @classmethod
    async def open(
        cls,
        path: str | Path,
        types: EventTypes,
        *,
        synchronous: str = "full",
        lock_timeout: float = 10.0,
        create: bool = True,
    ) -> SQLiteEventStore:
        """Open (and create or migrate) the store in the file at ``path``.

        ``synchronous`` is SQLite's durability setting: ``full`` (the default: every
        commit is on disk when append returns) or ``normal`` (a power cut may lose the
        last commits, never corrupt the file). With ``create=False`` a file that does
        not exist, or holds no chronik tables, raises StoreNotFoundError and is left as
        it was.
        """
        level = _SYNCHRONOUS.get(str(synchronous).lower())
        if level is None:
            raise ConfigurationError(
                f"sqlite synchronous={synchronous!r} is not one of: {', '.join(_SYNCHRONOUS)}"
            )
        if sqlite3.sqlite_version_info < (3, 35):
            raise ConfigurationError(
                f"chronik needs SQLite 3.35 or newer; this Python has {sqlite3.sqlite_version}"
            )
        file = Path(path)
        if not create:
            _check_exists(file)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            writer = _connect(file, level, busy_ms=0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(
                f"cannot open SQLite database {str(file)!r}: {exc}"
            ) from exc
        store = cls(types, file, writer, writer, lock_timeout)
        try:
            await store.migrate(MIGRATIONS)
            store._reader = _connect(file, level, busy_ms=int(lock_timeout * 1000))
        except BaseException:
            writer.close()
            raise
        # A process killed between a forget's commit and its checkpoint left copies in
        # the log: one try now (another process's readers may hold it up; never wait).
        await store.checkpoint_wal(wait=False)
        return store

    async def close(self) -> None:
        self._reader.close()
        self._writer.close()

    # -- writing -----------------------------------------------------------------------

    async def _append(self, request: AppendRequest) -> AppendResult:
        return await self._committer.submit(request)

    async def _commit_batch(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        results = await self._commit_all(requests)
        forgot = any(
            r.forgets and not isinstance(res, BaseException)
            for r, res in zip(requests, results, strict=True)
        )
        if forgot:
            await self.checkpoint_wal()
        return results

    async def _commit_all(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        """Commit concurrent appends together; an append that fails fails alone.

        The first attempt takes a savepoint only where a failure needs one (an append of
        several events, or with hooks): a version conflict or a reused id undoes nothing
        else. An append that fails otherwise without a savepoint (a trigger, a full
        disk) leaves the attempt in doubt: it is rolled back and the batch done again,
        each append in a savepoint. A failure that ends the whole transaction (a trigger's
        RAISE(ROLLBACK)) takes every earlier append of the attempt with it: the failing
        append is answered and the others are tried again without it.
        """
        if len(requests) == 1:
            # Alone in its transaction: whatever fails, fails this append only.
            async with self.transaction() as conn:
                return [await self._apply(conn, requests[0], _now())]
        outcomes: dict[int, AppendResult | BaseException] = {}
        pending = list(range(len(requests)))
        careful = False
        while pending:
            try:
                async with self.transaction() as conn:
                    now = _now()
                    done: dict[int, AppendResult | BaseException] = {}
                    for i in pending:
                        done[i] = await self._attempt(conn, i, requests[i], now, careful)
            except _Culprit as culprit:
                if careful:
                    outcomes[culprit.index] = culprit.error
                    pending.remove(culprit.index)
                careful = True
                continue
            outcomes.update(done)
            break
        return [outcomes[i] for i in range(len(requests))]

    async def _attempt(
        self, conn: sqlite3.Connection, index: int, request: AppendRequest, now: str, careful: bool
    ) -> AppendResult | BaseException:
        """One append of a shared commit: its result, its own failure, or _Culprit."""
        guarded = careful or bool(self._hooks) or len(request.events) > 1 or bool(request.forgets)
        if guarded:
            conn.execute("SAVEPOINT chronik_append")
        try:
            result = await self._apply(conn, request, now)
        except Exception as exc:
            error = self._translate(exc)
            if not conn.in_transaction:
                raise _Culprit(index, error) from exc
            if guarded:
                conn.execute("ROLLBACK TO chronik_append")
                conn.execute("RELEASE chronik_append")
                return error
            if isinstance(exc, ConcurrencyError | DuplicateEventError | SubjectForgottenError):
                return error  # refused before it wrote, or one statement that wrote nothing
            raise _Culprit(index, error) from exc
        if guarded:
            conn.execute("RELEASE chronik_append")
        return result

    async def _apply(
        self, conn: sqlite3.Connection, request: AppendRequest, now: str
    ) -> AppendResult:
        """Write one append and run the hooks on it."""
        result = _append_request(conn, request, now)
        if self._hooks:
            await self._run_hooks(conn, request, result, datetime.fromisoformat(now))
        return result

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            error = StoreUnavailableError(f"SQLite {self.path}: {exc}")
            error.__cause__ = exc
            return error
        return exc

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction, waiting (without blocking) for the lock."""
        async with self.transaction() as conn:
            return work(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        """A write transaction on the store's connection, for appends and read models.

        Writers in this process take turns on an asyncio lock; another process holding
        SQLite's write lock is waited for without blocking the loop, up to lock_timeout.
        """
        async with self._write_lock:
            conn = self._writer
            await self._begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc
                raise

    async def _begin(self, conn: sqlite3.Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        delay = 0.001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc
                if loop.time() >= deadline:
                    raise StoreUnavailableError(
                        f"SQLite {self.path} stayed locked by another connection for "
                        f"{self._lock_timeout:g} s"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    async def checkpoint_wal(self, *, wait: bool = True) -> bool:
        """Copy the write-ahead log into the database file and truncate the log.

        Called after forgetting: secure_delete zeroes deleted content in the pages, but
        the log keeps earlier copies of them until a checkpoint resets it. A reader of
        another process still on an older snapshot holds it up: with ``wait`` it is
        tried again (without blocking the loop) up to lock_timeout. False (and a
        warning) if it could not finish; the next forget, or the next open, tries again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._lock_timeout if wait else 0.0)
        delay = 0.001
        while True:
            async with self._write_lock:
                try:
                    busy = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                except sqlite3.Error as exc:
                    # What called it has committed: a failure here must not undo that.
                    if not _is_busy(exc):
                        log.warning("SQLite %s: checkpoint failed: %s", self.path, exc)
                        return False
                    busy = 1
            if not busy:
                return True
            if loop.time() >= deadline:
                if wait:
                    log.warning(
                        "SQLite %s: the write-ahead log could not be checkpointed within "
                        "%g s (another connection reads an old snapshot); forgotten data "
                        "may stay in it until the next checkpoint",
                        self.path,
                        self._lock_timeout,
                    )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> None:
        """Apply the named migrations not yet applied, each once, in one transaction."""
        await self._write(lambda conn: _migrate(conn, migrations))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read on the reader connection (read models use it too)."""
        return self._query(sql, params)

    # -- reading -----------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc

    async def _stream_rows(
        self, stream_id: str, start: int, stop: int | None, limit: int | None, backwards: bool
    ) -> list[Row]:
        lim = -1 if limit is None else limit
        if backwards:
            if start == 0:
                sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? ORDER BY version DESC LIMIT ?"  # noqa: E501
                return self._query(sql, (stream_id, lim))
            sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? AND version <= ? ORDER BY version DESC LIMIT ?"  # noqa: E501
            return self._query(sql, (stream_id, start, lim))
        if stop is None:
            sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT ?"  # noqa: E501
            return self._query(sql, (stream_id, start, lim))
        sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? AND version >= ? AND version <= ? ORDER BY version LIMIT ?"  # noqa: E501
        return self._query(sql, (stream_id, start, stop, lim))

    async def _all_rows(
        self, after: int, limit: int, types: list[str] | None = None, upto: int | None = None
    ) -> list[Row]:
        if types is None:
            sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE position > ? ORDER BY position LIMIT ?"  # noqa: E501
            return self._query(sql, (after, limit))
        marks = ",".join("?" * len(types))
        sql = (
            f"SELECT {_COLUMNS} FROM chronik_events WHERE position > ? AND position <= ? "
            f"AND type IN ({marks}) ORDER BY position LIMIT ?"
        )
        return self._query(sql, (after, upto if upto is not None else 1 << 62, *types, limit))

    async def _stream_list(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        # A range on the (stream_id, version) index: no LIKE, so '%' and '_' are data.
        return [
            (s, v)
            for s, v in self._query(
                "SELECT stream_id, max(version) FROM chronik_events WHERE stream_id >= ? "
                "AND substr(stream_id, 1, ?) = ? GROUP BY stream_id ORDER BY stream_id LIMIT ?",
                (prefix, len(prefix), prefix, limit),
            )
        ]

    async def _event_row(self, event_id: UUID) -> Row | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM chronik_events WHERE id = ?", (event_id.bytes,))
        return rows[0] if rows else None

    async def _stream_version(self, stream_id: str) -> int:
        return int(self._query(_VERSION, (stream_id,))[0][0])

    async def _version_at(self, stream_id: str, when: datetime) -> int:
        rows = self._query(
            "SELECT coalesce(max(version), 0) FROM chronik_events "
            "WHERE stream_id = ? AND recorded_at <= ?",
            (stream_id, _iso(when)),
        )
        return int(rows[0][0])

    async def head_position(self) -> int:
        return int(self._query("SELECT coalesce(max(position), 0) FROM chronik_events", ())[0][0])

    # -- keys and snapshots ------------------------------------------------------------

    async def _keys(self, subjects: set[str], *, create: bool) -> dict[str, bytes]:
        wanted = sorted(subjects)
        marks = ",".join("?" * len(wanted))
        # A row without a key is a forgotten subject: it is never given one again.
        sql = f"SELECT subject, key FROM chronik_subject_keys WHERE subject IN ({marks})"
        rows = self._query(sql, wanted)
        missing = [s for s in wanted if s not in {subject for subject, _ in rows}]
        if create and missing:

            def insert(conn: sqlite3.Connection) -> None:
                now = _now()
                conn.executemany(
                    "INSERT OR IGNORE INTO chronik_subject_keys (subject, key, created_at) "
                    "VALUES (?, ?, ?)",
                    [(s, new_subject_key(), now) for s in missing],
                )

            await self._write(insert)
            rows = self._query(sql, wanted)
        return {s: bytes(k) for s, k in rows if k is not None}

    async def _forget(self, subject: str) -> None:
        await self._write(lambda conn: _forget_in(conn, (subject,), _now()))
        await self.checkpoint_wal()

    async def _forgotten_among(self, subjects: set[str]) -> set[str]:
        found: set[str] = set()
        wanted = sorted(subjects)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(
                s
                for (s,) in self._query(
                    "SELECT subject FROM chronik_subject_keys WHERE forgotten_at IS NOT NULL "
                    f"AND subject IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return found

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        subjects = _subjects_encode(snapshot.subjects)
        row = (
            snapshot.stream_id,
            snapshot.version,
            snapshot.schema,
            snapshot.state,
            subjects,
            _now(),
            subjects,
        )

        def insert(conn: sqlite3.Connection) -> None:
            # Not for a forgotten subject: it would bring their data back.
            conn.execute(
                "INSERT OR REPLACE INTO chronik_snapshots "
                "(stream_id, version, schema, state, subjects, recorded_at) "
                "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM chronik_subject_keys "
                "WHERE forgotten_at IS NOT NULL AND subject IN (SELECT value FROM json_each(?)))",
                row,
            )

        await self._write(insert)

    async def load_snapshot(
        self, stream_id: str, *, max_version: int | None = None
    ) -> Snapshot | None:
        top = (1 << 62) if max_version is None else max_version
        rows = self._query(
            "SELECT version, schema, state, subjects FROM chronik_snapshots "
            "WHERE stream_id = ? AND version <= ? ORDER BY version DESC LIMIT 1",
            (stream_id, top),
        )
        if not rows:
            return None
        version, schema, state, subjects = rows[0]
        return Snapshot(stream_id, version, schema, bytes(state), _subjects_decode(subjects))


def _check_exists(file: Path) -> None:
    """StoreNotFoundError unless ``file`` is a database with chronik's events table.

    Looked at read-only, so that a file that is not a store is not touched (not even
    switched to WAL).
    """
    if not file.is_file():
        raise StoreNotFoundError(f"SQLite database {str(file)!r} does not exist")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chronik_events'"
            ).fetchone()
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"cannot open SQLite database {str(file)!r}: {exc}") from exc
    if found is None:
        raise StoreNotFoundError(f"SQLite database {str(file)!r} has no chronik tables")


def _connect(file: Path, synchronous: str, busy_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreUnavailableError(f"SQLite {file}: cannot switch to WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Deleted content (a forgotten subject's key, a read model's old document) is
    # overwritten with zeros, not left in free space; freed pages too.
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def _migrate(conn: sqlite3.Connection, migrations: Sequence[tuple[str, str]]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS chronik_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    done = {name for (name,) in conn.execute("SELECT name FROM chronik_migrations")}
    for name, script in migrations:
        if name in done:
            continue
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO chronik_migrations VALUES (?, ?)", (name, _now()))


def _append_request(conn: sqlite3.Connection, request: AppendRequest, now: str) -> AppendResult:
    """One append with what it does to data subjects, in the caller's transaction.

    The keys that sealed its personal fields must still be there (no forget committed
    since they were read); the subjects its events forget are forgotten with it.
    """
    if request.sealed:
        marks = ",".join("?" * len(request.sealed))
        kept = {
            subject
            for (subject,) in conn.execute(
                f"SELECT subject FROM chronik_subject_keys WHERE subject IN ({marks}) "
                "AND key IS NOT NULL",
                request.sealed,
            )
        }
        for subject in request.sealed:
            if subject not in kept:
                raise SubjectForgottenError(subject)
    result = _append_one(conn, request, now)
    if request.forgets:
        _forget_in(conn, request.forgets, now)
    return result


def _forget_in(conn: sqlite3.Connection, subjects: Sequence[str], now: str) -> None:
    """Delete the subjects' keys and snapshots, leaving their tombstones."""
    for subject in subjects:
        conn.execute(
            "INSERT INTO chronik_subject_keys (subject, key, created_at, forgotten_at) "
            "VALUES (?, NULL, ?, ?) ON CONFLICT (subject) DO UPDATE SET key = NULL, "
            "forgotten_at = coalesce(forgotten_at, excluded.forgotten_at)",
            (subject, now, now),
        )
        conn.execute(
            "DELETE FROM chronik_snapshots WHERE EXISTS "
            "(SELECT 1 FROM json_each(chronik_snapshots.subjects) WHERE value = ?)",
            (subject,),
        )


def _append_one(conn: sqlite3.Connection, request: AppendRequest, now: str) -> AppendResult:
    stream_id = request.stream_id
    expected = request.expected
    events = request.events
    current = -1
    try:
        if len(events) == 1:
            # Check and insert in one statement: the common case costs what a raw insert does.
            e = events[0]
            row = conn.execute(
                _INSERT_CHECKED,
                (
                    stream_id,
                    e.id.bytes,
                    e.type,
                    e.schema_version,
                    now,
                    e.data,
                    e.correlation_id,
                    e.causation_id,
                    e.headers,
                    stream_id,
                    expected,
                    expected,
                ),
            ).fetchone()
            if row is None:
                raise _conflict(conn, stream_id, expected)
            return AppendResult(stream_id, row[1], row[0], row[0])
        (current,) = conn.execute(_VERSION, (stream_id,)).fetchone()
        if expected >= 0 and expected != current:
            raise ConcurrencyError(stream_id, str(ExpectedVersion(expected)), current)
        conn.executemany(
            _INSERT,
            [
                (
                    stream_id,
                    current + i,
                    e.id.bytes,
                    e.type,
                    e.schema_version,
                    now,
                    e.data,
                    e.correlation_id,
                    e.causation_id,
                    e.headers,
                )
                for i, e in enumerate(events, start=1)
            ],
        )
    except sqlite3.IntegrityError as exc:
        if "chronik_events.id" not in str(exc):
            raise
        raise _duplicate(conn, stream_id, current, [e.id.bytes for e in events]) from None
    (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
    n = len(events)
    return AppendResult(stream_id, current + n, last - n + 1, last)


def _conflict(conn: sqlite3.Connection, stream_id: str, expected: int) -> ConcurrencyError:
    (current,) = conn.execute(_VERSION, (stream_id,)).fetchone()
    return ConcurrencyError(stream_id, str(ExpectedVersion(expected)), current)


def _duplicate(
    conn: sqlite3.Connection, stream_id: str, current: int, ids: list[bytes]
) -> DuplicateEventError:
    """Name the reused id. Rows this append wrote before failing (above ``current``) are ours."""
    marks = ",".join("?" * len(ids))
    taken = conn.execute(
        f"SELECT id FROM chronik_events WHERE id IN ({marks}) "
        "AND NOT (stream_id = ? AND version > ? AND ? >= 0)",
        [*ids, stream_id, current, current],
    ).fetchone()
    if taken:
        return DuplicateEventError(stream_id, str(uuid_from_bytes(taken[0])))
    seen: set[bytes] = set()
    for event_id in ids:
        if event_id in seen:
            return DuplicateEventError(stream_id, str(uuid_from_bytes(event_id)))
        seen.add(event_id)
    return DuplicateEventError(stream_id, str(uuid_from_bytes(ids[0])))
