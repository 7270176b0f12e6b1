"""Guarantee 8: kill -9 of a writing process at any moment loses no committed event.

A real subprocess appends batches of three events and reports each append after it
returned. The test kills it at a random moment, reopens the store, and checks that
every reported append is there, whole, and that no append is there in part.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronik.adapters import open_event_store
from chronik.eventstore import BaseEventStore
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Withdrawn

WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = 5


def _run_and_kill(url: str, after_lines: int) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, str(WRITER), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        first = child.stdout.readline()
        assert first == "ready\n", first + (child.stderr.read() if child.stderr else "")
        acknowledged = [child.stdout.readline() for _ in range(after_lines)]
        time.sleep(random.uniform(0, 0.02))  # land the kill between or inside commits
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        acknowledged += child.stdout.readlines()  # lines written before the kill
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return [line.split()[0] for line in acknowledged if line.endswith("\n") and line.strip()]


async def _check(store: BaseEventStore, acknowledged: list[str]) -> None:
    by_stream: dict[str, list[int]] = {}
    after = 0
    while page := await store.read_all(after, limit=5000):
        for r in page:
            by_stream.setdefault(r.stream_id, []).append(r.version)
            assert r.event == Withdrawn(r.version)
        after = page[-1].position
    missing = [s for s in acknowledged if s not in by_stream]
    assert not missing, f"{len(missing)} acknowledged appends were lost, e.g. {missing[0]}"
    partial = {s: v for s, v in by_stream.items() if v != [1, 2, 3]}
    assert not partial, f"appends stored in part: {partial}"


async def _crash_repeatedly(url: str) -> None:
    acknowledged: list[str] = []
    for _ in range(KILLS):
        acknowledged += _run_and_kill(url, random.randint(5, 150))
        store = await open_event_store(url, CONTRACT_TYPES)
        try:
            await _check(store, acknowledged)
        finally:
            await store.close()
    assert len(acknowledged) >= KILLS * 5


@pytest.mark.slow
async def test_killing_a_sqlite_writer_loses_no_committed_append(tmp_path: Path) -> None:
    await _crash_repeatedly(f"sqlite:///{tmp_path}/crash.db")


@pytest.mark.slow
async def test_killing_a_postgres_writer_loses_no_committed_append(
    postgres_url: str, pg_schema: str
) -> None:
    await _crash_repeatedly(f"{postgres_url}?schema={pg_schema}")
