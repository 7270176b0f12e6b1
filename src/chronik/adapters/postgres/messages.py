"""Outbox, inbox and dead letters in the PostgreSQL schema of the event store.

One relay per database: it holds an advisory lock on a connection of its own, so
two replicas never interleave a stream's messages; a standby takes over when the
holder's connection goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from chronik.adapters.postgres import schema as ddl
from chronik.adapters.postgres.leases import AdvisoryLease, advisory_lease
from chronik.adapters.postgres.schema import in_schema
from chronik.errors import DuplicateMessageError
from chronik.messaging.port import DeadLetter, OutboxBacklog, OutboxRow, OutboxStatus

if TYPE_CHECKING:
    from chronik.adapters.postgres.database import PostgresDatabase

__all__ = ["PostgresMessageStorage"]


class PostgresMessageStorage:
    """The message tables of a PostgreSQL schema, written in its database's transactions."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.schema = database.schema

    def _q(self, template: str) -> str:
        return in_schema(template, self.schema)

    async def setup(self) -> None:
        await self.database.migrate(ddl.MESSAGES)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self.database.transaction() as conn:
            cur = await conn.execute(self._q(sql), params)
            return await cur.fetchall() if cur.description else []

    async def _statement(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement in autocommit: a round trip, where a transaction takes three."""
        try:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(self._q(sql), params)
                return await cur.fetchall() if cur.description else []
        except psycopg.OperationalError as exc:
            raise self.database.unavailable(exc) from exc

    async def add_outbox(self, conn: Any, rows: Sequence[OutboxRow]) -> None:
        await conn.execute(
            self._q(
                "INSERT INTO {s}.chronik_outbox (position, message_id, stream_id, type, body) "
                "SELECT * FROM unnest("
                "%b::bigint[], %b::text[], %b::text[], %b::text[], %b::bytea[])"
            ),
            (
                [r.position for r in rows],
                [r.message_id for r in rows],
                [r.stream_id for r in rows],
                [r.type for r in rows],
                [r.body for r in rows],
            ),
        )

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        async with self.database.transaction() as conn:
            cur = conn.cursor(binary=True)
            await cur.execute(
                self._q(
                    "SELECT position, message_id, stream_id, type, body FROM {s}.chronik_outbox "
                    "WHERE published_at IS NULL AND position > %s ORDER BY position LIMIT %s"
                ),
                (after, limit),
            )
            rows = await cur.fetchall()
        return [OutboxRow(p, m, s, t, bytes(b)) for p, m, s, t, b in rows]

    async def mark_published(self, positions: Sequence[int]) -> None:
        await self._rows(
            "UPDATE {s}.chronik_outbox SET published_at = now() WHERE position = ANY(%b::bigint[])",
            (list(positions),),
        )

    async def outbox_status(self) -> OutboxStatus:
        [(pending, oldest, published)] = await self._rows(
            "SELECT count(*) FILTER (WHERE published_at IS NULL), "
            "min(created_at) FILTER (WHERE published_at IS NULL), "
            "count(*) FILTER (WHERE published_at IS NOT NULL) FROM {s}.chronik_outbox"
        )
        return OutboxStatus(pending, oldest, published)

    async def outbox_backlog(self) -> OutboxBacklog:
        # On the partial index of the pending rows: it costs the backlog, not the table.
        [(pending, oldest)] = await self._rows(
            "SELECT count(*), min(created_at) FROM {s}.chronik_outbox WHERE published_at IS NULL"
        )
        return OutboxBacklog(pending, oldest)

    async def purge_published(self, older_than_seconds: float) -> int:
        async with self.database.transaction() as conn:
            cur = await conn.execute(
                self._q(
                    "DELETE FROM {s}.chronik_outbox WHERE published_at IS NOT NULL "
                    "AND published_at < now() - make_interval(secs => %s)"
                ),
                (older_than_seconds,),
            )
            return cur.rowcount

    @contextlib.asynccontextmanager
    async def relay_leadership(self) -> AsyncIterator[bool]:
        async with self.lease("relay") as lease:
            yield lease.held

    def lease(self, name: str) -> contextlib.AbstractAsyncContextManager[AdvisoryLease]:
        """The named lease (``chronik.adapters.postgres.leases``): ``relay``, ``consumer:NAME``."""
        return advisory_lease(self.database, name)

    async def mark_handled(self, conn: Any, consumer: str, message_id: str) -> None:
        cur = await conn.execute(
            self._q(
                "INSERT INTO {s}.chronik_inbox (consumer, message_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING"
            ),
            (consumer, message_id),
        )
        if cur.rowcount != 1:
            raise DuplicateMessageError(f"{consumer} already handled {message_id}")

    async def handled(self, consumer: str, message_id: str) -> bool:
        rows = await self._statement(
            "SELECT 1 FROM {s}.chronik_inbox WHERE consumer = %s AND message_id = %s",
            (consumer, message_id),
        )
        return bool(rows)

    async def handled_among(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        rows = await self._statement(
            "SELECT message_id FROM {s}.chronik_inbox WHERE consumer = %s "
            "AND message_id = ANY(%s::text[])",
            (consumer, list(message_ids)),
        )
        return {r[0] for r in rows}

    async def record_handled(self, consumer: str, message_id: str) -> bool:
        rows = await self._statement(
            "INSERT INTO {s}.chronik_inbox (consumer, message_id) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            (consumer, message_id),
        )
        return bool(rows)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        # Buried again, it is a new failure: it replaces the letter, and a request to
        # redeliver the old one is void (asked for again once fixed, not looped).
        async with self.database.transaction() as conn:
            await conn.execute(
                self._q(
                    "INSERT INTO {s}.chronik_dead_letters "
                    "(consumer, message_id, type, body, error, attempts, dead_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (consumer, message_id) DO UPDATE SET type = excluded.type, "
                    "body = excluded.body, error = excluded.error, attempts = excluded.attempts, "
                    "dead_at = excluded.dead_at, requested_at = NULL"
                ),
                (
                    letter.consumer,
                    letter.message_id,
                    letter.type,
                    letter.body,
                    letter.error,
                    letter.attempts,
                    letter.dead_at,
                ),
            )
            await conn.execute(
                self._q(
                    "INSERT INTO {s}.chronik_inbox (consumer, message_id) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING"
                ),
                (letter.consumer, letter.message_id),
            )

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetter]:
        where, params = ("WHERE consumer = %s", (consumer,)) if consumer else ("", ())
        rows = await self._rows(
            "SELECT consumer, message_id, type, body, error, attempts, dead_at "
            f"FROM {{s}}.chronik_dead_letters {where} ORDER BY dead_at",
            params,
        )
        return [DeadLetter(c, m, t, bytes(b), e, a, d) for c, m, t, b, e, a, d in rows]

    async def request_redelivery(self, consumer: str, message_id: str) -> bool:
        rows = await self._rows(
            "UPDATE {s}.chronik_dead_letters SET requested_at = now() "
            "WHERE consumer = %s AND message_id = %s RETURNING 1",
            (consumer, message_id),
        )
        return bool(rows)

    async def requested_redeliveries(self, consumer: str) -> list[str]:
        rows = await self._rows(
            "SELECT message_id FROM {s}.chronik_dead_letters WHERE consumer = %s "
            "AND requested_at IS NOT NULL ORDER BY dead_at",
            (consumer,),
        )
        return [r[0] for r in rows]

    async def remove_dead_letter(self, consumer: str, message_id: str) -> None:
        async with self.database.transaction() as conn:
            for table in ("chronik_dead_letters", "chronik_inbox"):
                await conn.execute(
                    self._q(f"DELETE FROM {{s}}.{table} WHERE consumer = %s AND message_id = %s"),
                    (consumer, message_id),
                )
