"""How PostgreSQL commits are announced to other processes (NOTIFY), with no server.

An append statement that starts when a NOTIFY is due carries it; its NOTIFY vouches for
the commits counted before it started and for its own, not for those of other writer
connections counted while it was under way. A NOTIFY of its own is sent only when no
append statement is under way to carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("psycopg")

from chronik.adapters.postgres.database import PostgresDatabase


class _Conn:
    def __init__(self, sent: list[str]) -> None:
        self._sent = sent

    async def execute(self, query: str, params: Any = None) -> None:
        self._sent.append(query)


class _Pool:
    """Records the statements sent on its connections: the NOTIFYs of their own."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[_Conn]:
        yield _Conn(self.sent)


def _database(interval: float) -> tuple[PostgresDatabase, _Pool]:
    pool = _Pool()
    database = PostgresDatabase(pool, "s", "postgresql://x@127.0.0.1/db")  # type: ignore[arg-type]
    database.notify_interval = interval
    return database, pool


async def _stop(database: PostgresDatabase) -> None:
    task = database._notifier
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_carried_notify_alone_announces_everything_counted() -> None:
    database, pool = _database(3600.0)
    database._notified_at = -math.inf  # due
    carried = database.carry_notify()
    assert carried == 0
    database.statement_ended()
    database.committed(carried)
    assert database._announced == database._committed == 1
    assert database._notifier is None
    assert pool.sent == []


async def test_a_carried_notify_does_not_vouch_for_commits_of_other_connections_meanwhile() -> None:
    database, _ = _database(3600.0)
    database.committed()  # an earlier commit, before the carrying statement starts
    database._notified_at = -math.inf
    carried = database.carry_notify()
    assert carried == 1
    other = database.carry_notify()  # another connection's statement, not due: no NOTIFY
    assert other is None
    database.statement_ended()
    database.committed(other)  # it commits while the carrying one is under way
    database.statement_ended()
    database.committed(carried)
    # The earlier commit is covered; the other connection's may have come after the
    # NOTIFY: it stays to announce.
    assert database._committed == 3
    assert database._announced == 1
    assert database._notifier is not None and not database._notifier.done()
    await _stop(database)


async def test_a_due_notify_waits_for_the_append_under_way_and_is_sent_once_none_is() -> None:
    database, pool = _database(0.01)
    database._notified_at = -math.inf
    carried = database.carry_notify()  # due: this statement carries the next NOTIFY
    assert carried is not None
    database.statement_ended()
    database.committed(carried)
    assert database._announced == 1
    in_flight = database.carry_notify()  # not due yet: it will not carry
    assert in_flight is None
    database.committed()  # a hooked append's commit, announced by nobody yet
    # Ten intervals with a statement under way: the next statement is to carry it.
    await asyncio.sleep(0.1)
    assert pool.sent == []
    database.statement_ended()  # nothing under way now: a NOTIFY of its own
    for _ in range(1000):  # 10 s at most
        if pool.sent:
            break
        await asyncio.sleep(0.01)
    assert pool.sent == ["SELECT pg_notify(%s, '')"]
    assert database._announced == database._committed
    await _stop(database)
