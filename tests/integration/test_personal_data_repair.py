"""A store damaged by the old defects of forgetting reads again once the check repairs it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chronik.adapters import open_event_store
from chronik.errors import CorruptEventError
from chronik.testing.eventstore_contract import (
    CONTRACT_TYPES,
    NOW,
    TWO_STEP_TYPES,
    HolderForgottenBefore,
    Opened,
)


async def test_a_subject_given_a_new_key_after_forgetting_reads_as_placeholders_after_repair(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = await open_event_store(f"sqlite:///{path}", CONTRACT_TYPES)
    try:
        await store.append("account-1", [Opened("holder-1", "Ada Lovelace", NOW)])
        await store.with_types(TWO_STEP_TYPES).append(
            "account-1", [HolderForgottenBefore("holder-1")]
        )
        # What the old code left: the forget deleted the key, a later edit made a new one.
        with sqlite3.connect(path, isolation_level=None) as conn:
            conn.execute(
                "UPDATE chronik_subject_keys SET key = randomblob(32) WHERE subject = 'holder-1'"
            )
        conn.close()
        with pytest.raises(CorruptEventError, match="does not decrypt"):
            await store.read_stream("account-1")

        assert await store.check_forgetting(repair=True) == ["holder-1"]
        opened, _ = await store.read_stream("account-1")
        assert opened.event == Opened("holder-1", "[forgotten]", NOW)
    finally:
        await store.close()
