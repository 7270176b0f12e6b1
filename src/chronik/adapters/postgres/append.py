"""The append path of the PostgreSQL event store: group commit, one statement per batch.

Global positions come from a sequence read under a transaction-scoped advisory
lock, so positions are handed out in commit order: a reader that has seen
position p has seen every committed event below p, and no event can later commit
below it (the sequence-gap bug of naive stores). The lock is held only from the
append's position assignment to its commit; appends from one process share
commits (group commit), so the lock is paid once per batch. Each append is one
round trip: a PL/pgSQL function (``schema.EVENTS``) checks the version and inserts.
See docs/adr/0002-global-order-on-postgresql.md.

Batches go through a few writer connections of the store's own (``writers``, 4 by
default): while one batch commits, the next is already at the server, waiting for the
lock, so the lock passes from commit to commit without a round trip to this process
between them (docs/adr/0004-group-commit.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors

from chronik.adapters.postgres.schema import in_schema
from chronik.errors import (
    ConcurrencyError,
    DuplicateEventError,
    StoreUnavailableError,
    SubjectForgottenError,
)
from chronik.eventstore.base import AppendRequest, BaseEventStore
from chronik.eventstore.codec import EventTypes
from chronik.eventstore.groupcommit import GroupCommitter
from chronik.eventstore.port import AppendResult, ExpectedVersion

if TYPE_CHECKING:
    from chronik.adapters.postgres.database import PostgresDatabase

__all__ = ["PostgresAppends"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: raised by chronik_check_keys: a key that sealed an append's personal data is gone
_FORGOTTEN = "CHF01"


def _refused_alone(exc: BaseException) -> bool:
    """Whether the database refused one statement: it wrote nothing, the connection is fine.

    Not so for a lost connection, after which an autocommit statement may have committed.
    """
    if isinstance(exc, DuplicateEventError | SubjectForgottenError):
        return True
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, psycopg.Error) and not isinstance(cause, psycopg.OperationalError)


_SAVEPOINT = b"SAVEPOINT chronik_append"
_ROLLBACK_TO_SAVEPOINT = b"ROLLBACK TO SAVEPOINT chronik_append"


class _Writer:
    """One writer connection of the store, used by one batch at a time."""

    __slots__ = ("conn", "cursor")

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.cursor: psycopg.AsyncCursor[Any] | None = None


class PostgresAppends(BaseEventStore):
    """The writing half of ``PostgresEventStore``: appends, their hooks, their commits."""

    def __init__(
        self, database: PostgresDatabase, types: EventTypes, *, closes_database: bool = False
    ) -> None:
        super().__init__(
            types,
            signal=database.signal,
            on_close=database.close if closes_database else None,
        )
        self._database = database
        #: the PostgreSQL schema the events are in
        self.schema = database.schema
        self._pool = database.pool
        self._url = database.url
        # Appends go through connections of their own, one per lane of the group
        # committer (a pool check-out per append costs 10-20% of it); a batch takes an
        # idle one, and the committer never runs more batches than there are lanes.
        self._writers = [_Writer() for _ in range(database.writers)]
        self._idle = list(self._writers)
        # gather: callers that one commit answered come back together; yielding once
        # lets them share the next batch instead of splitting into one and the rest.
        self._committer: GroupCommitter[AppendRequest, AppendResult] = GroupCommitter(
            self._commit_batch, gather=True, lanes=database.writers
        )
        self._sql_one = in_schema(
            "SELECT {s}.chronik_append_one(%s, %s, %s::uuid, %s, %s, %s::bytea, %s, %s, "
            "%s::bytea, %s::text[], %s::text[])",
            self.schema,
        )
        self._sql_group = in_schema(
            # Binary parameters: psycopg dumps text arrays through a regex per element.
            "SELECT o_versions, o_first, o_last, o_at FROM {s}.chronik_append_group("
            "%b::text[], %b::int[], %b::int[], %b::int[], %b::uuid[], %b::text[], %b::int[], "
            "%b::bytea[], %b::text[], %b::text[], %b::bytea[], %b::int[], %b::text[], "
            "%b::int[], %b::text[])",
            self.schema,
        )
        # The same statements carrying the NOTIFY that announces their commit.
        notify = f", pg_notify('{database.channel}', '')"
        self._notifying = {
            self._sql_one: self._sql_one + notify,
            self._sql_group: self._sql_group.replace(" FROM ", f"{notify} FROM ", 1),
        }

    async def close(self) -> None:
        """Close the append connection (and the database, if this store owns it)."""
        await self.close_writer()
        await super().close()

    async def close_writer(self) -> None:
        """Close the connections appends go through; the next append opens another."""
        for writer in self._writers:
            if writer.conn is not None:
                conn, writer.conn, writer.cursor = writer.conn, None, None
                await conn.close()

    async def _writer_connection(self, writer: _Writer) -> psycopg.AsyncConnection[Any]:
        conn = writer.conn
        if conn is None or conn.closed:
            conn = writer.conn = await psycopg.AsyncConnection.connect(
                self._database.conninfo,
                autocommit=True,
                connect_timeout=max(1, round(self._database.connect_timeout)),
            )
            writer.cursor = conn.cursor(binary=True)
        return conn

    async def _execute_write(self, writer: _Writer, query: str, params: Sequence[Any]) -> Any:
        """Run one append statement on a writer connection; reconnect after a failure.

        In autocommit, the statement carries the NOTIFY when one is due (its first columns
        are the append's, whichever it runs).
        """
        conn = writer.conn
        alone = False
        try:
            conn = await self._writer_connection(writer)
            alone = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            carried = self._database.carry_notify() if alone else None
            cur = writer.cursor
            assert cur is not None
            await cur.execute(query if carried is None else self._notifying[query], params)
            row = await cur.fetchone()
        except psycopg.OperationalError:
            if conn is not None:
                await conn.close()
            writer.conn = writer.cursor = None
            raise
        finally:
            if alone:
                self._database.statement_ended()
        if alone:
            self._database.committed(carried)
        return row

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"PostgreSQL at {self._url}: {exc}")

    def _refused(self, exc: psycopg.Error) -> SubjectForgottenError | StoreUnavailableError:
        """What an append statement's failure means: a forgotten subject, or an outage."""
        if exc.sqlstate == _FORGOTTEN:
            return SubjectForgottenError(exc.diag.message_detail or "?")
        return self._unavailable(exc)

    # -- writing -----------------------------------------------------------------------

    async def _append(self, request: AppendRequest) -> AppendResult:
        return await self._committer.submit(request)

    async def _commit_batch(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        # The committer runs at most one batch per writer at a time: one is idle.
        writer = self._idle.pop()
        try:
            return await self._commit_on(writer, requests)
        finally:
            self._idle.append(writer)

    async def _commit_on(
        self, writer: _Writer, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        if self._hooks:
            return await self._commit_with_hooks(writer, requests)
        if len(requests) == 1:
            request = requests[0]
            try:
                if len(request.events) == 1:
                    return [await self._append_one(writer, request)]
                return list(await self._append_group(writer, requests))
            except (ConcurrencyError, DuplicateEventError, SubjectForgottenError) as exc:
                return [exc]
        # One stream at most once per call: a second append to it goes in the next call,
        # where it sees the first one's version. Likewise personal data of a subject an
        # earlier append of the call forgets: keys are checked before the call forgets.
        results: dict[int, AppendResult | BaseException] = {}
        todo = list(enumerate(requests))
        while todo:
            call: list[tuple[int, AppendRequest]] = []
            later: list[tuple[int, AppendRequest]] = []
            streams: set[str] = set()
            forgotten: set[str] = set()
            for index, request in todo:
                if request.stream_id in streams or not forgotten.isdisjoint(request.sealed):
                    later.append((index, request))
                else:
                    streams.add(request.stream_id)
                    forgotten.update(request.forgets)
                    call.append((index, request))
            try:
                outcomes: Sequence[AppendResult | BaseException] = await self._append_group(
                    writer, [r for _, r in call]
                )
            except (DuplicateEventError, SubjectForgottenError, StoreUnavailableError) as exc:
                if not _refused_alone(exc):
                    raise
                # Some append reuses a stored event id, seals data of a forgotten subject, or
                # the database refused one (a trigger): the statement wrote nothing; find
                # the culprit one by one.
                if len(call) == 1:
                    outcomes = [exc]
                else:
                    outcomes = [await self._append_alone(writer, r) for _, r in call]
            for (index, _), outcome in zip(call, outcomes, strict=True):
                results[index] = outcome
            todo = later
        return [results[i] for i in range(len(requests))]

    async def _append_alone(
        self, writer: _Writer, request: AppendRequest
    ) -> AppendResult | BaseException:
        """One append in its own statement: its result, or the error that is its own."""
        try:
            return (await self._append_group(writer, [request]))[0]
        except (DuplicateEventError, SubjectForgottenError, StoreUnavailableError) as exc:
            if not _refused_alone(exc):
                raise
            return exc

    async def _commit_with_hooks(
        self, writer: _Writer, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        """Appends and their hooks in one transaction, each append in its own savepoint.

        A lone append needs no savepoint (its failure rolls the whole back): two round
        trips fewer, on the path every outbox append takes.
        """
        results: list[AppendResult | BaseException] = []
        try:
            conn = await self._writer_connection(writer)
            async with conn.transaction():
                if len(requests) == 1:
                    results.append(await self._append_hooked(writer, conn, requests[0]))
                    requests = []
                for request in requests:
                    # One savepoint name, never released: each SAVEPOINT nests, and
                    # ROLLBACK TO undoes only the latest, this append's. Releasing would
                    # cost a round trip per append and free nothing (a released
                    # subtransaction's id stays with the transaction).
                    await conn.execute(_SAVEPOINT)
                    try:
                        result = await self._append_hooked(writer, conn, request)
                    except psycopg.OperationalError:
                        raise  # the connection is gone: the whole batch is
                    except Exception as exc:
                        await conn.execute(_ROLLBACK_TO_SAVEPOINT)
                        if isinstance(exc, psycopg.Error):
                            # The savepoint undid it; the database's error is this append's.
                            error = self._unavailable(exc)
                            error.__cause__ = exc
                            results.append(error)
                        else:
                            results.append(exc)
                    else:
                        results.append(result)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        self._database.committed()
        return results

    async def _append_hooked(
        self, writer: _Writer, conn: psycopg.AsyncConnection[Any], request: AppendRequest
    ) -> AppendResult:
        """One append, then the hooks, which see the events as stored (recorded_at too)."""
        if len(request.events) == 1:
            result, at = await self._append_one_at(writer, request)
        else:
            [outcome], at = await self._append_group_at(writer, [request])
            if isinstance(outcome, BaseException):
                raise outcome
            result = outcome
        await self._run_hooks(conn, request, result, at)
        return result

    async def _append_one(self, writer: _Writer, request: AppendRequest) -> AppendResult:
        return (await self._append_one_at(writer, request))[0]

    async def _append_group(
        self, writer: _Writer, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        return (await self._append_group_at(writer, requests))[0]

    async def _append_one_at(
        self, writer: _Writer, request: AppendRequest
    ) -> tuple[AppendResult, datetime]:
        """Append one event; where it landed and when it was recorded."""
        e = request.events[0]
        params = (
            request.stream_id,
            request.expected,
            e.id,
            e.type,
            e.schema_version,
            e.data,
            e.correlation_id,
            e.causation_id,
            e.headers,
            list(request.sealed),
            list(request.forgets),
        )
        try:
            row = await self._execute_write(writer, self._sql_one, params)
        except psycopg.errors.UniqueViolation as exc:
            raise self._duplicate(request, exc) from None
        except psycopg.Error as exc:
            raise self._refused(exc) from exc
        assert row is not None
        version, position, micros = row[0]
        if position == 0:
            raise ConcurrencyError(
                request.stream_id, str(ExpectedVersion(request.expected)), version
            )
        at = _EPOCH + timedelta(microseconds=micros)
        return AppendResult(request.stream_id, version, position, position), at

    async def _append_group_at(
        self, writer: _Writer, requests: list[AppendRequest]
    ) -> tuple[list[AppendResult | BaseException], datetime]:
        """Append the requests in one statement; their outcomes, and when it recorded them."""
        appends: list[int] = []
        offsets: list[int] = []
        ids, types, schemas, data, corr, caus, headers = [], [], [], [], [], [], []
        sealed_by: list[int] = []
        sealed: list[str] = []
        forgets_by: list[int] = []
        forgets: list[str] = []
        for number, request in enumerate(requests, start=1):
            sealed_by += [number] * len(request.sealed)
            sealed += request.sealed
            forgets_by += [number] * len(request.forgets)
            forgets += request.forgets
            for offset, e in enumerate(request.events, start=1):
                appends.append(number)
                offsets.append(offset)
                ids.append(e.id)
                types.append(e.type)
                schemas.append(e.schema_version)
                data.append(e.data)
                corr.append(e.correlation_id)
                caus.append(e.causation_id)
                headers.append(e.headers)
        params = (
            [r.stream_id for r in requests],
            [r.expected for r in requests],
            appends,
            offsets,
            ids,
            types,
            schemas,
            data,
            corr,
            caus,
            headers,
            sealed_by,
            sealed,
            forgets_by,
            forgets,
        )
        try:
            row = await self._execute_write(writer, self._sql_group, params)
        except psycopg.errors.UniqueViolation as exc:
            if len(requests) == 1:
                raise self._duplicate(requests[0], exc) from None
            raise DuplicateEventError(requests[0].stream_id, "?") from None
        except psycopg.Error as exc:
            raise self._refused(exc) from exc
        assert row is not None
        versions, first, _last, at = row[:4]
        results: list[AppendResult | BaseException] = []
        position = first
        for request, current in zip(requests, versions, strict=True):
            if request.expected >= 0 and request.expected != current:
                results.append(
                    ConcurrencyError(
                        request.stream_id, str(ExpectedVersion(request.expected)), current
                    )
                )
                continue
            n = len(request.events)
            results.append(AppendResult(request.stream_id, current + n, position, position + n - 1))
            position += n
        return results, at

    def _duplicate(
        self, request: AppendRequest, exc: psycopg.errors.UniqueViolation
    ) -> DuplicateEventError | StoreUnavailableError:
        constraint = getattr(exc.diag, "constraint_name", None)
        if constraint != "chronik_events_id":
            return self._unavailable(exc)
        detail = exc.diag.message_detail or ""
        found = re.search(r"\(id\)=\(([0-9a-f-]+)\)", detail)
        event_id = found.group(1) if found else str(request.events[0].id)
        return DuplicateEventError(request.stream_id, event_id)
