"""A PostgreSQL store made by an older chronik is migrated in place when opened.

Migration 0002 replaces the append functions so they return the recorded_at they store;
a schema made with 0001 alone must keep its events, append on, and from then on hand
append hooks (outbox envelopes, inline read models) the time the rows hold. Migration
0003 records the subjects forgotten before it as forgotten (their tombstones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from chronik.adapters import open_event_store
from chronik.adapters.postgres import schema as ddl
from chronik.errors import SubjectForgottenError
from chronik.eventstore import RecordedEvent
from chronik.testing.eventstore_contract import CONTRACT_TYPES, NOW, Opened, Withdrawn

pytestmark = pytest.mark.postgres


async def test_a_schema_of_the_first_migration_is_migrated_and_hooks_see_stored_times(
    postgres_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(ddl, "EVENTS", ddl.EVENTS[:1])
        before = await open_event_store(f"{postgres_url}?schema={pg_schema}", CONTRACT_TYPES)
        try:
            # The old function, called as the old code called it: it returns two numbers.
            request = await before.prepare("account-1", [Withdrawn(1)], 0)
            e = request.events[0]
            async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
                row = await (
                    await conn.execute(
                        f"SELECT {pg_schema}.chronik_append_one("
                        "%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            "account-1",
                            0,
                            e.id,
                            e.type,
                            e.schema_version,
                            e.data,
                            e.correlation_id,
                            e.causation_id,
                            e.headers,
                        ),
                    )
                ).fetchone()
            assert row is not None and row[0] == [1, 1]
        finally:
            await before.close()

    store = await open_event_store(f"{postgres_url}?schema={pg_schema}", CONTRACT_TYPES)
    seen: list[RecordedEvent] = []

    async def hook(conn: Any, events: list[RecordedEvent]) -> Callable[[], None] | None:
        seen.extend(events)
        return None

    store.add_append_hook(hook)
    try:
        await store.append("account-1", [Withdrawn(2)], expected=1)
        await store.append("account-2", [Withdrawn(3), Withdrawn(4)], expected=0)
        stored = await store.read_all(0)
    finally:
        await store.close()

    assert [(r.stream_id, r.version) for r in stored] == [
        ("account-1", 1),
        ("account-1", 2),
        ("account-2", 1),
        ("account-2", 2),
    ]
    assert [(r.position, r.recorded_at) for r in seen] == [
        (r.position, r.recorded_at) for r in stored[1:]
    ]


async def test_subjects_forgotten_before_tombstones_existed_stay_forgotten_after_migrating(
    postgres_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone, kept = "holder-gone", "holder-kept"
    with monkeypatch.context() as old:
        old.setattr(ddl, "EVENTS", ddl.EVENTS[:2])
        before = await open_event_store(f"{postgres_url}?schema={pg_schema}", CONTRACT_TYPES)
        try:
            requests = [
                await before.prepare("account-1", [Opened(gone, "Ada Lovelace", NOW)], 0),
                await before.prepare("account-2", [Opened(kept, "Grace Hopper", NOW)], 0),
            ]
        finally:
            await before.close()
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            for request in requests:  # appended as the code of migration 0002 appended
                e = request.events[0]
                await conn.execute(
                    f"SELECT {pg_schema}.chronik_append_one(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        request.stream_id,
                        0,
                        e.id,
                        e.type,
                        e.schema_version,
                        e.data,
                        None,
                        None,
                        None,
                    ),
                )
            for n, junk in enumerate([b'{"$enc" is no JSON', b'["$enc"]', b'{"a": {"$enc": 7}}']):
                await conn.execute(
                    f"INSERT INTO {pg_schema}.chronik_events VALUES (nextval("
                    f"'{pg_schema}.chronik_positions'), %s, 1, gen_random_uuid(), 'x', 1, now(), "
                    "%s, NULL, NULL, NULL)",
                    (f"junk-{n}", junk),
                )
            # ... and forgotten as that code forgot: the key row deleted.
            await conn.execute(
                f"DELETE FROM {pg_schema}.chronik_subject_keys WHERE subject = %s", (gone,)
            )

    store = await open_event_store(f"{postgres_url}?schema={pg_schema}", CONTRACT_TYPES)
    try:
        with pytest.raises(SubjectForgottenError):
            await store.append("account-3", [Opened(gone, "Ada King", NOW)])
        [first] = await store.read_stream("account-1")
        assert first.event == Opened(gone, "[forgotten]", NOW)
        await store.append("account-2", [Opened(kept, "Grace B. Hopper", NOW)], expected=1)
        assert [r.event for r in await store.read_stream("account-2")] == [
            Opened(kept, "Grace Hopper", NOW),
            Opened(kept, "Grace B. Hopper", NOW),
        ]
    finally:
        await store.close()
