"""Where chronik's time goes per event: single appends, a 1,000-event load, read-all.

    python -m benchmarks.profile_store append|load|read_all sqlite|postgres [--events N]
        [--fsync-off] [--top 15] [--plain] [--repeat N]

Runs the work twice in one process on a fresh SQLite file or PostgreSQL schema: once
plain, for the wall time per event, then under cProfile, for the split. It prints the
wall time per event, the cumulative time per event of the stages chronik's append and
read paths go through (prepare, encode, ids, group commit, the statements, decode,
objects), and the functions with the most own time. cProfile adds a cost per Python call,
so read the profiled figures as shares of the profiled total, and the plain wall time as
the truth. On SQLite each statement on the store's writer connection is timed by kind
(BEGIN, INSERT, COMMIT) through a thin wrapper, since cProfile sees one ``execute``.
With ``--fsync-off`` appends run with SQLite synchronous=OFF or PostgreSQL
synchronous_commit=off: the difference from a run with it on is the wait for the disk.

``--plain`` skips cProfile and the wrapper and runs the work ``--repeat`` times in
``_timed_part``, for a sampling profiler, e.g. ``py-spy record --native -f raw -o
out.txt -- python -m benchmarks.profile_store read_all sqlite --plain --repeat 20``.

A diagnostic for the work of issue 14; it reaches into the store's private attributes
(its writer connection) and may need adjusting when they move.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.common import BATCH_EVENTS, DEFAULT_POSTGRES_URL, READ_PAGE, Target
from benchmarks.systems.chronik_system import (
    TYPES,
    Basket,
    _event,
    _sqlite_synchronous_off,
    _url,
)
from chronik import ExpectedVersion, Repository
from chronik.adapters import open_database
from chronik.adapters.sqlite.database import SQLiteDatabase
from chronik.eventstore import BaseEventStore

# Stages by the name cProfile gives the function (file:line(name) ends with "(name)").
_STAGES: dict[str, tuple[str, ...]] = {
    "append": (
        "append",
        "prepare",
        "encode_data",
        "uuid7s",
        "submit",
        "_commit_batch",
        "_append_one",
        "_execute_write",
        "_notify_loop",
    ),
    "load": ("load", "read_stream", "_stream_rows", "_decode", "_apply", "_added"),
    "read_all": ("read_all", "_all_rows", "_decode"),
}
_BUILTINS = (
    "<method 'execute' of 'sqlite3.Connection' objects>",
    "<method 'fetchall' of 'sqlite3.Cursor' objects>",
    "<method 'decode' of 'msgspec.json.Decoder' objects>",
    "<method 'encode' of 'msgspec.json.Encoder' objects>",
    "<method 'fromisoformat' of 'datetime.datetime' objects>",
    "uuid_from_bytes",
)


class _TimedConnection:
    """A sqlite3 connection that times each statement by its first word."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def execute(self, statement: str, *args: Any) -> sqlite3.Cursor:
        kind = statement.split(None, 1)[0].upper()
        started = time.perf_counter()
        try:
            return self._conn.execute(statement, *args)
        finally:
            self.seconds[kind] += time.perf_counter() - started
            self.calls[kind] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def _append(store: BaseEventStore, events: int) -> None:
    plan = [(str(uuid.uuid4()), [_event(i)]) for i in range(events)]
    for sid, batch in plan:
        await store.append(sid, batch, expected=ExpectedVersion.NO_STREAM)


async def _prepare_load(store: BaseEventStore, stream: str) -> None:
    for start in range(0, 1000, BATCH_EVENTS):
        await store.append(stream, [_event(start + i) for i in range(BATCH_EVENTS)], expected=start)


async def _load(store: BaseEventStore, stream: str, loads: int) -> None:
    repo = Repository(store, Basket)
    for _ in range(loads):
        basket = await repo.load(stream)
        assert basket.items == 1000


async def _prepare_read_all(store: BaseEventStore, events: int) -> None:
    for _ in range(0, events, BATCH_EVENTS):
        await store.append(str(uuid.uuid4()), [_event(i) for i in range(BATCH_EVENTS)])


async def _read_all(store: BaseEventStore, events: int) -> None:
    after, seen = 0, 0
    while page := await store.read_all(after, limit=READ_PAGE):
        seen += len(page)
        after = page[-1].position
    assert seen >= events


def _short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    return f"{Path(filename).name}:{line}({name})"


def _report(
    profile: cProfile.Profile, work: str, events: int, top: int, plain_us: float, total: float
) -> list[str]:
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    lines = [
        f"wall time, not profiled: {plain_us:,.1f} us per event",
        f"wall time, profiled: {total / events * 1e6:,.1f} us per event (cProfile's cost in)",
        "",
        "stage (cumulative, includes what it calls)   calls/event    us/event   share",
    ]
    wanted = _STAGES[work]
    for func, (_, ncalls, _, cumtime, _) in sorted(raw.items(), key=lambda kv: -kv[1][3]):
        name = func[2]
        if name in wanted or any(name == b or name.endswith(b) for b in _BUILTINS):
            lines.append(
                f"  {_short(func)[:44]:<44} {ncalls / events:>8.2f} {cumtime / events * 1e6:>11.1f}"
                f" {cumtime / total:>7.1%}"
            )
    lines += ["", f"top {top} by own time                          calls/event    us/event   share"]
    for func, (_, ncalls, tottime, _, _) in sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]:
        lines.append(
            f"  {_short(func)[:44]:<44} {ncalls / events:>8.2f} {tottime / events * 1e6:>11.1f}"
            f" {tottime / total:>7.1%}"
        )
    return lines


async def _timed_part(run: Callable[[], Awaitable[None]], repeat: int) -> float:
    """The measured work, ``repeat`` times: its wall time (a sampler's anchor, by name)."""
    started = time.perf_counter()
    for _ in range(repeat):
        await run()
    return time.perf_counter() - started


async def _profile(
    work: str, target: Target, fsync: bool, events: int, top: int, repeat: int, profiled: bool
) -> None:
    database = await open_database(_url(target, fsync))
    store = database.event_store(TYPES)
    timed: _TimedConnection | None = None
    try:
        if not fsync and target.backend == "sqlite":
            _sqlite_synchronous_off(database)
        if isinstance(database, SQLiteDatabase) and profiled:
            timed = _TimedConnection(database.writer)
            database.writer = timed  # type: ignore[assignment]
        if work == "append":
            await _append(store, 200)  # warm up: statements prepared, pools filled
            run: Callable[[], Awaitable[None]] = lambda: _append(store, events)  # noqa: E731
            per = events
        elif work == "load":
            stream = str(uuid.uuid4())
            await _prepare_load(store, stream)
            loads = max(1, events // 1000)
            await _load(store, stream, 2)
            run = lambda: _load(store, stream, loads)  # noqa: E731
            per = loads * 1000
        else:
            await _prepare_read_all(store, events)
            await _read_all(store, events)
            run = lambda: _read_all(store, events)  # noqa: E731
            per = events
        plain_us = await _timed_part(run, repeat) / (per * repeat) * 1e6
        if not profiled:
            print(f"wall time: {plain_us:,.1f} us per event ({per * repeat:,} events)")
            return
        if timed is not None:
            timed.seconds.clear()
            timed.calls.clear()
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        await run()
        profile.disable()
        total = time.perf_counter() - started
        for line in _report(profile, work, per, top, plain_us, total):
            print(line)
        if timed is not None and timed.calls:
            print("\nSQLite statements on the writer, profiled run (wall, includes the fsync):")
            for kind, seconds in sorted(timed.seconds.items(), key=lambda kv: -kv[1]):
                print(
                    f"  {kind:<10} {timed.calls[kind] / per:>6.2f} per event"
                    f" {seconds / per * 1e6:>9.1f} us per event"
                )
    finally:
        if timed is not None and isinstance(database, SQLiteDatabase):
            database.writer = timed._conn
        await database.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_store", description=__doc__)
    parser.add_argument("work", choices=sorted(_STAGES))
    parser.add_argument("backend", choices=("sqlite", "postgres"))
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--fsync-off", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no cProfile: time the work only (to run under a sampling profiler like py-spy)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="how often the work runs")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args(argv)
    events = args.events or {"append": 2000, "load": 20_000, "read_all": 50_000}[args.work]
    directory = tempfile.mkdtemp(prefix="chronik_profile_")
    schema = f"chronik_profile_{uuid.uuid4().hex[:12]}"
    target = Target(args.backend, str(Path(directory) / "events.db"), args.postgres_url, schema)
    if args.backend == "postgres":
        with psycopg.connect(args.postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        asyncio.run(
            _profile(
                args.work,
                target,
                not args.fsync_off,
                events,
                args.top,
                args.repeat,
                not args.plain,
            )
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if args.backend == "postgres":
            with psycopg.connect(args.postgres_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
