"""The tables of a PostgreSQL schema: every migration by name, and how statements name it.

Each migration is a template: ``{s}`` is the quoted schema, ``{lock}`` the advisory lock
key of its positions. ``PostgresDatabase.migrate`` records each name in
``chronik_migrations`` and applies it once; a name is never changed or reused (an
existing schema is migrated by what it lacks). The event tables are made when the
database opens, the others when their role is set up.
"""

from __future__ import annotations

import hashlib
import re

from chronik.errors import ConfigurationError

__all__ = [
    "BOOTSTRAP",
    "BOOTSTRAP_NAME",
    "CATEGORY",
    "CREATE_SCHEMA",
    "EVENTS",
    "MESSAGES",
    "MIGRATIONS_TABLE",
    "PARTS",
    "READ_MODELS",
    "SCHEMA_NAME",
    "in_schema",
    "lock_key",
]

#: what a schema name may be: it is then safe between double quotes
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def lock_key(schema: str) -> int:
    """The advisory lock key that serializes position assignment in ``schema``.

    Other locks take the key of ``schema`` with a suffix (``"sales:relay"``).
    """
    digest = hashlib.blake2b(f"chronik:positions:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def in_schema(template: str, schema: str) -> str:
    """A statement with {s} bound to the quoted schema name, rendered once.

    The schema name matched ``SCHEMA_NAME`` (lowercase letters, digits, '_'), so double
    quotes make it a safe identifier. Plain strings, unlike ``str``, are not
    re-rendered by psycopg on every execute, which cost ~5% of an append.
    """
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(f"postgres schema {schema!r} is not valid")
    return template.replace("{s}", f'"{schema}"')


#: The schema and the table of applied migrations, made before any migration runs.
#: The schema is created only if it is not there: CREATE SCHEMA needs the right to create
#: in the database even when the schema exists, and a role that owns only its schema
#: (made by the operator, docs/deploy.md) has not.
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {s};"
MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {s}.chronik_migrations (
    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"""
BOOTSTRAP = f"{CREATE_SCHEMA}\n{MIGRATIONS_TABLE}"
#: how ``chronik migrate --status`` names the bootstrap (it is recorded nowhere)
BOOTSTRAP_NAME = "chronik_migrations"

#: The events, their snapshots, the data subjects' keys, and the append functions.
EVENTS: list[tuple[str, str]] = [
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
    (
        # The console's queries (docs/console.md): streams that have an event of a type,
        # and the events of one correlation, each a range on an index at any size.
        "0004_console_indexes",
        """
        CREATE INDEX chronik_events_type_stream ON {s}.chronik_events (type, stream_id);
        CREATE INDEX chronik_events_correlation
            ON {s}.chronik_events (correlation_id, position);
        """,
    ),
    (
        # Filtered reads (docs/adr/0024-filtered-reads.md): the events of a type, and of
        # a stream category (the id up to its first '-'), in position order. The
        # category expression is spelt exactly as the reads spell it (CATEGORY).
        "0005_filtered_reads",
        """
        CREATE INDEX chronik_events_type ON {s}.chronik_events (type, position);
        CREATE INDEX chronik_events_category ON {s}.chronik_events (
            split_part(stream_id, '-', 1), position);
        """,
    ),
]

#: A stream's category in SQL, as ``chronik.eventstore.category_of`` computes it and as
#: the index ``chronik_events_category`` is built on.
CATEGORY = "split_part(stream_id, '-', 1)"

#: Projection rows (checkpoint, generation, state) and parked events. Read-model
#: tables are made per projection and generation when it first runs.
READ_MODELS: list[tuple[str, str]] = [
    (
        "projections_0001",
        """
        CREATE TABLE {s}.chronik_projections (
            name text PRIMARY KEY,
            generation integer NOT NULL,
            version integer NOT NULL,
            checkpoint bigint NOT NULL,
            rebuild_generation integer,
            rebuild_checkpoint bigint,
            rebuild_version integer,
            request text,
            state text NOT NULL,
            detail text,
            heartbeat_at timestamptz
        );
        CREATE TABLE {s}.chronik_parked (
            projection text NOT NULL,
            position bigint NOT NULL,
            stream_id text NOT NULL,
            version integer NOT NULL,
            type text NOT NULL,
            error text NOT NULL,
            attempts integer NOT NULL,
            parked_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (projection, position)
        );
        """,
    )
]

#: The outbox, the inbox and the dead letters.
MESSAGES: list[tuple[str, str]] = [
    (
        "messaging_0001",
        """
        CREATE TABLE {s}.chronik_outbox (
            position bigint PRIMARY KEY,
            message_id text NOT NULL,
            stream_id text NOT NULL,
            type text NOT NULL,
            body bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        );
        CREATE INDEX chronik_outbox_pending ON {s}.chronik_outbox (position)
            WHERE published_at IS NULL;
        CREATE TABLE {s}.chronik_inbox (
            consumer text NOT NULL,
            message_id text NOT NULL,
            handled_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, message_id)
        );
        CREATE TABLE {s}.chronik_dead_letters (
            consumer text NOT NULL,
            message_id text NOT NULL,
            type text NOT NULL,
            body bytea NOT NULL,
            error text NOT NULL,
            attempts integer NOT NULL,
            dead_at timestamptz NOT NULL,
            requested_at timestamptz,
            PRIMARY KEY (consumer, message_id)
        );
        """,
    )
]

#: Every part's migrations, in the order ``chronik migrate`` applies them.
PARTS: dict[str, list[tuple[str, str]]] = {
    "events": EVENTS,
    "read models": READ_MODELS,
    "messages": MESSAGES,
}
