"""Read models, checkpoints and parked events in the PostgreSQL schema of the event store.

Document tables are ``(key text PRIMARY KEY, doc jsonb)``; readers use a view per table
that points at the serving generation, replaced in the same transaction as the switch.
One runner per projection across all replicas: a session advisory lock held on a
connection of its own, with takeover when the holder's connection goes. The
checkpoint update also checks the checkpoint it started from, so even two runners
that both believed they led could not apply a page twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from chronik.adapters.postgres import schema as ddl
from chronik.adapters.postgres.leases import AdvisoryLease, advisory_lease
from chronik.adapters.postgres.schema import in_schema, lock_key
from chronik.errors import LostLeadershipError, StoreUnavailableError
from chronik.eventstore.port import RecordedEvent
from chronik.projections.port import Doc, Parked, ProjectionRow, Writes, physical, view

if TYPE_CHECKING:
    from chronik.adapters.postgres.database import PostgresDatabase

__all__ = ["PostgresProjectionBackend"]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_ROW = (
    "name, generation, version, checkpoint, rebuild_generation, rebuild_checkpoint, "
    "rebuild_version, request, state, heartbeat_at, detail"
)


def _json(value: Any) -> str:
    return _encode(value).decode()


class _Tx:
    def __init__(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def _q(self, template: str) -> str:
        return in_schema(template, self.schema)

    async def fetch(self, table: str, keys: Sequence[str]) -> dict[str, Doc]:
        cur = await self.conn.execute(
            self._q(f"SELECT key, doc::text FROM {{s}}.{table} WHERE key = ANY(%b::text[])"),
            (list(keys),),
        )
        return {key: _decode(doc) for key, doc in await cur.fetchall()}

    async def write(self, table: str, writes: Writes) -> None:
        async with self.conn.cursor() as cur:
            if writes.deletes:
                await cur.execute(
                    self._q(f"DELETE FROM {{s}}.{table} WHERE key = ANY(%b::text[])"),
                    (writes.deletes,),
                )
            if writes.puts:
                await cur.execute(
                    self._q(
                        f"INSERT INTO {{s}}.{table} (key, doc) "
                        # Binary: psycopg dumps text arrays through a regex per element.
                        "SELECT k, d::jsonb FROM unnest(%b::text[], %b::text[]) AS u(k, d) "
                        "ON CONFLICT (key) DO UPDATE SET doc = excluded.doc"
                    ),
                    ([k for k, _ in writes.puts], [_json(d) for _, d in writes.puts]),
                )
            by_shape: dict[int, list[list[Any]]] = {}
            for m in writes.merges:
                params: list[Any] = [m.key, _json({**m.patch, **m.increments}), _json(m.patch)]
                for name, by in m.increments.items():
                    params += [name, name, by]
                by_shape.setdefault(len(m.increments), []).append(params)
            for increments, rows in by_shape.items():
                # || replaces top-level fields (null stays null), as a patch does here.
                added = ""
                if increments:
                    pairs = ", ".join(
                        ["%s::text, coalesce((t.doc->>%s::text)::numeric, 0) + %s"] * increments
                    )
                    added = f" || jsonb_build_object({pairs})"
                await cur.executemany(
                    self._q(
                        f"INSERT INTO {{s}}.{table} AS t (key, doc) VALUES (%s, %s::jsonb) "
                        f"ON CONFLICT (key) DO UPDATE SET doc = t.doc || %s::jsonb{added}"
                    ),
                    rows,
                )

    async def advance(
        self, name: str, generation: int, rebuilding: bool, expected: int, to: int
    ) -> None:
        if rebuilding:
            sql = (
                "UPDATE {s}.chronik_projections SET rebuild_checkpoint = %s WHERE name = %s "
                "AND rebuild_generation = %s AND rebuild_checkpoint = %s"
            )
        else:
            sql = (
                "UPDATE {s}.chronik_projections SET checkpoint = %s WHERE name = %s "
                "AND generation = %s AND checkpoint = %s"
            )
        cur = await self.conn.execute(self._q(sql), (to, name, generation, expected))
        if cur.rowcount != 1:
            raise LostLeadershipError(
                f"projection {name!r}: its checkpoint is no longer {expected}; another runner "
                "or a switch moved it"
            )

    async def park(self, name: str, event: RecordedEvent, error: str, attempts: int) -> None:
        await self.conn.execute(
            self._q(
                "INSERT INTO {s}.chronik_parked (projection, position, stream_id, version, type, "
                "error, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (projection, position) DO UPDATE SET error = excluded.error, "
                "attempts = excluded.attempts, parked_at = now()"
            ),
            (name, event.position, event.stream_id, event.version, event.type, error, attempts),
        )

    async def unpark(self, name: str, position: int) -> None:
        await self.conn.execute(
            self._q("DELETE FROM {s}.chronik_parked WHERE projection = %s AND position = %s"),
            (name, position),
        )

    async def switch(self, name: str, tables: Sequence[str]) -> None:
        conn = self.conn
        cur = await conn.execute(
            self._q(
                "SELECT generation, rebuild_generation FROM {s}.chronik_projections "
                "WHERE name = %s FOR UPDATE"
            ),
            (name,),
        )
        row = await cur.fetchone()
        assert row is not None and row[1] is not None
        old, new = row
        await conn.execute(
            self._q(
                "UPDATE {s}.chronik_projections SET generation = rebuild_generation, "
                "checkpoint = rebuild_checkpoint, version = rebuild_version, "
                "rebuild_generation = NULL, rebuild_checkpoint = NULL, "
                "rebuild_version = NULL WHERE name = %s"
            ),
            (name,),
        )
        for table in tables:
            await conn.execute(
                self._q(
                    f"CREATE OR REPLACE VIEW {{s}}.{view(name, table)} AS SELECT key, doc "
                    f"FROM {{s}}.{physical(name, table, new)}"
                )
            )
            await conn.execute(self._q(f"DROP TABLE IF EXISTS {{s}}.{physical(name, table, old)}"))

    async def generation(self, name: str) -> int:
        cur = await self.conn.execute(
            self._q("SELECT generation FROM {s}.chronik_projections WHERE name = %s"), (name,)
        )
        row = await cur.fetchone()
        if row is None:
            raise KeyError(f"no projection named {name!r} in this store")
        return int(row[0])


class PostgresProjectionBackend:
    """Projections in the same PostgreSQL schema as the events."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.schema = database.schema

    def _q(self, template: str) -> str:
        return in_schema(template, self.schema)

    async def setup(self) -> None:
        await self.database.migrate(ddl.READ_MODELS)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        async with self.database.transaction() as conn:
            yield _Tx(conn, self.schema)

    def tx_on(self, conn: Any) -> tuple[_Tx, None]:
        return _Tx(conn, self.schema), None

    @contextlib.asynccontextmanager
    async def appends_paused(self) -> AsyncIterator[_Tx]:
        # Every append takes this lock to draw positions, until its commit.
        async with self.database.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.schema),))
            yield _Tx(conn, self.schema)

    async def forgotten(self) -> None:
        """Old row versions are PostgreSQL's to vacuum (see docs/personal-data.md)."""

    @contextlib.asynccontextmanager
    async def leadership(self, name: str) -> AsyncIterator[bool]:
        """Try the projection's advisory lock on a connection kept open while leading.

        A database that cannot be reached is a StoreUnavailableError, as everywhere else
        in chronik: the runner retries it, and the driver's errors stay in this module.
        """
        async with self.lease(f"projection:{name}") as lease:
            yield lease.held

    def lease(self, name: str) -> contextlib.AbstractAsyncContextManager[AdvisoryLease]:
        """The named lease (``chronik.adapters.postgres.leases``)."""
        return advisory_lease(self.database, name)

    def _unavailable(self, exc: psycopg.Error) -> StoreUnavailableError:
        return self.database.unavailable(exc)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self.database.transaction() as conn:
            cur = await conn.execute(self._q(sql), params)
            return await cur.fetchall()

    async def load(self, name: str) -> ProjectionRow | None:
        rows = await self._rows(
            f"SELECT {_ROW} FROM {{s}}.chronik_projections WHERE name = %s", (name,)
        )
        return ProjectionRow(*rows[0]) if rows else None

    async def load_all(self) -> list[ProjectionRow]:
        rows = await self._rows(f"SELECT {_ROW} FROM {{s}}.chronik_projections ORDER BY name")
        return [ProjectionRow(*r) for r in rows]

    async def _create_generation(
        self,
        conn: psycopg.AsyncConnection[Any],
        name: str,
        generation: int,
        tables: Sequence[str],
        indexes: Mapping[str, Sequence[str]],
    ) -> None:
        for table in tables:
            target = physical(name, table, generation)
            await conn.execute(self._q(f"DROP TABLE IF EXISTS {{s}}.{target} CASCADE"))
            await conn.execute(
                self._q(f"CREATE TABLE {{s}}.{target} (key text PRIMARY KEY, doc jsonb NOT NULL)")
            )
            for field in indexes.get(table, ()):
                await conn.execute(
                    self._q(f"CREATE INDEX {target}_{field} ON {{s}}.{target} ((doc->>'{field}'))")
                )

    async def _point_views(
        self, conn: psycopg.AsyncConnection[Any], name: str, generation: int, tables: Sequence[str]
    ) -> None:
        for table in tables:
            await conn.execute(
                self._q(
                    f"CREATE OR REPLACE VIEW {{s}}.{view(name, table)} AS SELECT key, doc "
                    f"FROM {{s}}.{physical(name, table, generation)}"
                )
            )

    async def create(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        async with self.database.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (lock_key(f"{self.schema}:create"),)
            )
            cur = await conn.execute(
                self._q("SELECT 1 FROM {s}.chronik_projections WHERE name = %s"), (name,)
            )
            if await cur.fetchone() is None:
                await self._create_generation(conn, name, 1, tables, indexes)
                await self._point_views(conn, name, 1, tables)
                await conn.execute(
                    self._q(
                        "INSERT INTO {s}.chronik_projections (name, generation, version, "
                        "checkpoint, state, heartbeat_at) "
                        "VALUES (%s, 1, %s, 0, 'catching_up', now())"
                    ),
                    (name, version),
                )
        row = await self.load(name)
        assert row is not None
        return row

    async def begin_rebuild(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        async with self.database.transaction() as conn:
            cur = await conn.execute(
                self._q(
                    "SELECT generation FROM {s}.chronik_projections WHERE name = %s FOR UPDATE"
                ),
                (name,),
            )
            row = await cur.fetchone()
            assert row is not None
            generation = row[0] + 1
            await self._create_generation(conn, name, generation, tables, indexes)
            await conn.execute(
                self._q(
                    "UPDATE {s}.chronik_projections SET rebuild_generation = %s, "
                    "rebuild_checkpoint = 0, rebuild_version = %s WHERE name = %s"
                ),
                (generation, version, name),
            )
        loaded = await self.load(name)
        assert loaded is not None
        return loaded

    async def switch(self, name: str, tables: Sequence[str]) -> ProjectionRow:
        async with self.transaction() as tx:
            await tx.switch(name, tables)
        loaded = await self.load(name)
        assert loaded is not None
        return loaded

    async def set_status(
        self, name: str, state: str, detail: str | None, clear_request: str | None = None
    ) -> None:
        await self._rows(
            "UPDATE {s}.chronik_projections SET state = %s, detail = %s, heartbeat_at = now(), "
            "request = CASE WHEN request = %s THEN NULL ELSE request END WHERE name = %s "
            "RETURNING 1",
            (state, detail, clear_request, name),
        )

    async def request(self, name: str, request: str) -> None:
        rows = await self._rows(
            "UPDATE {s}.chronik_projections SET request = %s WHERE name = %s RETURNING 1",
            (request, name),
        )
        if not rows:
            raise KeyError(f"no projection named {name!r} has run in this store")

    async def parked(self, name: str) -> list[Parked]:
        rows = await self._rows(
            "SELECT projection, position, stream_id, version, type, error, attempts, parked_at "
            "FROM {s}.chronik_parked WHERE projection = %s ORDER BY position",
            (name,),
        )
        return [Parked(*r) for r in rows]

    async def unpark(self, name: str, position: int) -> None:
        async with self.transaction() as tx:
            await tx.unpark(name, position)

    # -- queries -----------------------------------------------------------------------

    def _where(self, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        if not where:
            return "", []
        return " WHERE doc @> %s::jsonb", [_json(dict(where))]

    async def get(self, projection: str, table: str, key: str) -> Doc | None:
        rows = await self._rows(
            f"SELECT doc::text FROM {{s}}.{view(projection, table)} WHERE key = %s", (key,)
        )
        return _decode(rows[0][0]) if rows else None

    async def find(
        self,
        projection: str,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None,
        descending: bool,
        limit: int,
        offset: int,
    ) -> list[Doc]:
        clause, params = self._where(where)
        if order_by is None:
            order = " ORDER BY key"
        elif descending:
            order = f" ORDER BY doc->'{order_by}' DESC NULLS LAST, key"
        else:
            order = f" ORDER BY doc->'{order_by}' NULLS FIRST, key"
        rows = await self._rows(
            f"SELECT doc::text FROM {{s}}.{view(projection, table)}{clause}{order} "
            "LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        return [_decode(r[0]) for r in rows]

    async def search(
        self, projection: str, table: str, field: str, text: str, limit: int
    ) -> list[Doc]:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._rows(
            f"SELECT doc::text FROM {{s}}.{view(projection, table)} "
            f"WHERE doc->>'{field}' ILIKE %s ORDER BY key LIMIT %s",
            (pattern, limit),
        )
        return [_decode(r[0]) for r in rows]

    async def count(self, projection: str, table: str, where: Mapping[str, Any]) -> int:
        clause, params = self._where(where)
        rows = await self._rows(
            f"SELECT count(*) FROM {{s}}.{view(projection, table)}{clause}", params
        )
        return int(rows[0][0])
