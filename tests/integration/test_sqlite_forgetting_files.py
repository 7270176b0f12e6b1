"""On SQLite, a forgotten subject's key leaves the files: the database, its WAL, all.

Crypto-shredding holds only if the key is gone from the disk's files, not just from
the table: the deleted row's bytes must not stay in a page's free space, nor earlier
copies of the page in the write-ahead log.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chronik.adapters.sqlite.database import SQLiteDatabase
from chronik.testing.eventstore_contract import CONTRACT_TYPES, NOW, HolderForgotten, Opened


def key_of(path: Path, subject: str) -> bytes:
    with sqlite3.connect(path) as conn:
        (key,) = conn.execute(
            "SELECT key FROM chronik_subject_keys WHERE subject = ?", (subject,)
        ).fetchone()
    conn.close()
    return bytes(key)


def files_holding(directory: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and needle in p.read_bytes())


@pytest.mark.parametrize("how", ["forget", "forgetting event"])
async def test_a_forgotten_subjects_key_is_in_no_file_of_the_store(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "events.db"
    database = await SQLiteDatabase.open(path)
    store = database.event_store(CONTRACT_TYPES)
    try:
        for n in range(20):  # neighbours on the same pages
            await store.append(f"account-{n}", [Opened(f"holder-{n}", "Someone", NOW)])
        key = key_of(path, "holder-7")
        assert files_holding(tmp_path, key), "the key must be in the files before"
        if how == "forget":
            await store.forget("holder-7")
        else:
            await store.append("account-7", [HolderForgotten("holder-7")])
        assert files_holding(tmp_path, key) == []
        [opened, *_] = await store.read_stream("account-7")
        assert opened.event == Opened("holder-7", "[forgotten]", NOW)
        assert (await store.read_stream("account-8"))[0].event == Opened("holder-8", "Someone", NOW)
        # Deleted content is zeroed on every connection, whatever the SQLite build's
        # default (Debian's is on, python.org's and macOS's are off).
        assert database.query("PRAGMA secure_delete") == [(1,)]
        async with database.transaction() as conn:
            assert conn.execute("PRAGMA secure_delete").fetchone() == (1,)
    finally:
        await database.close()
