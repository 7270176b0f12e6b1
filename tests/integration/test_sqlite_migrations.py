"""A SQLite store made by an older chronik is migrated in place when opened.

Migration 0002 keeps a forgotten subject's row without its key (the tombstone); the
subjects forgotten before it, whose key rows were deleted, are found by the sealed
values left in their events.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chronik.adapters import open_event_store
from chronik.adapters.sqlite import schema
from chronik.errors import SubjectForgottenError
from chronik.testing.eventstore_contract import CONTRACT_TYPES, NOW, Opened


async def test_subjects_forgotten_before_tombstones_existed_stay_forgotten_after_migrating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    gone, kept = "holder-gone", "holder-kept"
    with monkeypatch.context() as old:
        old.setattr(schema, "EVENTS", schema.EVENTS[:1])
        before = await open_event_store(f"sqlite:///{path}", CONTRACT_TYPES)
        try:
            await before.append("account-1", [Opened(gone, "Ada Lovelace", NOW)])
            await before.append("account-2", [Opened(kept, "Grace Hopper", NOW)])
        finally:
            await before.close()
    with sqlite3.connect(path, isolation_level=None) as conn:
        for n, junk in enumerate([b'{"$enc" is no JSON', b'["$enc"]', b'{"a": {"$enc": 7}}']):
            conn.execute(
                "INSERT INTO chronik_events (stream_id, version, id, type, schema_version, "
                "recorded_at, data) VALUES (?, 1, randomblob(16), 'x', 1, '2026-01-01', ?)",
                (f"junk-{n}", junk),
            )
        # Forgotten as the code of migration 0001 forgot: the key row deleted.
        conn.execute("DELETE FROM chronik_subject_keys WHERE subject = ?", (gone,))
    conn.close()

    store = await open_event_store(f"sqlite:///{path}", CONTRACT_TYPES)
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
