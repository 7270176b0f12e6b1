"""The SQLite database: one file in WAL mode, its connections, write lock and migrations.

SQLite calls run on the event loop's thread. A hop to a worker thread and back
costs about 60 us on the machines we measured, a third of a synchronous commit,
while a commit blocks the loop only for its own fsync. The write lock is taken
without waiting (``busy_timeout=0``); when another process holds it, the database
waits asynchronously and tries again, so the loop never sleeps inside SQLite.
See docs/adr/0003-sqlite-on-the-event-loop.md.

One writer connection serves every role (appends, outbox, inbox, read models), so that
they share transactions; reads go through a second connection. Forgetting reaches the
files: connections run with ``secure_delete`` (deleted content is overwritten with
zeros), and ``checkpoint_wal`` empties the write-ahead log, which still holds earlier
copies of the pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import textwrap
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from chronik.adapters.port import Migration
from chronik.adapters.sqlite import schema
from chronik.adapters.sqlite.eventstore import NOT_NOW, NotNow, SQLiteEventStore
from chronik.adapters.sqlite.messages import SQLiteMessageStorage
from chronik.adapters.sqlite.readmodels import SQLiteProjectionBackend
from chronik.errors import (
    ConfigurationError,
    MigrationsPendingError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from chronik.eventstore.codec import EventTypes
from chronik.eventstore.signal import HeadSignal

__all__ = ["SQLiteDatabase"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


class SQLiteDatabase:
    """One SQLite file. Open it with ``SQLiteDatabase.open``."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        lock_timeout: float,
        *,
        auto_migrate: bool = True,
    ) -> None:
        self.path = path
        #: False: no DDL at all; ``migrate`` checks instead (MigrationsPendingError)
        self.auto_migrate = auto_migrate
        self.url = f"sqlite:///{path}"
        #: every write transaction runs on this connection, one at a time
        self.writer = writer
        self.reader = reader
        self.lock_timeout = lock_timeout
        self.signal = HeadSignal()
        self._write_lock = asyncio.Lock()
        self._messages: SQLiteMessageStorage | None = None
        self._projections: SQLiteProjectionBackend | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "full",
        lock_timeout: float = 10.0,
        create: bool = True,
        migrate: bool = True,
    ) -> SQLiteDatabase:
        """Open (and create or migrate) the database in the file at ``path``.

        ``synchronous`` is SQLite's durability setting: ``full`` (the default: every
        commit is on disk when append returns) or ``normal`` (a power cut may lose the
        last commits, never corrupt the file). With ``create=False`` a file that does
        not exist, or holds no chronik tables, raises StoreNotFoundError and is left as
        it was. With ``migrate=False`` no table is created or migrated, now or later
        (see ``migrate``), and a file that does not exist is not made: the database is
        an empty one in memory, every migration pending.
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
        if not migrate and not file.exists():  # noqa: ASYNC240  # a stat, as _check_exists does
            empty = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            return cls(file, empty, empty, lock_timeout, auto_migrate=False)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            writer = _connect(file, level, busy_ms=0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(
                f"cannot open SQLite database {str(file)!r}: {exc}"
            ) from exc
        database = cls(file, writer, writer, lock_timeout, auto_migrate=migrate)
        try:
            if migrate:
                await database.migrate(schema.EVENTS)
            database.reader = _connect(file, level, busy_ms=int(lock_timeout * 1000))
        except BaseException:
            writer.close()
            raise
        # A process killed between a forget's commit and its checkpoint left copies in
        # the log: one try now (another process's readers may hold it up; never wait).
        await database.checkpoint_wal(wait=False)
        return database

    # -- the roles ---------------------------------------------------------------------

    def event_store(self, types: EventTypes, *, closes_database: bool = False) -> SQLiteEventStore:
        return SQLiteEventStore(self, types, closes_database=closes_database)

    def messages(self) -> SQLiteMessageStorage:
        if self._messages is None:
            self._messages = SQLiteMessageStorage(self)
        return self._messages

    def projections(self) -> SQLiteProjectionBackend:
        if self._projections is None:
            self._projections = SQLiteProjectionBackend(self)
        return self._projections

    async def close(self) -> None:
        self.reader.close()
        self.writer.close()

    # -- transactions and reads --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        """A write transaction on the writer connection, for appends, messages, read models.

        Writers in this process take turns on an asyncio lock; another process holding
        SQLite's write lock is waited for without blocking the loop, up to lock_timeout.
        """
        async with self._write_lock:
            conn = self.writer
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

    def write_now(self, work: Callable[[sqlite3.Connection], T]) -> T | NotNow:
        """Run ``work`` in one write transaction at once, or return ``NOT_NOW`` untouched
        when that needs a wait (a writer of this process has its turn, or another process
        holds SQLite's write lock).

        For a lone append with nothing async in its transaction: no coroutine can run
        between the check and the commit, so it takes no turn on the asyncio lock.
        """
        if self._write_lock.locked() or self.writer.in_transaction:
            return NOT_NOW
        conn = self.writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return NOT_NOW
            raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc
            raise
        return result

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction, waiting (without blocking) for the lock."""
        async with self.transaction() as conn:
            return work(conn)

    async def _begin(self, conn: sqlite3.Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_timeout
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
                        f"{self.lock_timeout:g} s"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read on the reader connection."""
        try:
            return self.reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc

    async def checkpoint_wal(self, *, wait: bool = True) -> bool:
        """Copy the write-ahead log into the database file and truncate the log.

        Called after forgetting: secure_delete zeroes deleted content in the pages, but
        the log keeps earlier copies of them until a checkpoint resets it. A reader of
        another process still on an older snapshot holds it up: with ``wait`` it is
        tried again (without blocking the loop) up to lock_timeout. False (and a
        warning) if it could not finish; the next forget, or the next open, tries again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.lock_timeout if wait else 0.0)
        delay = 0.001
        while True:
            async with self._write_lock:
                try:
                    busy = self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                except sqlite3.Error as exc:
                    # What called it has committed: a failure here must not undo that.
                    if not _is_busy(exc):
                        log.warning(
                            "SQLite checkpoint failed",
                            extra={"database": str(self.path), "error": str(exc)},
                        )
                        return False
                    busy = 1
            if not busy:
                return True
            if loop.time() >= deadline:
                if wait:
                    log.warning(
                        "SQLite write-ahead log not checkpointed in time (another connection "
                        "reads an old snapshot); forgotten data may stay in it until the next "
                        "checkpoint",
                        extra={"database": str(self.path), "timeout": self.lock_timeout},
                    )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def migrations(self) -> list[Migration]:
        """Every migration of the file, as ``migrate`` would run it."""
        found = [Migration("schema", schema.BOOTSTRAP_NAME, schema.BOOTSTRAP + ";")]
        for part, migrations in schema.PARTS.items():
            for name, script in migrations:
                record = f"INSERT INTO chronik_migrations VALUES ('{name}', datetime('now'));"
                found.append(
                    Migration(
                        part, name, f"{textwrap.dedent(script).strip().rstrip(';')};\n{record}"
                    )
                )
        return found

    async def applied_migrations(self) -> set[str]:
        """The names in ``chronik_migrations``; empty if the file has none (no DDL)."""
        conn = self.reader
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chronik_migrations'"
        ).fetchone()
        if found is None:
            return set()
        names = {name for (name,) in conn.execute("SELECT name FROM chronik_migrations")}
        return {schema.BOOTSTRAP_NAME} | names

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> None:
        """Apply the named migrations not yet applied, each once, in one transaction.

        Opened with ``migrate=False`` this runs no DDL: MigrationsPendingError names what
        is not applied.
        """
        if not self.auto_migrate:
            applied = await self.applied_migrations()
            pending = [name for name, _ in migrations if name not in applied]
            if pending:
                raise MigrationsPendingError(
                    f"SQLite database {str(self.path)!r}: migrations {', '.join(pending)} not "
                    "applied, and CHRONIK_AUTO_MIGRATE is off: run `chronik migrate`"
                )
            return
        await self.write(lambda conn: _migrate(conn, migrations))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


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
    conn.execute(schema.BOOTSTRAP)
    done = {name for (name,) in conn.execute("SELECT name FROM chronik_migrations")}
    for name, script in migrations:
        if name in done:
            continue
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO chronik_migrations VALUES (?, ?)", (name, _now()))
