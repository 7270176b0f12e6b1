"""The PostgreSQL event store: reads, data subjects' keys and snapshots, in one schema.

Appends are ``append.py``'s (the writing half this class extends); the pool, the
schema's tables and the notifications are the database's (``database.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from chronik.adapters.postgres.append import PostgresAppends
from chronik.adapters.postgres.schema import CATEGORY, in_schema
from chronik.eventstore.base import Row
from chronik.eventstore.codec import EventTypes, new_subject_key
from chronik.eventstore.port import Snapshot

if TYPE_CHECKING:
    from chronik.adapters.postgres.database import PostgresDatabase

__all__ = ["PostgresEventStore"]

# The time as UTC without a zone: psycopg's timestamptz loader converts every value into
# the session's zone (a tzinfo call per row); one replace(tzinfo=UTC) per distinct time
# is cheaper, and events appended together share their time.
_COLUMNS = (
    "position, stream_id, version, id, type, schema_version, recorded_at AT TIME ZONE 'UTC', "
    "data, correlation_id, causation_id, headers"
)


def _utc(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)


class PostgresEventStore(PostgresAppends):
    """An event store in one PostgreSQL schema, handed out by its ``PostgresDatabase``."""

    _load_time = staticmethod(_utc)

    def __init__(
        self, database: PostgresDatabase, types: EventTypes, *, closes_database: bool = False
    ) -> None:
        super().__init__(database, types, closes_database=closes_database)
        s = self.schema
        self._sql_all = in_schema(
            f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE position > %s "
            "ORDER BY position LIMIT %s",
            s,
        )
        # A filtered read walks one range of an index per name (the type's or the
        # category's events in position order, limited) and merges them: the events of
        # other types or categories are never visited. The range is a row comparison on
        # the index's two columns: the planner cannot know how rare a name from unnest
        # is, and given "by = name AND position > after" it would take the primary key
        # and filter, reading every event above ``after``; a row comparison only the
        # (by, position) index can serve leaves it no such choice.
        self._sql_all_filtered = {
            (by, both): in_schema(
                f"SELECT {_COLUMNS} FROM unnest(%s::text[]) AS f(name) CROSS JOIN LATERAL ("
                f"SELECT * FROM {{s}}.chronik_events WHERE {by} = f.name "
                f"AND ({by}, position) > (f.name, %s) AND ({by}, position) <= (f.name, %s)"
                f"{f' AND {CATEGORY} = ANY(%s::text[])' if both else ''} "
                f"ORDER BY {by}, position LIMIT %s) AS e ORDER BY position LIMIT %s",
                s,
            )
            for by in ("type", CATEGORY)
            for both in (False, True)
        }
        # The same with the head first, in one statement (one round trip, one snapshot):
        # each row is the head and an event's columns; the head alone when none matched.
        self._sql_page_filtered = {
            (by, both): in_schema(
                "WITH h AS MATERIALIZED (SELECT coalesce(max(position), 0) AS head "
                "FROM {s}.chronik_events) "
                f"SELECT h.head, p.* FROM h LEFT JOIN LATERAL (SELECT {_COLUMNS} "
                "FROM unnest(%s::text[]) AS f(name) CROSS JOIN LATERAL ("
                f"SELECT * FROM {{s}}.chronik_events WHERE {by} = f.name "
                f"AND ({by}, position) > (f.name, %s) AND ({by}, position) <= (f.name, h.head)"
                f"{f' AND {CATEGORY} = ANY(%s::text[])' if both else ''} "
                f"ORDER BY {by}, position LIMIT %s) AS e ORDER BY position LIMIT %s"
                ") AS p ON true ORDER BY p.position",
                s,
            )
            for by in ("type", CATEGORY)
            for both in (False, True)
        }
        self._sql_stream = in_schema(
            f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE stream_id = %s "
            "AND version >= %s AND version <= %s ORDER BY version LIMIT %s",
            s,
        )
        self._sql_stream_back = in_schema(
            f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE stream_id = %s "
            "AND version <= %s ORDER BY version DESC LIMIT %s",
            s,
        )

        self._sql_payloads = in_schema(
            "SELECT version, type, schema_version, data FROM {s}.chronik_events "
            "WHERE stream_id = %s AND version >= %s AND version <= %s ORDER BY version",
            s,
        )

    async def wait_for_events(self, after: int, max_wait: float) -> None:
        self._database.listen()
        await self._signal.wait(after, max_wait)

    # -- reading -----------------------------------------------------------------------

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        try:
            async with self._pool.connection() as conn:
                cur = conn.cursor(binary=True)
                await cur.execute(query, params)
                rows: list[Any] = await cur.fetchall()
                return rows
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    async def _stream_rows(
        self, stream_id: str, start: int, stop: int | None, limit: int | None, backwards: bool
    ) -> list[Row]:
        lim = limit if limit is not None else 2**31 - 1
        if backwards:
            top = start if start else 2**31 - 1
            return await self._fetch(self._sql_stream_back, (stream_id, top, lim))
        return await self._fetch(
            self._sql_stream, (stream_id, start, stop if stop is not None else 2**31 - 1, lim)
        )

    async def _payload_rows(
        self, stream_id: str, start: int, stop: int | None
    ) -> list[tuple[int, str, int, bytes]]:
        top = stop if stop is not None else 2**31 - 1
        return await self._fetch(self._sql_payloads, (stream_id, start, top))

    async def _all_rows(
        self,
        after: int,
        limit: int,
        types: list[str] | None = None,
        upto: int | None = None,
        categories: list[str] | None = None,
    ) -> list[Row]:
        if types is None and categories is None:
            return await self._fetch(self._sql_all, (after, limit))
        top = upto if upto is not None else 1 << 62
        if types is None:
            sql = self._sql_all_filtered[CATEGORY, False]
            return await self._fetch(sql, (categories, after, top, limit, limit))
        if categories is None:
            sql = self._sql_all_filtered["type", False]
            return await self._fetch(sql, (types, after, top, limit, limit))
        sql = self._sql_all_filtered["type", True]
        return await self._fetch(sql, (types, after, top, categories, limit, limit))

    async def _filtered_rows(
        self, after: int, limit: int, types: list[str] | None, categories: list[str] | None
    ) -> tuple[list[Row], int]:
        if types is None:
            sql = self._sql_page_filtered[CATEGORY, False]
            params: tuple[Any, ...] = (categories, after, limit, limit)
        elif categories is None:
            sql = self._sql_page_filtered["type", False]
            params = (types, after, limit, limit)
        else:
            sql = self._sql_page_filtered["type", True]
            params = (types, after, categories, limit, limit)
        rows = await self._fetch(sql, params)
        return [row[1:] for row in rows if row[1] is not None], int(rows[0][0])

    async def _scalar(self, query: str, params: Sequence[Any]) -> int:
        rows = await self._fetch(query, params)
        return int(rows[0][0])

    async def _stream_list(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        rows = await self._fetch(
            in_schema(
                "SELECT stream_id, max(version) FROM {s}.chronik_events WHERE stream_id >= %s "
                "AND left(stream_id, %s) = %s GROUP BY stream_id ORDER BY stream_id LIMIT %s",
                self.schema,
            ),
            (prefix, len(prefix), prefix, limit),
        )
        return [(s, v) for s, v in rows]

    async def _stream_page(
        self, prefix: str, after: str, event_type: str | None, limit: int
    ) -> list[tuple[str, int]]:
        # One lower bound, so that the index range starts where the page does.
        op, bound = (">", after) if after >= prefix else (">=", prefix)
        if event_type is None:
            # The (stream_id, version) index, from past ``after``: a range, not a scan.
            sql = (
                "SELECT stream_id, max(version) FROM {s}.chronik_events WHERE stream_id {op} %s "
                "AND left(stream_id, %s) = %s GROUP BY stream_id "
                "ORDER BY stream_id LIMIT %s"
            )
            params: tuple[object, ...] = (bound, len(prefix), prefix, limit)
        else:
            # The (type, stream_id) index gives the page's ids; each one's version is a
            # lookup on (stream_id, version).
            sql = (
                "SELECT p.stream_id, (SELECT max(v.version) FROM {s}.chronik_events v "
                "WHERE v.stream_id = p.stream_id) FROM (SELECT DISTINCT stream_id "
                "FROM {s}.chronik_events WHERE type = %s AND stream_id {op} %s "
                "AND left(stream_id, %s) = %s ORDER BY stream_id LIMIT %s) p "
                "ORDER BY p.stream_id"
            )
            params = (event_type, bound, len(prefix), prefix, limit)
        rows = await self._fetch(in_schema(sql.replace("{op}", op), self.schema), params)
        return [(s, v) for s, v in rows]

    async def _correlation_rows(self, correlation_id: str, limit: int) -> list[Row]:
        rows: list[Row] = await self._fetch(
            in_schema(
                f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE correlation_id = %s "
                "ORDER BY position LIMIT %s",
                self.schema,
            ),
            (correlation_id, limit),
        )
        return rows

    async def _event_row(self, event_id: UUID) -> Row | None:
        rows = await self._fetch(
            in_schema(f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE id = %s", self.schema),
            (event_id,),
        )
        return rows[0] if rows else None

    async def _stream_version(self, stream_id: str) -> int:
        return await self._scalar(
            in_schema(
                "SELECT coalesce(max(version), 0) FROM {s}.chronik_events WHERE stream_id = %s",
                self.schema,
            ),
            (stream_id,),
        )

    async def _version_at(self, stream_id: str, when: datetime) -> int:
        return await self._scalar(
            in_schema(
                "SELECT coalesce(max(version), 0) FROM {s}.chronik_events "
                "WHERE stream_id = %s AND recorded_at <= %s",
                self.schema,
            ),
            (stream_id, when),
        )

    async def head_position(self) -> int:
        return await self._scalar(
            in_schema("SELECT coalesce(max(position), 0) FROM {s}.chronik_events", self.schema), ()
        )

    # -- keys and snapshots ------------------------------------------------------------

    async def _keys(self, subjects: set[str], *, create: bool) -> dict[str, bytes]:
        wanted = sorted(subjects)
        # A row without a key is a forgotten subject (the tombstone): the insert below
        # conflicts with it, so a forgotten subject is never given a key again.
        select = in_schema(
            "SELECT subject, key FROM {s}.chronik_subject_keys WHERE subject = ANY(%s::text[])",
            self.schema,
        )
        rows = await self._fetch(select, (wanted,))
        missing = [s for s in wanted if s not in {subject for subject, _ in rows}]
        if create and missing:
            insert = in_schema(
                "INSERT INTO {s}.chronik_subject_keys (subject, key) "
                "SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT DO NOTHING "
                "RETURNING subject, key",
                self.schema,
            )
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(
                        insert, (missing, [new_subject_key() for _ in missing])
                    )
                    made = await cur.fetchall()
            except psycopg.Error as exc:
                raise self._unavailable(exc) from exc
            if len(made) == len(missing):
                rows = [*rows, *made]  # all made now: no need to read them back
            else:  # another writer made some first, or they are forgotten (tombstones)
                rows = await self._fetch(select, (wanted,))
        return {s: bytes(k) for s, k in rows if k is not None}

    async def _forget(self, subject: str) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    in_schema(
                        "SELECT {s}.chronik_forget(ARRAY[%s::text], clock_timestamp())",
                        self.schema,
                    ),
                    (subject,),
                )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    async def _forgotten_among(self, subjects: set[str]) -> set[str]:
        rows = await self._fetch(
            in_schema(
                "SELECT subject FROM {s}.chronik_subject_keys "
                "WHERE subject = ANY(%s::text[]) AND forgotten_at IS NOT NULL",
                self.schema,
            ),
            (sorted(subjects),),
        )
        return {subject for (subject,) in rows}

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        # Not for a forgotten subject: it would bring their data back. The subjects'
        # rows are locked first, so a forget either waits for this snapshot (and then
        # deletes it) or is seen by the insert.
        lock = in_schema(
            "SELECT 1 FROM {s}.chronik_subject_keys WHERE subject = ANY(%s::text[]) "
            "ORDER BY subject FOR SHARE",
            self.schema,
        )
        query = in_schema(
            "INSERT INTO {s}.chronik_snapshots (stream_id, version, schema, state, subjects) "
            "SELECT %s, %s, %s, %s, %s::text[] WHERE NOT EXISTS (SELECT 1 FROM "
            "{s}.chronik_subject_keys WHERE subject = ANY(%s::text[]) AND key IS NULL) "
            "ON CONFLICT (stream_id, version) DO UPDATE "
            "SET schema = excluded.schema, state = excluded.state, subjects = excluded.subjects",
            self.schema,
        )
        subjects = list(snapshot.subjects)
        params = (
            snapshot.stream_id,
            snapshot.version,
            snapshot.schema,
            snapshot.state,
            subjects,
            subjects,
        )
        try:
            async with self._pool.connection() as conn, conn.transaction():
                if subjects:
                    await conn.execute(lock, (subjects,))
                await conn.execute(query, params)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    async def load_snapshot(
        self, stream_id: str, *, max_version: int | None = None
    ) -> Snapshot | None:
        rows = await self._fetch(
            in_schema(
                "SELECT version, schema, state, subjects FROM {s}.chronik_snapshots "
                "WHERE stream_id = %s AND version <= %s ORDER BY version DESC LIMIT 1",
                self.schema,
            ),
            (stream_id, max_version if max_version is not None else 2**31 - 1),
        )
        if not rows:
            return None
        version, schema, state, subjects = rows[0]
        return Snapshot(stream_id, version, schema, bytes(state), tuple(subjects))
