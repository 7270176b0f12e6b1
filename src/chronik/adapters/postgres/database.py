"""The PostgreSQL database: one schema, its connection pool, migrations and notifications.

Every role it hands out (event store, message storage, read models) uses its pool and
its transactions, renders its statements into its schema (``schema.in_schema``) and
reports an unreachable server as ``StoreUnavailableError``. Commits are announced to
other processes by NOTIFY, at most once per ``notify_interval`` (a NOTIFY takes a
cluster-wide lock at commit): carried by an append's own statement when one is due, so
that slow appends do not pay a second commit each, else sent after the commits it
announces; a listener turns other processes' NOTIFYs into wake-ups of this process's
readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from chronik.adapters.port import Migration
from chronik.adapters.postgres import schema as ddl
from chronik.adapters.postgres.eventstore import PostgresEventStore
from chronik.adapters.postgres.messages import PostgresMessageStorage
from chronik.adapters.postgres.readmodels import PostgresProjectionBackend
from chronik.adapters.url import redact
from chronik.errors import (
    ConfigurationError,
    MigrationsPendingError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from chronik.eventstore.codec import EventTypes
from chronik.eventstore.signal import HeadSignal

__all__ = ["PostgresDatabase"]

log = logging.getLogger(__name__)


class PostgresDatabase:
    """One PostgreSQL schema. Open it with ``PostgresDatabase.open``."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        conninfo: str,
        connect_timeout: float = 10.0,
        *,
        auto_migrate: bool = True,
        writers: int = 4,
    ) -> None:
        self.pool = pool
        #: connections each event store appends through, one batch of appends each
        self.writers = writers
        #: False: no DDL at all; ``migrate`` checks instead (MigrationsPendingError)
        self.auto_migrate = auto_migrate
        self.schema = schema
        #: the libpq URL, password included: for connections of their own, never shown
        self.conninfo = conninfo
        self.url = redact(conninfo)
        self.connect_timeout = connect_timeout
        self.signal = HeadSignal()
        self.channel = "chronik_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
        self.notify_interval = 0.02
        self._notified_at = -math.inf  # time.monotonic() of the last NOTIFY sent or carried
        self._committed = 0  # appends committed through this database, counted
        self._announced = 0  # of which a NOTIFY delivered at or after their commit covers
        self._in_flight = 0  # autocommit append statements under way (each may carry one)
        self._notifier: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._stores: list[PostgresEventStore] = []
        self._messages: PostgresMessageStorage | None = None
        self._projections: PostgresProjectionBackend | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str = "public",
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 10.0,
        create: bool = True,
        migrate: bool = True,
        writers: int = 4,
    ) -> PostgresDatabase:
        """Connect, create or migrate the event tables of the schema, and return it.

        With ``create=False`` a schema without chronik's events table raises
        StoreNotFoundError and is left as it was (not created). With ``migrate=False``
        nothing is created or migrated, now or later (see ``migrate``).
        """
        if not ddl.SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"postgres schema {schema!r} is not valid: use 1-63 lowercase letters, digits "
                "or '_', starting with a letter or '_'"
            )
        if not 1 <= writers <= 64:
            raise ConfigurationError(
                f"postgres writers (the event store's writer connections) must be 1-64, "
                f"got {writers}"
            )
        if not 1 <= pool_min <= pool_max:
            raise ConfigurationError(
                f"postgres pool sizes need 1 <= pool_min <= pool_max, got {pool_min}, {pool_max}"
            )
        # One connection first, so that a refusal ends the wait at once and a failure
        # says its cause; the pool would only time out, having logged each attempt.
        await _first_connection(url, connect_timeout)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=pool_min,
            max_size=pool_max,
            kwargs={"autocommit": True},
            open=False,
            timeout=connect_timeout,
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.Error):
            await pool.close()
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact(url)} within {connect_timeout:g} s"
            ) from None
        database = cls(pool, schema, url, connect_timeout, auto_migrate=migrate, writers=writers)
        try:
            if not create:
                await database._check_exists()
            if migrate:
                await database.migrate(ddl.EVENTS)
        except BaseException:
            await pool.close()
            raise
        return database

    # -- the roles ---------------------------------------------------------------------

    def event_store(
        self, types: EventTypes, *, closes_database: bool = False
    ) -> PostgresEventStore:
        store = PostgresEventStore(self, types, closes_database=closes_database)
        self._stores.append(store)
        return store

    def messages(self) -> PostgresMessageStorage:
        if self._messages is None:
            self._messages = PostgresMessageStorage(self)
        return self._messages

    def projections(self) -> PostgresProjectionBackend:
        if self._projections is None:
            self._projections = PostgresProjectionBackend(self)
        return self._projections

    async def close(self) -> None:
        for task in (self._notifier, self._listener):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for store in self._stores:
            await store.close_writer()
        await self.pool.close()

    # -- connections and transactions --------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction on a pooled connection, for read models and outboxes."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """A driver's error as chronik's: the server cannot be used now."""
        return StoreUnavailableError(f"PostgreSQL at {self.url}: {exc}")

    async def _check_exists(self) -> None:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT to_regclass(%s)::text",
                    (ddl.in_schema("{s}.chronik_events", self.schema),),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise self.unavailable(exc) from exc
        if row is None or row[0] is None:
            raise StoreNotFoundError(
                f"PostgreSQL at {self.url}: schema {self.schema!r} has no chronik tables"
            )

    def migrations(self) -> list[Migration]:
        """Every migration of the schema, rendered as ``migrate`` would run it."""
        found = [Migration("schema", ddl.BOOTSTRAP_NAME, self._render(ddl.BOOTSTRAP))]
        for part, migrations in ddl.PARTS.items():
            for name, template in migrations:
                record = f"INSERT INTO {{s}}.chronik_migrations (name) VALUES ('{name}');"
                found.append(
                    Migration(
                        part, name, self._render(f"{textwrap.dedent(template).strip()}\n{record}")
                    )
                )
        return found

    def _render(self, template: str) -> str:
        script = template.replace("{lock}", str(ddl.lock_key(self.schema)))
        return ddl.in_schema(script, self.schema)

    async def applied_migrations(self) -> set[str]:
        """The names in ``chronik_migrations``; empty if the schema has none (no DDL)."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT to_regclass(%s)::text",
                    (ddl.in_schema("{s}.chronik_migrations", self.schema),),
                )
                row = await cur.fetchone()
                if row is None or row[0] is None:
                    return set()
                cur = await conn.execute(
                    ddl.in_schema("SELECT name FROM {s}.chronik_migrations", self.schema)
                )
                return {ddl.BOOTSTRAP_NAME} | {name for (name,) in await cur.fetchall()}
        except psycopg.Error as exc:
            raise self.unavailable(exc) from exc

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> None:
        """Apply the named migrations not yet applied, each once, under a lock.

        A migration is a script template: ``{s}`` is the quoted schema, ``{lock}`` the
        advisory lock key of its positions. Opened with ``migrate=False`` this runs no
        DDL: MigrationsPendingError names what is not applied.
        """
        if not self.auto_migrate:
            applied = await self.applied_migrations()
            pending = [name for name, _ in migrations if name not in applied]
            if pending:
                raise MigrationsPendingError(
                    f"PostgreSQL at {self.url}, schema {self.schema!r}: migrations "
                    f"{', '.join(pending)} not applied, and CHRONIK_AUTO_MIGRATE is off: "
                    "run `chronik migrate`"
                )
            return
        key = ddl.lock_key(self.schema)
        schema = self.schema
        try:
            async with self.pool.connection() as conn:
                await conn.execute("SELECT pg_advisory_lock(%s)", (key - 1,))
                try:
                    cur = await conn.execute("SELECT to_regnamespace(%s)::text", (schema,))
                    found = await cur.fetchone()
                    if found is None or found[0] is None:
                        await conn.execute(ddl.in_schema(ddl.CREATE_SCHEMA, schema))
                    await conn.execute(ddl.in_schema(ddl.MIGRATIONS_TABLE, schema))
                    cur = await conn.execute(
                        ddl.in_schema("SELECT name FROM {s}.chronik_migrations", schema)
                    )
                    done = {name for (name,) in await cur.fetchall()}
                    for name, template in migrations:
                        if name in done:
                            continue
                        script = template.replace("{lock}", str(key))
                        async with conn.transaction():
                            await conn.execute(ddl.in_schema(script, schema))
                            await conn.execute(
                                ddl.in_schema(
                                    "INSERT INTO {s}.chronik_migrations (name) VALUES (%s)",
                                    schema,
                                ),
                                (name,),
                            )
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (key - 1,))
        except psycopg.Error as exc:
            raise self.unavailable(exc) from exc

    # -- notifications -----------------------------------------------------------------

    def carry_notify(self) -> int | None:
        """Whether the append about to run in autocommit should carry the NOTIFY itself.

        At most once per ``notify_interval``: then the append's own commit announces it
        and every commit counted before it, with no transaction of its own; the count is
        returned, for ``committed``. The statement is counted as under way until
        ``statement_ended``.
        """
        self._in_flight += 1
        now = time.monotonic()
        if now - self._notified_at >= self.notify_interval:
            self._notified_at = now
            return self._committed
        return None

    def statement_ended(self) -> None:
        """An append statement counted by ``carry_notify`` ended, committed or not."""
        self._in_flight -= 1

    def committed(self, carried: int | None = None) -> None:
        """An append committed; ``carried``: its own transaction sent the NOTIFY, and the
        commits counted when it started (``carry_notify``'s answer).

        Commits counted while it was under way (another writer connection's) may have
        come before or after its own, so its NOTIFY vouches for them only if there were
        none. One that is not announced so is announced within ``notify_interval``: by
        the next append that carries it, or else by a NOTIFY of its own, sent after that
        time (coalesced), or a little later while appends are under way or committing:
        the next one will carry it.
        """
        self._committed += 1
        if carried is not None:
            if carried == self._committed - 1:
                self._announced = self._committed
            else:
                self._announced = max(self._announced, carried)
        if self._announced < self._committed and (self._notifier is None or self._notifier.done()):
            self._notifier = asyncio.get_running_loop().create_task(self._notify_loop())

    def notify_soon(self) -> None:
        """Tell other processes, soon, that something was committed (coalesced)."""
        self.committed()

    async def _notify_loop(self) -> None:
        seen = self._committed
        while self._announced < self._committed:
            wait = self._notified_at + self.notify_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # an append may have carried it meanwhile
            if self._in_flight or self._committed != seen:
                # Appends are flowing (one under way, or commits since the last look): the
                # next statement carries the NOTIFY, as it is due, which saves a
                # transaction of its own; look again shortly.
                seen = self._committed
                await asyncio.sleep(self.notify_interval / 4)
                continue
            upto = self._committed
            self._notified_at = time.monotonic()
            try:
                async with self.pool.connection() as conn:
                    await conn.execute("SELECT pg_notify(%s, '')", (self.channel,))
            except psycopg.Error as exc:
                log.warning(
                    "NOTIFY failed; listeners will poll",
                    extra={"channel": self.channel, "error": str(exc)},
                )
                return
            self._announced = max(self._announced, upto)

    def listen(self) -> None:
        """Wake this process's readers when another process commits (started once)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen_loop())

    async def _listen_loop(self) -> None:
        """Turn other processes' NOTIFYs into wake-ups; reconnect with backoff."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    self.signal.poke()  # something may have committed while we connected
                    delay = 0.1
                    async for _ in conn.notifies():
                        self.signal.poke()
            except psycopg.Error as exc:
                log.warning(
                    "LISTEN lost",
                    extra={"channel": self.channel, "error": str(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


#: what a server that answered says when trying again cannot help
_REFUSALS = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "no password supplied",
    "password is required",
    "permission denied for database",
)


async def _first_connection(url: str, within: float) -> None:
    """Connect once within ``within`` s, trying again after failures a wait may cure.

    ``ConfigurationError`` at once when the server refuses (credentials, a database that
    does not exist); ``StoreUnavailableError`` with the last cause when time is up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(max(left, 0.1)):
                conn = await psycopg.AsyncConnection.connect(
                    url, connect_timeout=max(2, min(10, round(left)))
                )
        except (psycopg.Error, TimeoutError) as exc:
            cause = _connect_cause(exc)
            if isinstance(exc, psycopg.ProgrammingError):  # libpq refused the URL itself
                raise ConfigurationError(f"PostgreSQL URL {redact(url)}: {cause}") from None
            if any(refusal in cause for refusal in _REFUSALS):
                raise ConfigurationError(
                    f"PostgreSQL at {redact(url)} refused the connection: {cause}"
                ) from None
            if loop.time() + 0.5 >= deadline:
                raise StoreUnavailableError(
                    f"cannot connect to PostgreSQL at {redact(url)} within {within:g} s: {cause}"
                ) from None
            await asyncio.sleep(0.5)
            continue
        await conn.close()
        return


def _connect_cause(exc: BaseException) -> str:
    """libpq's connection error, its cause only: 'connection refused', 'database "x" ...'."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cause = first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:")
    cause = " ".join(cause.split())
    return cause[:1].lower() + cause[1:]
