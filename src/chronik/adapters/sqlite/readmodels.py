"""Read models, checkpoints and parked events in the SQLite file of the event store.

Document tables are ``(key TEXT PRIMARY KEY, doc TEXT)`` holding JSON; readers use a
view per table that points at the serving generation. Writes happen in the database's
write transactions, so a page's changes and its checkpoint commit together.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from chronik.adapters.sqlite import schema
from chronik.errors import LostLeadershipError
from chronik.eventstore.port import RecordedEvent
from chronik.projections.port import Doc, Parked, ProjectionRow, Writes, physical, view
from chronik.worker import GRANTED, Lease

if TYPE_CHECKING:
    from chronik.adapters.sqlite.database import SQLiteDatabase

__all__ = ["SQLiteProjectionBackend"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_ROW = (
    "name, generation, version, checkpoint, rebuild_generation, rebuild_checkpoint, "
    "rebuild_version, request, state, heartbeat_at, detail"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json(doc: Mapping[str, Any]) -> str:
    return _encode(doc).decode()


def _row(values: Sequence[Any]) -> ProjectionRow:
    name, gen, version, checkpoint, rgen, rcheck, rversion, request, state, beat, detail = values
    return ProjectionRow(
        name,
        gen,
        version,
        checkpoint,
        rgen,
        rcheck,
        rversion,
        request,
        state,
        datetime.fromisoformat(beat) if beat else None,
        detail,
    )


class _Tx:
    """One projection transaction on the database's writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def fetch(self, table: str, keys: Sequence[str]) -> dict[str, Doc]:
        marks = ",".join("?" * len(keys))
        rows = self.conn.execute(
            f"SELECT key, doc FROM {table} WHERE key IN ({marks})", list(keys)
        ).fetchall()
        return {key: _decode(doc) for key, doc in rows}

    async def write(self, table: str, writes: Writes) -> None:
        conn = self.conn
        if writes.deletes:
            conn.executemany(f"DELETE FROM {table} WHERE key = ?", [(k,) for k in writes.deletes])
        if writes.puts:
            conn.executemany(
                f"INSERT INTO {table} (key, doc) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
                [(key, _json(doc)) for key, doc in writes.puts],
            )
        by_shape: dict[tuple[int, int], list[list[Any]]] = {}
        for m in writes.merges:
            params: list[Any] = [m.key, _json({**m.patch, **m.increments})]
            for name, value in m.patch.items():
                params += [f"$.{name}", _encode(value).decode()]
            for name, by in m.increments.items():
                params += [f"$.{name}", f"$.{name}", by]
            by_shape.setdefault((len(m.patch), len(m.increments)), []).append(params)
        for (patches, increments), rows in by_shape.items():
            # json_set, not json_patch: a merge patch would drop fields set to null and
            # merge nested objects, where a patch here replaces top-level fields.
            # json(?) keeps the value's JSON type (true stays true, not 1).
            sets = ["?, json(?)"] * patches + [
                "?, coalesce(json_extract(doc, ?), 0) + ?"
            ] * increments
            conn.executemany(
                f"INSERT INTO {table} (key, doc) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                f"SET doc = json_set(doc, {', '.join(sets)})",
                rows,
            )

    async def advance(
        self, name: str, generation: int, rebuilding: bool, expected: int, to: int
    ) -> None:
        if rebuilding:
            sql = (
                "UPDATE chronik_projections SET rebuild_checkpoint = ? WHERE name = ? "
                "AND rebuild_generation = ? AND rebuild_checkpoint = ?"
            )
        else:
            sql = (
                "UPDATE chronik_projections SET checkpoint = ? WHERE name = ? "
                "AND generation = ? AND checkpoint = ?"
            )
        if self.conn.execute(sql, (to, name, generation, expected)).rowcount != 1:
            raise LostLeadershipError(
                f"projection {name!r}: its checkpoint is no longer {expected}; another runner "
                "or a switch moved it"
            )

    async def park(self, name: str, event: RecordedEvent, error: str, attempts: int) -> None:
        self.conn.execute(
            "INSERT INTO chronik_parked VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (projection, position) DO UPDATE SET error = excluded.error, "
            "attempts = excluded.attempts, parked_at = excluded.parked_at",
            (
                name,
                event.position,
                event.stream_id,
                event.version,
                event.type,
                error,
                attempts,
                _now(),
            ),
        )

    async def unpark(self, name: str, position: int) -> None:
        self.conn.execute(
            "DELETE FROM chronik_parked WHERE projection = ? AND position = ?", (name, position)
        )

    async def switch(self, name: str, tables: Sequence[str]) -> None:
        conn = self.conn
        old, new = conn.execute(
            "SELECT generation, rebuild_generation FROM chronik_projections WHERE name = ?",
            (name,),
        ).fetchone()
        conn.execute(
            "UPDATE chronik_projections SET generation = rebuild_generation, "
            "checkpoint = rebuild_checkpoint, version = rebuild_version, "
            "rebuild_generation = NULL, rebuild_checkpoint = NULL, rebuild_version = NULL "
            "WHERE name = ?",
            (name,),
        )
        _point_views(conn, name, new, tables)
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {physical(name, table, old)}")

    async def generation(self, name: str) -> int:
        row = self.conn.execute(
            "SELECT generation FROM chronik_projections WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no projection named {name!r} in this store")
        return int(row[0])


def _create_generation(
    conn: sqlite3.Connection,
    name: str,
    generation: int,
    tables: Sequence[str],
    indexes: Mapping[str, Sequence[str]],
) -> None:
    for table in tables:
        target = physical(name, table, generation)
        conn.execute(f"DROP TABLE IF EXISTS {target}")
        conn.execute(f"CREATE TABLE {target} (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        for field in indexes.get(table, ()):
            conn.execute(
                f"CREATE INDEX {target}_{field} ON {target} (json_extract(doc, '$.{field}'))"
            )


def _point_views(
    conn: sqlite3.Connection, name: str, generation: int, tables: Sequence[str]
) -> None:
    for table in tables:
        conn.execute(f"DROP VIEW IF EXISTS {view(name, table)}")
        conn.execute(
            f"CREATE VIEW {view(name, table)} AS SELECT key, doc "
            f"FROM {physical(name, table, generation)}"
        )


class SQLiteProjectionBackend:
    """Projections in the same SQLite file as the events. One process runs them."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self.database = database

    async def setup(self) -> None:
        await self.database.migrate(schema.READ_MODELS)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        async with self.database.transaction() as conn:
            yield _Tx(conn)

    def tx_on(self, conn: Any) -> tuple[_Tx, None]:
        return _Tx(conn), None

    @contextlib.asynccontextmanager
    async def appends_paused(self) -> AsyncIterator[_Tx]:
        # Appends take the same write lock: none commits while this transaction runs.
        async with self.transaction() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def leadership(self, name: str) -> AsyncIterator[bool]:
        # Embedded mode is one process: its engine runs each projection once.
        yield True

    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Lease]:
        """Granted: one process owns the file, and its engine runs each worker once."""
        yield GRANTED

    async def forgotten(self) -> None:
        # The page overwrote the documents (secure_delete zeroes the old bytes); the
        # log still holds the pages as they were until it is checkpointed.
        await self.database.checkpoint_wal()

    async def load(self, name: str) -> ProjectionRow | None:
        rows = self.database.query(
            f"SELECT {_ROW} FROM chronik_projections WHERE name = ?", (name,)
        )
        return _row(rows[0]) if rows else None

    async def load_all(self) -> list[ProjectionRow]:
        rows = self.database.query(f"SELECT {_ROW} FROM chronik_projections ORDER BY name")
        return [_row(r) for r in rows]

    async def create(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        async with self.database.transaction() as conn:
            exists = conn.execute("SELECT 1 FROM chronik_projections WHERE name = ?", (name,))
            if exists.fetchone() is None:
                _create_generation(conn, name, 1, tables, indexes)
                _point_views(conn, name, 1, tables)
                conn.execute(
                    "INSERT INTO chronik_projections (name, generation, version, checkpoint, "
                    "state, heartbeat_at) VALUES (?, 1, ?, 0, 'catching_up', ?)",
                    (name, version, _now()),
                )
        row = await self.load(name)
        assert row is not None
        return row

    async def begin_rebuild(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        async with self.database.transaction() as conn:
            (generation,) = conn.execute(
                "SELECT generation FROM chronik_projections WHERE name = ?", (name,)
            ).fetchone()
            _create_generation(conn, name, generation + 1, tables, indexes)
            conn.execute(
                "UPDATE chronik_projections SET rebuild_generation = ?, rebuild_checkpoint = 0, "
                "rebuild_version = ? WHERE name = ?",
                (generation + 1, version, name),
            )
        row = await self.load(name)
        assert row is not None
        return row

    async def switch(self, name: str, tables: Sequence[str]) -> ProjectionRow:
        async with self.transaction() as tx:
            await tx.switch(name, tables)
        row = await self.load(name)
        assert row is not None
        return row

    async def set_status(
        self, name: str, state: str, detail: str | None, clear_request: str | None = None
    ) -> None:
        async with self.database.transaction() as conn:
            conn.execute(
                "UPDATE chronik_projections SET state = ?, detail = ?, heartbeat_at = ?, "
                "request = CASE WHEN request = ? THEN NULL ELSE request END WHERE name = ?",
                (state, detail, _now(), clear_request, name),
            )

    async def request(self, name: str, request: str) -> None:
        async with self.database.transaction() as conn:
            cur = conn.execute(
                "UPDATE chronik_projections SET request = ? WHERE name = ?", (request, name)
            )
            if cur.rowcount != 1:
                raise KeyError(f"no projection named {name!r} has run in this store")

    async def parked(self, name: str) -> list[Parked]:
        rows = self.database.query(
            "SELECT projection, position, stream_id, version, type, error, attempts, parked_at "
            "FROM chronik_parked WHERE projection = ? ORDER BY position",
            (name,),
        )
        return [
            Parked(r[0], r[1], r[2], r[3], r[4], r[5], r[6], datetime.fromisoformat(r[7]))
            for r in rows
        ]

    async def unpark(self, name: str, position: int) -> None:
        async with self.transaction() as tx:
            await tx.unpark(name, position)

    # -- queries -----------------------------------------------------------------------

    async def get(self, projection: str, table: str, key: str) -> Doc | None:
        rows = self.database.query(
            f"SELECT doc FROM {view(projection, table)} WHERE key = ?", (key,)
        )
        return _decode(rows[0][0]) if rows else None

    def _where(self, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        if not where:
            return "", []
        clauses = [f"json_extract(doc, '$.{name}') = ?" for name in where]
        return " WHERE " + " AND ".join(clauses), list(where.values())

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
        order = ""
        if order_by is not None:
            order = (
                f" ORDER BY json_extract(doc, '$.{order_by}'){' DESC' if descending else ''}, key"
            )
        else:
            order = " ORDER BY key"
        rows = self.database.query(
            f"SELECT doc FROM {view(projection, table)}{clause}{order} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_decode(r[0]) for r in rows]

    async def search(
        self, projection: str, table: str, field: str, text: str, limit: int
    ) -> list[Doc]:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.database.query(
            f"SELECT doc FROM {view(projection, table)} "
            f"WHERE json_extract(doc, '$.{field}') LIKE ? ESCAPE '\\' ORDER BY key LIMIT ?",
            (pattern, limit),
        )
        return [_decode(r[0]) for r in rows]

    async def count(self, projection: str, table: str, where: Mapping[str, Any]) -> int:
        clause, params = self._where(where)
        rows = self.database.query(
            f"SELECT count(*) FROM {view(projection, table)}{clause}", params
        )
        return int(rows[0][0])
