"""Named leases on PostgreSQL: a session advisory lock on a connection of its own.

A worker leads while its lock session lives. Another replica that tries the same lock
is refused until that session ends: a clean exit closes the connection, a killed
process's connection is closed by the server, and ``pg_terminate_backend`` ends it
from outside. The holder checks its session before each step (``check``), so a leader
whose lock connection was lost stops acting and contends again rather than working on
beside the replica that took over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg

from chronik.adapters.postgres.schema import lock_key
from chronik.errors import LostLeadershipError

if TYPE_CHECKING:
    from chronik.adapters.postgres.database import PostgresDatabase

__all__ = ["AdvisoryLease", "advisory_lease"]

#: the longest a check may take before the lease counts as lost (a silent network)
CHECK_WITHIN = 10.0


class AdvisoryLease:
    """A session advisory lock tried on ``conn``; ``pid`` is that session's backend."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], name: str, held: bool, pid: int) -> None:
        self.conn = conn
        self.name = name
        self._held = held
        self.pid = pid

    @property
    def held(self) -> bool:
        return self._held

    async def check(self) -> None:
        """Raise LostLeadershipError unless the lock's session still answers."""
        if not self._held:
            raise LostLeadershipError(f"lease {self.name!r} is held by another replica")
        try:
            await asyncio.wait_for(self.conn.execute("SELECT 1"), CHECK_WITHIN)
        except (psycopg.Error, TimeoutError) as exc:
            self._held = False
            raise LostLeadershipError(
                f"lease {self.name!r}: its lock session is gone ({type(exc).__name__}: {exc})"
            ) from exc


@contextlib.asynccontextmanager
async def advisory_lease(database: PostgresDatabase, name: str) -> AsyncIterator[AdvisoryLease]:
    """Try the lock named ``name`` in the database's schema; hold it while the block runs."""
    key = lock_key(f"{database.schema}:{name}")
    try:
        conn = await psycopg.AsyncConnection.connect(database.conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise database.unavailable(exc) from exc
    try:
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (key,))
            row = await cur.fetchone()
        except psycopg.Error as exc:
            raise database.unavailable(exc) from exc
        assert row is not None
        yield AdvisoryLease(conn, name, bool(row[0]), int(row[1]))
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.close()  # closing the session releases the lock
