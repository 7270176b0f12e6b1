"""Outbox, inbox and dead letters in the SQLite file of the event store.

One relay per database file, whichever process opened it: the relay holds an exclusive
``flock`` on a file beside the database (``events.db-relay.lock``), which the kernel
releases when the holder leaves or its process dies; a standby takes over then.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chronik.adapters.sqlite import schema
from chronik.errors import DuplicateMessageError, StoreUnavailableError
from chronik.messaging.port import DeadLetter, OutboxBacklog, OutboxRow, OutboxStatus
from chronik.worker import GRANTED, REFUSED, Lease

if TYPE_CHECKING:
    from chronik.adapters.sqlite.database import SQLiteDatabase

__all__ = ["SQLiteMessageStorage"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class SQLiteMessageStorage:
    """The message tables of a SQLite database, written in its transactions."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self.database = database

    async def setup(self) -> None:
        await self.database.migrate(schema.MESSAGES)

    async def add_outbox(self, conn: Any, rows: Sequence[OutboxRow]) -> None:
        now = _now()
        conn.executemany(
            "INSERT INTO chronik_outbox (position, message_id, stream_id, type, body, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(r.position, r.message_id, r.stream_id, r.type, r.body, now) for r in rows],
        )

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        rows = self.database.query(
            "SELECT position, message_id, stream_id, type, body FROM chronik_outbox "
            "WHERE published_at IS NULL AND position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [OutboxRow(p, m, s, t, bytes(b)) for p, m, s, t, b in rows]

    async def mark_published(self, positions: Sequence[int]) -> None:
        now = _now()
        async with self.database.transaction() as conn:
            conn.executemany(
                "UPDATE chronik_outbox SET published_at = ? WHERE position = ?",
                [(now, p) for p in positions],
            )

    async def outbox_status(self) -> OutboxStatus:
        [(pending, oldest, published)] = self.database.query(
            "SELECT count(*) FILTER (WHERE published_at IS NULL), "
            "min(created_at) FILTER (WHERE published_at IS NULL), "
            "count(*) FILTER (WHERE published_at IS NOT NULL) FROM chronik_outbox"
        )
        return OutboxStatus(pending, datetime.fromisoformat(oldest) if oldest else None, published)

    async def outbox_backlog(self) -> OutboxBacklog:
        # On the partial index of the pending rows: it costs the backlog, not the table.
        [(pending, oldest)] = self.database.query(
            "SELECT count(*), min(created_at) FROM chronik_outbox WHERE published_at IS NULL"
        )
        return OutboxBacklog(pending, (datetime.fromisoformat(oldest) if oldest else None))

    async def purge_published(self, older_than_seconds: float) -> int:
        cutoff = (datetime.now(UTC) - timedelta(seconds=older_than_seconds)).isoformat(
            timespec="microseconds"
        )
        async with self.database.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM chronik_outbox WHERE published_at IS NOT NULL AND published_at < ?",
                (cutoff,),
            )
            return cur.rowcount

    @contextlib.asynccontextmanager
    async def relay_leadership(self) -> AsyncIterator[bool]:
        # A lock of its own, not SQLite's: that one is held only while a transaction
        # runs. flock locks belong to the open file, so two openings in one process
        # exclude each other too.
        path = self.database.path.with_name(self.database.path.name + "-relay.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreUnavailableError(f"SQLite {self.database.path}: relay lock: {exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                leading = True
            except BlockingIOError:
                leading = False
            yield leading
        finally:
            os.close(fd)  # releases the lock

    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Lease]:
        """The named lease: ``relay`` as above; any other is granted (one process owns
        the file)."""
        if name != "relay":
            yield GRANTED
            return
        async with self.relay_leadership() as leading:
            yield GRANTED if leading else REFUSED

    async def mark_handled(self, conn: Any, consumer: str, message_id: str) -> None:
        try:
            conn.execute(
                "INSERT INTO chronik_inbox (consumer, message_id, handled_at) VALUES (?, ?, ?)",
                (consumer, message_id, _now()),
            )
        except sqlite3.IntegrityError:
            raise DuplicateMessageError(f"{consumer} already handled {message_id}") from None

    async def handled(self, consumer: str, message_id: str) -> bool:
        rows = self.database.query(
            "SELECT 1 FROM chronik_inbox WHERE consumer = ? AND message_id = ?",
            (consumer, message_id),
        )
        return bool(rows)

    async def handled_among(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(message_ids)
        for start in range(0, len(ids), 500):  # within SQLite's limit of parameters
            chunk = ids[start : start + 500]
            rows = self.database.query(
                "SELECT message_id FROM chronik_inbox WHERE consumer = ? "
                f"AND message_id IN ({', '.join('?' * len(chunk))})",
                (consumer, *chunk),
            )
            found.update(r[0] for r in rows)
        return found

    async def record_handled(self, consumer: str, message_id: str) -> bool:
        async with self.database.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO chronik_inbox (consumer, message_id, handled_at) "
                "VALUES (?, ?, ?)",
                (consumer, message_id, _now()),
            )
            return cur.rowcount == 1

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        async with self.database.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO chronik_dead_letters "
                "(consumer, message_id, type, body, error, attempts, dead_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    letter.consumer,
                    letter.message_id,
                    letter.type,
                    letter.body,
                    letter.error,
                    letter.attempts,
                    letter.dead_at.isoformat(),
                ),
            )
            conn.execute(
                "INSERT OR IGNORE INTO chronik_inbox (consumer, message_id, handled_at) "
                "VALUES (?, ?, ?)",
                (letter.consumer, letter.message_id, _now()),
            )

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetter]:
        where, params = ("WHERE consumer = ?", (consumer,)) if consumer else ("", ())
        rows = self.database.query(
            f"SELECT consumer, message_id, type, body, error, attempts, dead_at "
            f"FROM chronik_dead_letters {where} ORDER BY dead_at",
            params,
        )
        return [
            DeadLetter(c, m, t, bytes(b), e, a, datetime.fromisoformat(d))
            for c, m, t, b, e, a, d in rows
        ]

    async def request_redelivery(self, consumer: str, message_id: str) -> bool:
        async with self.database.transaction() as conn:
            cur = conn.execute(
                "UPDATE chronik_dead_letters SET requested_at = ? "
                "WHERE consumer = ? AND message_id = ?",
                (_now(), consumer, message_id),
            )
            return cur.rowcount == 1

    async def requested_redeliveries(self, consumer: str) -> list[str]:
        rows = self.database.query(
            "SELECT message_id FROM chronik_dead_letters WHERE consumer = ? "
            "AND requested_at IS NOT NULL ORDER BY dead_at",
            (consumer,),
        )
        return [r[0] for r in rows]

    async def remove_dead_letter(self, consumer: str, message_id: str) -> None:
        async with self.database.transaction() as conn:
            for table in ("chronik_dead_letters", "chronik_inbox"):
                conn.execute(
                    f"DELETE FROM {table} WHERE consumer = ? AND message_id = ?",
                    (consumer, message_id),
                )
