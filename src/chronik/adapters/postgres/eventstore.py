"""The PostgreSQL event store (psycopg 3, async, with a connection pool).

Global positions come from a sequence read under a transaction-scoped advisory
lock, so positions are handed out in commit order: a reader that has seen
position p has seen every committed event below p, and no event can later commit
below it (the sequence-gap bug of naive stores). The lock is held only from the
append's position assignment to its commit; appends from one process share
commits (group commit), so the lock is paid once per batch. Each append is one
round trip: a PL/pgSQL function checks the version and inserts. See
docs/adr/0002-global-order-on-postgresql.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from chronik.adapters.url import redact
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
from chronik.eventstore.port import AppendResult, ExpectedVersion, Snapshot

__all__ = ["MIGRATIONS", "PostgresEventStore", "redact"]

log = logging.getLogger("chronik.eventstore.postgres")

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Each migration is a template: {s} is the quoted schema, {lock} the advisory lock key.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_events",
        """
        CREATE SEQUENCE {s}.chronik_positions;
        CREATE TABLE {s}.chronik_events (
            position bigint PRIMARY KEY,
            stream_id text NOT NULL,
            version integer NOT NULL,
            id uuid NOT NULL,
            type text NOT NULL,
            schema_version integer NOT NULL,
            recorded_at timestamptz NOT NULL,
            data bytea NOT NULL,
            correlation_id text,
            causation_id text,
            headers bytea,
            CONSTRAINT chronik_events_stream_version UNIQUE (stream_id, version),
            CONSTRAINT chronik_events_id UNIQUE (id)
        );
        CREATE TABLE {s}.chronik_snapshots (
            stream_id text NOT NULL,
            version integer NOT NULL,
            schema text NOT NULL,
            state bytea NOT NULL,
            subjects text[] NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (stream_id, version)
        );
        CREATE TABLE {s}.chronik_subject_keys (
            subject text PRIMARY KEY,
            key bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE FUNCTION {s}.chronik_append_one(
            p_stream text, p_expected integer, p_id uuid, p_type text, p_schema integer,
            p_data bytea, p_correlation text, p_causation text, p_headers bytea)
        RETURNS bigint[]
        LANGUAGE plpgsql AS $$
        DECLARE
            current integer;
            new_position bigint;
        BEGIN
            -- Returns ARRAY[version, position]; position 0: the version did not match.
            -- A scalar return, unlike OUT parameters, avoids a function scan (~7% faster).
            PERFORM pg_advisory_xact_lock({lock});
            SELECT coalesce(max(e.version), 0) INTO current
                FROM {s}.chronik_events e WHERE e.stream_id = p_stream;
            IF p_expected >= 0 AND current <> p_expected THEN
                RETURN ARRAY[current, 0];
            END IF;
            new_position := nextval('{s}.chronik_positions');
            INSERT INTO {s}.chronik_events VALUES (
                new_position, p_stream, current + 1, p_id, p_type, p_schema, clock_timestamp(),
                p_data, p_correlation, p_causation, p_headers);
            RETURN ARRAY[current + 1, new_position];
        END $$;
        CREATE FUNCTION {s}.chronik_append_group(
            p_streams text[], p_expected integer[],
            p_append integer[], p_offset integer[], p_ids uuid[], p_types text[],
            p_schemas integer[], p_data bytea[], p_correlation text[], p_causation text[],
            p_headers bytea[],
            OUT o_versions integer[], OUT o_first bigint, OUT o_last bigint)
        LANGUAGE plpgsql AS $$
        DECLARE
            inserted bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock({lock});
            SELECT array_agg(coalesce(v.version, 0) ORDER BY s.i) INTO o_versions
                FROM unnest(p_streams) WITH ORDINALITY AS s(stream_id, i)
                LEFT JOIN LATERAL (
                    SELECT max(e.version) AS version
                    FROM {s}.chronik_events e WHERE e.stream_id = s.stream_id
                ) v ON true;
            WITH ins AS (
                INSERT INTO {s}.chronik_events
                SELECT nextval('{s}.chronik_positions'), p_streams[u.a], o_versions[u.a] + u.k,
                       u.id, u.t, u.sv, clock_timestamp(), u.d, u.c, u.z, u.h
                FROM unnest(p_append, p_offset, p_ids, p_types, p_schemas, p_data,
                            p_correlation, p_causation, p_headers)
                     WITH ORDINALITY AS u(a, k, id, t, sv, d, c, z, h, ord)
                WHERE p_expected[u.a] < 0 OR p_expected[u.a] = o_versions[u.a]
                ORDER BY u.ord
                RETURNING position
            )
            SELECT min(position), max(position), count(*) INTO o_first, o_last, inserted
                FROM ins;
            IF inserted > 0 AND o_last - o_first + 1 <> inserted THEN
                RAISE EXCEPTION 'chronik: positions of one group are not contiguous';
            END IF;
        END $$;
        """,
    ),
    (
        # The append functions say when they recorded the events (one clock reading per
        # append, after the lock): hooks in the append's transaction (outbox envelopes,
        # inline read models) then carry the stored recorded_at, not a nearby time.
        "0002_append_returns_recorded_at",
        """
        CREATE OR REPLACE FUNCTION {s}.chronik_append_one(
            p_stream text, p_expected integer, p_id uuid, p_type text, p_schema integer,
            p_data bytea, p_correlation text, p_causation text, p_headers bytea)
        RETURNS bigint[]
        LANGUAGE plpgsql AS $$
        DECLARE
            current integer;
            new_position bigint;
            at timestamptz;
        BEGIN
            -- Returns ARRAY[version, position, recorded_at in microseconds since 1970];
            -- position 0: the version did not match.
            PERFORM pg_advisory_xact_lock({lock});
            SELECT coalesce(max(e.version), 0) INTO current
                FROM {s}.chronik_events e WHERE e.stream_id = p_stream;
            IF p_expected >= 0 AND current <> p_expected THEN
                RETURN ARRAY[current, 0, 0];
            END IF;
            new_position := nextval('{s}.chronik_positions');
            at := clock_timestamp();
            INSERT INTO {s}.chronik_events VALUES (
                new_position, p_stream, current + 1, p_id, p_type, p_schema, at,
                p_data, p_correlation, p_causation, p_headers);
            RETURN ARRAY[current + 1, new_position, (extract(epoch FROM at) * 1000000)::bigint];
        END $$;
        DROP FUNCTION {s}.chronik_append_group(
            text[], integer[], integer[], integer[], uuid[], text[], integer[], bytea[],
            text[], text[], bytea[]);
        CREATE FUNCTION {s}.chronik_append_group(
            p_streams text[], p_expected integer[],
            p_append integer[], p_offset integer[], p_ids uuid[], p_types text[],
            p_schemas integer[], p_data bytea[], p_correlation text[], p_causation text[],
            p_headers bytea[],
            OUT o_versions integer[], OUT o_first bigint, OUT o_last bigint,
            OUT o_at timestamptz)
        LANGUAGE plpgsql AS $$
        DECLARE
            inserted bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock({lock});
            o_at := clock_timestamp();
            SELECT array_agg(coalesce(v.version, 0) ORDER BY s.i) INTO o_versions
                FROM unnest(p_streams) WITH ORDINALITY AS s(stream_id, i)
                LEFT JOIN LATERAL (
                    SELECT max(e.version) AS version
                    FROM {s}.chronik_events e WHERE e.stream_id = s.stream_id
                ) v ON true;
            WITH ins AS (
                INSERT INTO {s}.chronik_events
                SELECT nextval('{s}.chronik_positions'), p_streams[u.a], o_versions[u.a] + u.k,
                       u.id, u.t, u.sv, o_at, u.d, u.c, u.z, u.h
                FROM unnest(p_append, p_offset, p_ids, p_types, p_schemas, p_data,
                            p_correlation, p_causation, p_headers)
                     WITH ORDINALITY AS u(a, k, id, t, sv, d, c, z, h, ord)
                WHERE p_expected[u.a] < 0 OR p_expected[u.a] = o_versions[u.a]
                ORDER BY u.ord
                RETURNING position
            )
            SELECT min(position), max(position), count(*) INTO o_first, o_last, inserted
                FROM ins;
            IF inserted > 0 AND o_last - o_first + 1 <> inserted THEN
                RAISE EXCEPTION 'chronik: positions of one group are not contiguous';
            END IF;
        END $$;
        """,
    ),
    (
        # Forgotten stays forgotten (docs/adr/0010-forgotten-stays-forgotten.md): a
        # forgotten subject keeps their row without a key, the tombstone, so no new key
        # is ever made for them; subjects forgotten before it are found by their sealed
        # values whose key is gone. The append functions check that the keys that sealed
        # an append's personal fields still exist (FOR SHARE: a forget waits for the
        # append's commit), and forget the subjects of forgetting events in the append's
        # transaction. The new parameters have defaults: a caller of the old signature
        # (code not yet upgraded) still appends.
        "0003_forgotten_subjects",
        """
        ALTER TABLE {s}.chronik_subject_keys
            ALTER COLUMN key DROP NOT NULL,
            ADD COLUMN forgotten_at timestamptz;
        CREATE FUNCTION {s}.chronik_json_or_null(p_data bytea) RETURNS jsonb
        LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            RETURN convert_from(p_data, 'UTF8')::jsonb;
        EXCEPTION WHEN others THEN
            RETURN NULL;
        END $$;
        INSERT INTO {s}.chronik_subject_keys (subject, key, forgotten_at)
            SELECT DISTINCT f.value -> '$enc' ->> 0, NULL::bytea, clock_timestamp()
            FROM (
                SELECT {s}.chronik_json_or_null(data) AS doc FROM {s}.chronik_events
                WHERE position(convert_to('"$enc"', 'UTF8') IN data) > 0
            ) AS e,
            jsonb_each(CASE WHEN jsonb_typeof(e.doc) = 'object' THEN e.doc
                            ELSE '{}'::jsonb END) AS f
            WHERE jsonb_typeof(f.value -> '$enc' -> 0) = 'string'
            ON CONFLICT (subject) DO NOTHING;
        DROP FUNCTION {s}.chronik_json_or_null(bytea);
        ALTER TABLE {s}.chronik_subject_keys ADD CONSTRAINT chronik_subject_keys_forgotten
            CHECK ((key IS NULL) = (forgotten_at IS NOT NULL));
        CREATE FUNCTION {s}.chronik_forget(p_subjects text[], p_at timestamptz) RETURNS void
        LANGUAGE sql AS $$
            INSERT INTO {s}.chronik_subject_keys AS k (subject, key, forgotten_at)
                SELECT DISTINCT u.subject, NULL::bytea, p_at FROM unnest(p_subjects) AS u(subject)
                ON CONFLICT (subject) DO UPDATE
                SET key = NULL, forgotten_at = coalesce(k.forgotten_at, excluded.forgotten_at);
            DELETE FROM {s}.chronik_snapshots WHERE subjects && p_subjects;
        $$;
        CREATE FUNCTION {s}.chronik_check_keys(p_subjects text[]) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            gone text;
        BEGIN
            PERFORM 1 FROM {s}.chronik_subject_keys k
                WHERE k.subject = ANY(p_subjects) AND k.key IS NOT NULL
                ORDER BY k.subject FOR SHARE;
            SELECT u.subject INTO gone FROM unnest(p_subjects) AS u(subject)
                WHERE NOT EXISTS (SELECT 1 FROM {s}.chronik_subject_keys k
                                  WHERE k.subject = u.subject AND k.key IS NOT NULL)
                LIMIT 1;
            IF gone IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'CHF01',
                    MESSAGE = 'chronik: the data subject was forgotten', DETAIL = gone;
            END IF;
        END $$;
        DROP FUNCTION {s}.chronik_append_one(
            text, integer, uuid, text, integer, bytea, text, text, bytea);
        CREATE FUNCTION {s}.chronik_append_one(
            p_stream text, p_expected integer, p_id uuid, p_type text, p_schema integer,
            p_data bytea, p_correlation text, p_causation text, p_headers bytea,
            p_sealed text[] DEFAULT '{}', p_forgets text[] DEFAULT '{}')
        RETURNS bigint[]
        LANGUAGE plpgsql AS $$
        DECLARE
            current integer;
            new_position bigint;
            at timestamptz;
        BEGIN
            -- Returns ARRAY[version, position, recorded_at in microseconds since 1970];
            -- position 0: the version did not match.
            PERFORM pg_advisory_xact_lock({lock});
            SELECT coalesce(max(e.version), 0) INTO current
                FROM {s}.chronik_events e WHERE e.stream_id = p_stream;
            IF p_expected >= 0 AND current <> p_expected THEN
                RETURN ARRAY[current, 0, 0];
            END IF;
            IF cardinality(p_sealed) > 0 THEN
                PERFORM {s}.chronik_check_keys(p_sealed);
            END IF;
            new_position := nextval('{s}.chronik_positions');
            at := clock_timestamp();
            INSERT INTO {s}.chronik_events VALUES (
                new_position, p_stream, current + 1, p_id, p_type, p_schema, at,
                p_data, p_correlation, p_causation, p_headers);
            IF cardinality(p_forgets) > 0 THEN
                PERFORM {s}.chronik_forget(p_forgets, at);
            END IF;
            RETURN ARRAY[current + 1, new_position, (extract(epoch FROM at) * 1000000)::bigint];
        END $$;
        DROP FUNCTION {s}.chronik_append_group(
            text[], integer[], integer[], integer[], uuid[], text[], integer[], bytea[],
            text[], text[], bytea[]);
        CREATE FUNCTION {s}.chronik_append_group(
            p_streams text[], p_expected integer[],
            p_append integer[], p_offset integer[], p_ids uuid[], p_types text[],
            p_schemas integer[], p_data bytea[], p_correlation text[], p_causation text[],
            p_headers bytea[],
            p_sealed_append integer[] DEFAULT '{}', p_sealed text[] DEFAULT '{}',
            p_forget_append integer[] DEFAULT '{}', p_forgets text[] DEFAULT '{}',
            OUT o_versions integer[], OUT o_first bigint, OUT o_last bigint,
            OUT o_at timestamptz)
        LANGUAGE plpgsql AS $$
        DECLARE
            inserted bigint;
            subjects text[];
        BEGIN
            -- p_sealed_append / p_forget_append: the append (1-based) each subject is for.
            PERFORM pg_advisory_xact_lock({lock});
            o_at := clock_timestamp();
            SELECT array_agg(coalesce(v.version, 0) ORDER BY s.i) INTO o_versions
                FROM unnest(p_streams) WITH ORDINALITY AS s(stream_id, i)
                LEFT JOIN LATERAL (
                    SELECT max(e.version) AS version
                    FROM {s}.chronik_events e WHERE e.stream_id = s.stream_id
                ) v ON true;
            IF cardinality(p_sealed) > 0 THEN
                SELECT array_agg(u.subject) INTO subjects
                    FROM unnest(p_sealed_append, p_sealed) AS u(a, subject)
                    WHERE p_expected[u.a] < 0 OR p_expected[u.a] = o_versions[u.a];
                IF subjects IS NOT NULL THEN
                    PERFORM {s}.chronik_check_keys(subjects);
                END IF;
            END IF;
            WITH ins AS (
                INSERT INTO {s}.chronik_events
                SELECT nextval('{s}.chronik_positions'), p_streams[u.a], o_versions[u.a] + u.k,
                       u.id, u.t, u.sv, o_at, u.d, u.c, u.z, u.h
                FROM unnest(p_append, p_offset, p_ids, p_types, p_schemas, p_data,
                            p_correlation, p_causation, p_headers)
                     WITH ORDINALITY AS u(a, k, id, t, sv, d, c, z, h, ord)
                WHERE p_expected[u.a] < 0 OR p_expected[u.a] = o_versions[u.a]
                ORDER BY u.ord
                RETURNING position
            )
            SELECT min(position), max(position), count(*) INTO o_first, o_last, inserted
                FROM ins;
            IF inserted > 0 AND o_last - o_first + 1 <> inserted THEN
                RAISE EXCEPTION 'chronik: positions of one group are not contiguous';
            END IF;
            IF cardinality(p_forgets) > 0 THEN
                SELECT array_agg(u.subject) INTO subjects
                    FROM unnest(p_forget_append, p_forgets) AS u(a, subject)
                    WHERE p_expected[u.a] < 0 OR p_expected[u.a] = o_versions[u.a];
                IF subjects IS NOT NULL THEN
                    PERFORM {s}.chronik_forget(subjects, o_at);
                END IF;
            END IF;
        END $$;
        """,
    ),
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: raised by chronik_check_keys: a key that sealed an append's personal data is gone
_FORGOTTEN = "CHF01"

_COLUMNS = (
    "position, stream_id, version, id, type, schema_version, recorded_at, data, "
    "correlation_id, causation_id, headers"
)


def _refused_alone(exc: BaseException) -> bool:
    """Whether the database refused one statement: it wrote nothing, the connection is fine.

    Not so for a lost connection, after which an autocommit statement may have committed.
    """
    if isinstance(exc, DuplicateEventError | SubjectForgottenError):
        return True
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, psycopg.Error) and not isinstance(cause, psycopg.OperationalError)


def lock_key(schema: str) -> int:
    """The advisory lock key that serializes position assignment in ``schema``."""
    digest = hashlib.blake2b(f"chronik:positions:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def in_schema(template: str, schema: str) -> str:
    """A statement with {s} bound to the quoted schema name, rendered once.

    The schema name matched ``_SCHEMA_NAME`` (lowercase letters, digits, '_'), so double
    quotes make it a safe identifier. Plain strings, unlike ``str``, are not
    re-rendered by psycopg on every execute, which cost ~5% of an append.
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(f"postgres schema {schema!r} is not valid")
    return template.replace("{s}", f'"{schema}"')


class PostgresEventStore(BaseEventStore):
    """An event store in one PostgreSQL schema. Open it with ``PostgresEventStore.open``."""

    def __init__(
        self,
        types: EventTypes,
        pool: AsyncConnectionPool[Any],
        schema: str,
        url: str,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(types)
        self.schema = schema
        self._pool = pool
        self._conninfo = url
        self.conninfo = url
        self._connect_timeout = connect_timeout
        self._url = redact(url)
        # Appends go through one connection of their own: the group committer runs one
        # commit at a time, and a pool check-out per append costs 10-20% of it.
        self._writer: psycopg.AsyncConnection[Any] | None = None
        # Other processes learn of commits by NOTIFY, sent after commits (never inside an
        # append: a NOTIFY takes a cluster-wide lock at commit) and at most once per
        # notify_interval; this process's waiters are woken directly.
        self.channel = "chronik_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
        self.notify_interval = 0.02
        self._notify_pending = False
        self._notifier: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._write_cursor: psycopg.AsyncCursor[Any]
        self._committer: GroupCommitter[AppendRequest, AppendResult] = GroupCommitter(
            self._commit_batch
        )
        s = schema
        self._sql_one = in_schema(
            "SELECT {s}.chronik_append_one(%s, %s, %s::uuid, %s, %s, %s::bytea, %s, %s, "
            "%s::bytea, %s::text[], %s::text[])",
            s,
        )
        self._sql_group = in_schema(
            # Binary parameters: psycopg dumps text arrays through a regex per element.
            "SELECT o_versions, o_first, o_last, o_at FROM {s}.chronik_append_group("
            "%b::text[], %b::int[], %b::int[], %b::int[], %b::uuid[], %b::text[], %b::int[], "
            "%b::bytea[], %b::text[], %b::text[], %b::bytea[], %b::int[], %b::text[], "
            "%b::int[], %b::text[])",
            s,
        )
        self._sql_all = in_schema(
            f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE position > %s "
            "ORDER BY position LIMIT %s",
            s,
        )
        self._sql_all_typed = in_schema(
            f"SELECT {_COLUMNS} FROM {{s}}.chronik_events WHERE position > %s "
            "AND position <= %s AND type = ANY(%s::text[]) ORDER BY position LIMIT %s",
            s,
        )
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

    @classmethod
    async def open(
        cls,
        url: str,
        types: EventTypes,
        *,
        schema: str = "public",
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 10.0,
        create: bool = True,
    ) -> PostgresEventStore:
        """Connect, create or migrate the schema, and return the store.

        With ``create=False`` a schema without chronik's events table raises
        StoreNotFoundError and is left as it was (not created).
        """
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"postgres schema {schema!r} is not valid: use 1-63 lowercase letters, digits "
                "or '_', starting with a letter or '_'"
            )
        if not 1 <= pool_min <= pool_max:
            raise ConfigurationError(
                f"postgres pool sizes need 1 <= pool_min <= pool_max, got {pool_min}, {pool_max}"
            )
        # One connection first, so that a refusal ends the wait at once and a failure
        # says its cause; the pool would only time out, having logged each attempt.
        await _first_connection(url, connect_timeout)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=pool_min,
            max_size=pool_max,
            kwargs={"autocommit": True},
            open=False,
            timeout=connect_timeout,
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.Error):
            await pool.close()
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact(url)} within {connect_timeout:g} s"
            ) from None
        store = cls(types, pool, schema, url, connect_timeout)
        try:
            if not create:
                await store._check_exists()
            await store.migrate(MIGRATIONS)
        except BaseException:
            await pool.close()
            raise
        return store

    async def _check_exists(self) -> None:
        rows = await self._fetch(
            "SELECT to_regclass(%s)::text", (in_schema("{s}.chronik_events", self.schema),)
        )
        if rows[0][0] is None:
            raise StoreNotFoundError(
                f"PostgreSQL at {self._url}: schema {self.schema!r} has no chronik tables"
            )

    async def close(self) -> None:
        for task in (self._notifier, self._listener):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        await self._pool.close()

    async def _writer_connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._writer
        if conn is None or conn.closed:
            conn = self._writer = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(1, round(self._connect_timeout)),
            )
            self._write_cursor = conn.cursor(binary=True)
        return conn

    async def _execute_write(self, query: str, params: Sequence[Any]) -> Any:
        """Run one append statement on the writer connection; reconnect after a failure."""
        conn = self._writer
        try:
            conn = await self._writer_connection()
            cur = self._write_cursor
            await cur.execute(query, params)
            return await cur.fetchone()
        except psycopg.OperationalError:
            if conn is not None:
                await conn.close()
            self._writer = None
            raise

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"PostgreSQL at {self._url}: {exc}")

    def _refused(self, exc: psycopg.Error) -> SubjectForgottenError | StoreUnavailableError:
        """What an append statement's failure means: a forgotten subject, or an outage."""
        if exc.sqlstate == _FORGOTTEN:
            return SubjectForgottenError(exc.diag.message_detail or "?")
        return self._unavailable(exc)

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> None:
        """Apply the named migrations not yet applied, each once, under a lock.

        A migration is a script template: ``{s}`` is the quoted schema, ``{lock}`` the
        advisory lock key of its positions.
        """
        key = lock_key(self.schema)
        try:
            async with self._pool.connection() as conn:
                await conn.execute("SELECT pg_advisory_lock(%s)", (key - 1,))
                try:
                    await conn.execute(in_schema("CREATE SCHEMA IF NOT EXISTS {s}", self.schema))
                    await conn.execute(
                        in_schema(
                            "CREATE TABLE IF NOT EXISTS {s}.chronik_migrations ("
                            "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                            self.schema,
                        )
                    )
                    cur = await conn.execute(
                        in_schema("SELECT name FROM {s}.chronik_migrations", self.schema)
                    )
                    done = {name for (name,) in await cur.fetchall()}
                    for name, template in migrations:
                        if name in done:
                            continue
                        script = template.replace("{lock}", str(key))
                        async with conn.transaction():
                            await conn.execute(in_schema(script, self.schema))
                            await conn.execute(
                                in_schema(
                                    "INSERT INTO {s}.chronik_migrations (name) VALUES (%s)",
                                    self.schema,
                                ),
                                (name,),
                            )
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (key - 1,))
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    # -- writing -----------------------------------------------------------------------

    async def _append(self, request: AppendRequest) -> AppendResult:
        result = await self._committer.submit(request)
        self._notify_soon()
        return result

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction on a pooled connection, for read models and outboxes."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    def _notify_soon(self) -> None:
        self._notify_pending = True
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.get_running_loop().create_task(self._notify_loop())

    async def _notify_loop(self) -> None:
        while self._notify_pending:
            self._notify_pending = False
            try:
                async with self._pool.connection() as conn:
                    await conn.execute("SELECT pg_notify(%s, '')", (self.channel,))
            except psycopg.Error as exc:
                log.warning("NOTIFY on %s failed; listeners will poll: %s", self.channel, exc)
                return
            await asyncio.sleep(self.notify_interval)

    async def wait_for_events(self, after: int, max_wait: float) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen_loop())
        await self._signal.wait(after, max_wait)

    async def _listen_loop(self) -> None:
        """Turn other processes' NOTIFYs into wake-ups; reconnect with backoff."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    self._signal.poke()  # something may have committed while we connected
                    delay = 0.1
                    async for _ in conn.notifies():
                        self._signal.poke()
            except psycopg.Error as exc:
                log.warning("LISTEN on %s lost (%s); retrying in %.1f s", self.channel, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _commit_batch(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        if self._hooks:
            return await self._commit_with_hooks(requests)
        if len(requests) == 1:
            request = requests[0]
            try:
                if len(request.events) == 1:
                    return [await self._append_one(request)]
                return list(await self._append_group(requests))
            except (ConcurrencyError, DuplicateEventError, SubjectForgottenError) as exc:
                return [exc]
        # One stream at most once per call: a second append to it goes in the next call,
        # where it sees the first one's version. Likewise personal data of a subject an
        # earlier append of the call forgets: keys are checked before the call forgets.
        results: dict[int, AppendResult | BaseException] = {}
        todo = list(enumerate(requests))
        while todo:
            call: list[tuple[int, AppendRequest]] = []
            later: list[tuple[int, AppendRequest]] = []
            streams: set[str] = set()
            forgotten: set[str] = set()
            for index, request in todo:
                if request.stream_id in streams or not forgotten.isdisjoint(request.sealed):
                    later.append((index, request))
                else:
                    streams.add(request.stream_id)
                    forgotten.update(request.forgets)
                    call.append((index, request))
            try:
                outcomes: Sequence[AppendResult | BaseException] = await self._append_group(
                    [r for _, r in call]
                )
            except (DuplicateEventError, SubjectForgottenError, StoreUnavailableError) as exc:
                if not _refused_alone(exc):
                    raise
                # Some append reuses a stored event id, seals data of a forgotten subject, or
                # the database refused one (a trigger): the statement wrote nothing; find
                # the culprit one by one.
                if len(call) == 1:
                    outcomes = [exc]
                else:
                    outcomes = [await self._append_alone(request) for _, request in call]
            for (index, _), outcome in zip(call, outcomes, strict=True):
                results[index] = outcome
            todo = later
        return [results[i] for i in range(len(requests))]

    async def _append_alone(self, request: AppendRequest) -> AppendResult | BaseException:
        """One append in its own statement: its result, or the error that is its own."""
        try:
            return (await self._append_group([request]))[0]
        except (DuplicateEventError, SubjectForgottenError, StoreUnavailableError) as exc:
            if not _refused_alone(exc):
                raise
            return exc

    async def _commit_with_hooks(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        """Appends and their hooks in one transaction, each append in its own savepoint.

        A lone append needs no savepoint (its failure rolls the whole back): two round
        trips fewer, on the path every outbox append takes.
        """
        results: list[AppendResult | BaseException] = []
        try:
            conn = await self._writer_connection()
            async with conn.transaction():
                if len(requests) == 1:
                    return [await self._append_hooked(conn, requests[0])]
                for request in requests:
                    try:
                        async with conn.transaction():
                            result = await self._append_hooked(conn, request)
                    except psycopg.Error as exc:
                        # The savepoint undid it; the database's error is this append's.
                        error = self._unavailable(exc)
                        error.__cause__ = exc
                        results.append(error)
                    except Exception as exc:
                        results.append(exc)
                    else:
                        results.append(result)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        return results

    async def _append_hooked(
        self, conn: psycopg.AsyncConnection[Any], request: AppendRequest
    ) -> AppendResult:
        """One append, then the hooks, which see the events as stored (recorded_at too)."""
        if len(request.events) == 1:
            result, at = await self._append_one_at(request)
        else:
            [outcome], at = await self._append_group_at([request])
            if isinstance(outcome, BaseException):
                raise outcome
            result = outcome
        await self._run_hooks(conn, request, result, at)
        return result

    async def _append_one(self, request: AppendRequest) -> AppendResult:
        return (await self._append_one_at(request))[0]

    async def _append_group(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        return (await self._append_group_at(requests))[0]

    async def _append_one_at(self, request: AppendRequest) -> tuple[AppendResult, datetime]:
        """Append one event; where it landed and when it was recorded."""
        e = request.events[0]
        params = (
            request.stream_id,
            request.expected,
            e.id,
            e.type,
            e.schema_version,
            e.data,
            e.correlation_id,
            e.causation_id,
            e.headers,
            list(request.sealed),
            list(request.forgets),
        )
        try:
            row = await self._execute_write(self._sql_one, params)
        except psycopg.errors.UniqueViolation as exc:
            raise self._duplicate(request, exc) from None
        except psycopg.Error as exc:
            raise self._refused(exc) from exc
        assert row is not None
        version, position, micros = row[0]
        if position == 0:
            raise ConcurrencyError(
                request.stream_id, str(ExpectedVersion(request.expected)), version
            )
        at = _EPOCH + timedelta(microseconds=micros)
        return AppendResult(request.stream_id, version, position, position), at

    async def _append_group_at(
        self, requests: list[AppendRequest]
    ) -> tuple[list[AppendResult | BaseException], datetime]:
        """Append the requests in one statement; their outcomes, and when it recorded them."""
        appends: list[int] = []
        offsets: list[int] = []
        ids, types, schemas, data, corr, caus, headers = [], [], [], [], [], [], []
        sealed_by: list[int] = []
        sealed: list[str] = []
        forgets_by: list[int] = []
        forgets: list[str] = []
        for number, request in enumerate(requests, start=1):
            sealed_by += [number] * len(request.sealed)
            sealed += request.sealed
            forgets_by += [number] * len(request.forgets)
            forgets += request.forgets
            for offset, e in enumerate(request.events, start=1):
                appends.append(number)
                offsets.append(offset)
                ids.append(e.id)
                types.append(e.type)
                schemas.append(e.schema_version)
                data.append(e.data)
                corr.append(e.correlation_id)
                caus.append(e.causation_id)
                headers.append(e.headers)
        params = (
            [r.stream_id for r in requests],
            [r.expected for r in requests],
            appends,
            offsets,
            ids,
            types,
            schemas,
            data,
            corr,
            caus,
            headers,
            sealed_by,
            sealed,
            forgets_by,
            forgets,
        )
        try:
            row = await self._execute_write(self._sql_group, params)
        except psycopg.errors.UniqueViolation as exc:
            if len(requests) == 1:
                raise self._duplicate(requests[0], exc) from None
            raise DuplicateEventError(requests[0].stream_id, "?") from None
        except psycopg.Error as exc:
            raise self._refused(exc) from exc
        assert row is not None
        versions, first, _last, at = row
        results: list[AppendResult | BaseException] = []
        position = first
        for request, current in zip(requests, versions, strict=True):
            if request.expected >= 0 and request.expected != current:
                results.append(
                    ConcurrencyError(
                        request.stream_id, str(ExpectedVersion(request.expected)), current
                    )
                )
                continue
            n = len(request.events)
            results.append(AppendResult(request.stream_id, current + n, position, position + n - 1))
            position += n
        return results, at

    def _duplicate(
        self, request: AppendRequest, exc: psycopg.errors.UniqueViolation
    ) -> DuplicateEventError | StoreUnavailableError:
        constraint = getattr(exc.diag, "constraint_name", None)
        if constraint != "chronik_events_id":
            return self._unavailable(exc)
        detail = exc.diag.message_detail or ""
        found = re.search(r"\(id\)=\(([0-9a-f-]+)\)", detail)
        event_id = found.group(1) if found else str(request.events[0].id)
        return DuplicateEventError(request.stream_id, event_id)

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

    async def _all_rows(
        self, after: int, limit: int, types: list[str] | None = None, upto: int | None = None
    ) -> list[Row]:
        if types is None:
            return await self._fetch(self._sql_all, (after, limit))
        return await self._fetch(
            self._sql_all_typed, (after, upto if upto is not None else 1 << 62, types, limit)
        )

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
                "SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT DO NOTHING",
                self.schema,
            )
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(insert, (missing, [new_subject_key() for _ in missing]))
            except psycopg.Error as exc:
                raise self._unavailable(exc) from exc
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


#: what a server that answered says when trying again cannot help
_REFUSALS = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "no password supplied",
    "password is required",
    "permission denied for database",
)


async def _first_connection(url: str, within: float) -> None:
    """Connect once within ``within`` s, trying again after failures a wait may cure.

    ``ConfigurationError`` at once when the server refuses (credentials, a database that
    does not exist); ``StoreUnavailableError`` with the last cause when time is up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(max(left, 0.1)):
                conn = await psycopg.AsyncConnection.connect(
                    url, connect_timeout=max(2, min(10, round(left)))
                )
        except (psycopg.Error, TimeoutError) as exc:
            cause = _connect_cause(exc)
            if isinstance(exc, psycopg.ProgrammingError):  # libpq refused the URL itself
                raise ConfigurationError(f"PostgreSQL URL {redact(url)}: {cause}") from None
            if any(refusal in cause for refusal in _REFUSALS):
                raise ConfigurationError(
                    f"PostgreSQL at {redact(url)} refused the connection: {cause}"
                ) from None
            if loop.time() + 0.5 >= deadline:
                raise StoreUnavailableError(
                    f"cannot connect to PostgreSQL at {redact(url)} within {within:g} s: {cause}"
                ) from None
            await asyncio.sleep(0.5)
            continue
        await conn.close()
        return


def _connect_cause(exc: BaseException) -> str:
    """libpq's connection error, its cause only: 'connection refused', 'database "x" ...'."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cause = first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:")
    cause = " ".join(cause.split())
    return cause[:1].lower() + cause[1:]
