"""The tables of a SQLite database: every migration, by name, applied once and in order.

``SQLiteDatabase.migrate`` records each name in ``chronik_migrations``; a name is never
changed or reused (an existing file is migrated by what it lacks). The event tables are
made when the database opens, the others when their role is set up.
"""

from __future__ import annotations

__all__ = ["BOOTSTRAP", "BOOTSTRAP_NAME", "CATEGORY", "EVENTS", "MESSAGES", "PARTS", "READ_MODELS"]

#: The table of applied migrations, made before any migration runs.
BOOTSTRAP = "CREATE TABLE IF NOT EXISTS chronik_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
#: how ``chronik migrate --status`` names it (it is recorded nowhere)
BOOTSTRAP_NAME = "chronik_migrations"

#: The events, their snapshots and the data subjects' keys.
EVENTS: list[tuple[str, str]] = [
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
    (
        # The console's queries (docs/console.md): streams that have an event of a type,
        # and the events of one correlation, each a range on an index at any size.
        "0003_console_indexes",
        """
        CREATE INDEX chronik_events_type_stream ON chronik_events (type, stream_id);
        CREATE INDEX chronik_events_correlation ON chronik_events (correlation_id, position)
        """,
    ),
    (
        # Filtered reads (docs/adr/0024-filtered-reads.md): the events of a type, and of
        # a stream category (the id up to its first '-'), in position order. The
        # category expression is spelt exactly as the reads spell it (CATEGORY).
        "0004_filtered_reads",
        """
        CREATE INDEX chronik_events_type ON chronik_events (type, position);
        CREATE INDEX chronik_events_category ON chronik_events (
            substr(stream_id, 1, instr(stream_id || '-', '-') - 1), position)
        """,
    ),
]

#: A stream's category in SQL, as ``chronik.eventstore.category_of`` computes it and as
#: the index ``chronik_events_category`` is built on.
CATEGORY = "substr(stream_id, 1, instr(stream_id || '-', '-') - 1)"

#: Projection rows (checkpoint, generation, state) and parked events. Read-model
#: tables are made per projection and generation when it first runs.
READ_MODELS: list[tuple[str, str]] = [
    (
        "projections_0001",
        """
        CREATE TABLE chronik_projections (
            name TEXT PRIMARY KEY,
            generation INTEGER NOT NULL,
            version INTEGER NOT NULL,
            checkpoint INTEGER NOT NULL,
            rebuild_generation INTEGER,
            rebuild_checkpoint INTEGER,
            rebuild_version INTEGER,
            request TEXT,
            state TEXT NOT NULL,
            detail TEXT,
            heartbeat_at TEXT
        );
        CREATE TABLE chronik_parked (
            projection TEXT NOT NULL,
            position INTEGER NOT NULL,
            stream_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            type TEXT NOT NULL,
            error TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            parked_at TEXT NOT NULL,
            PRIMARY KEY (projection, position)
        )
        """,
    )
]

#: The outbox, the inbox and the dead letters.
MESSAGES: list[tuple[str, str]] = [
    (
        "messaging_0001",
        """
        CREATE TABLE chronik_outbox (
            position INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL,
            stream_id TEXT NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            created_at TEXT NOT NULL,
            published_at TEXT
        );
        CREATE INDEX chronik_outbox_pending ON chronik_outbox (position)
            WHERE published_at IS NULL;
        CREATE TABLE chronik_inbox (
            consumer TEXT NOT NULL,
            message_id TEXT NOT NULL,
            handled_at TEXT NOT NULL,
            PRIMARY KEY (consumer, message_id)
        );
        CREATE TABLE chronik_dead_letters (
            consumer TEXT NOT NULL,
            message_id TEXT NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            error TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            dead_at TEXT NOT NULL,
            requested_at TEXT,
            PRIMARY KEY (consumer, message_id)
        )
        """,
    )
]

#: Every part's migrations, in the order ``chronik migrate`` applies them.
PARTS: dict[str, list[tuple[str, str]]] = {
    "events": EVENTS,
    "read models": READ_MODELS,
    "messages": MESSAGES,
}
