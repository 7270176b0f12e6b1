"""The SQLite event store: appends, reads, keys and snapshots in the database's file.

Concurrent appends share a commit (group commit), each in its own savepoint, on the
database's writer connection (docs/adr/0003-sqlite-on-the-event-loop.md). After a
forget commits, the write-ahead log, which still holds earlier copies of the pages, is
checkpointed into the database and truncated.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from chronik.adapters.sqlite.schema import CATEGORY
from chronik.errors import (
    ConcurrencyError,
    DuplicateEventError,
    StoreUnavailableError,
    SubjectForgottenError,
)
from chronik.eventstore.base import AppendRequest, BaseEventStore, Row
from chronik.eventstore.codec import EventTypes, new_subject_key
from chronik.eventstore.groupcommit import GroupCommitter
from chronik.eventstore.ids import uuid_from_bytes, uuids_from_bytes
from chronik.eventstore.port import AppendResult, ExpectedVersion, Snapshot

if TYPE_CHECKING:
    from chronik.adapters.sqlite.database import SQLiteDatabase

__all__ = ["NOT_NOW", "NotNow", "SQLiteEventStore"]


def filtered_sql(by: str, names: int, categories: int = 0) -> str:
    """A filtered read of ``names`` values of ``by`` (``type`` or ``CATEGORY``), and of
    ``categories`` categories too when not 0.

    One range of an index per name, each in position order and limited, merged: the
    events of other types or categories are never visited. Parameters, per name: the
    name, after, upto, the categories, the limit; then the limit.
    """
    check = f" AND {CATEGORY} IN ({','.join('?' * categories)})" if categories else ""
    if names > _MAX_UNION:  # beyond SQLite's compound select: one ranged scan
        marks = ",".join("?" * names)
        return (
            f"SELECT {_COLUMNS} FROM chronik_events WHERE position > ? AND position <= ? "
            f"AND {by} IN ({marks}){check} ORDER BY position LIMIT ?"
        )
    part = (
        f"SELECT * FROM (SELECT {_COLUMNS} FROM chronik_events WHERE {by} = ? "
        f"AND position > ? AND position <= ?{check} ORDER BY position LIMIT ?)"
    )
    return " UNION ALL ".join([part] * names) + " ORDER BY 1 LIMIT ?"


class NotNow(enum.Enum):
    """What ``SQLiteDatabase.write_now`` returns when it would have had to wait."""

    NOT_NOW = "not now"


NOT_NOW = NotNow.NOT_NOW


#: names a filtered read merges in one statement (SQLite's compound select allows 500)
_MAX_UNION = 200

_COLUMNS = (
    "position, stream_id, version, id, type, schema_version, recorded_at, data, "
    "correlation_id, causation_id, headers"
)
_INSERT = (
    "INSERT INTO chronik_events (stream_id, version, id, type, schema_version, "
    "recorded_at, data, correlation_id, causation_id, headers) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_CHECKED = (
    "INSERT INTO chronik_events (stream_id, version, id, type, schema_version, "
    "recorded_at, data, correlation_id, causation_id, headers) "
    "SELECT ?, v.current + 1, ?, ?, ?, ?, ?, ?, ?, ? FROM (SELECT coalesce(("
    "SELECT version FROM chronik_events WHERE stream_id = ? ORDER BY version DESC LIMIT 1"
    "), 0) AS current) AS v "
    "WHERE ? < 0 OR v.current = ? "
    "RETURNING position, version"
)
# max(version) with a WHERE walks the stream's whole index range; this is one probe.
_VERSION = (
    "SELECT coalesce((SELECT version FROM chronik_events WHERE stream_id = ? "
    "ORDER BY version DESC LIMIT 1), 0)"
)
_PAYLOADS = (
    "SELECT version, type, schema_version, data FROM chronik_events "
    "WHERE stream_id = ? AND version >= ? ORDER BY version"
)
_PAYLOADS_TO = (
    "SELECT version, type, schema_version, data FROM chronik_events "
    "WHERE stream_id = ? AND version >= ? AND version <= ? ORDER BY version"
)
_subjects_encode = msgspec.json.Encoder().encode
_subjects_decode = msgspec.json.Decoder(tuple[str, ...]).decode


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


class _Culprit(Exception):
    """An append failed in a way that voids its transaction; ``error`` is its answer."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


class SQLiteEventStore(BaseEventStore):
    """An event store in one SQLite file, handed out by its ``SQLiteDatabase``."""

    _load_id = staticmethod(uuid_from_bytes)
    _load_ids = staticmethod(uuids_from_bytes)
    _load_time = datetime.fromisoformat

    def __init__(
        self, database: SQLiteDatabase, types: EventTypes, *, closes_database: bool = False
    ) -> None:
        super().__init__(
            types,
            signal=database.signal,
            on_close=database.close if closes_database else None,
        )
        self._database = database
        #: the file the events are in
        self.path = database.path
        self._transaction = database.transaction
        self._query = database.query
        self._committer: GroupCommitter[AppendRequest, AppendResult] = GroupCommitter(
            self._commit_batch, gather=True
        )

    # -- writing -----------------------------------------------------------------------

    async def _append(self, request: AppendRequest) -> AppendResult:
        return await self._committer.submit(request)

    async def _commit_batch(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        results = await self._commit_all(requests)
        forgot = any(
            r.forgets and not isinstance(res, BaseException)
            for r, res in zip(requests, results, strict=True)
        )
        if forgot:
            await self._database.checkpoint_wal()
        return results

    async def _commit_all(
        self, requests: list[AppendRequest]
    ) -> list[AppendResult | BaseException]:
        """Commit concurrent appends together; an append that fails fails alone.

        The first attempt takes a savepoint only where a failure needs one (an append of
        several events, or with hooks): a version conflict or a reused id undoes nothing
        else. An append that fails otherwise without a savepoint (a trigger, a full
        disk) leaves the attempt in doubt: it is rolled back and the batch done again,
        each append in a savepoint. A failure that ends the whole transaction (a trigger's
        RAISE(ROLLBACK)) takes every earlier append of the attempt with it: the failing
        append is answered and the others are tried again without it.
        """
        if len(requests) == 1:
            # Alone in its transaction: whatever fails, fails this append only.
            request = requests[0]
            if not self._hooks:
                # Nothing to await inside: at once, when nobody holds the write lock.
                at_once = self._database.write_now(
                    lambda conn: _append_request(conn, request, _now())
                )
                if not isinstance(at_once, NotNow):
                    return [at_once]
            async with self._transaction() as conn:
                return [await self._apply(conn, request, _now())]
        outcomes: dict[int, AppendResult | BaseException] = {}
        pending = list(range(len(requests)))
        careful = False
        while pending:
            try:
                async with self._transaction() as conn:
                    now = _now()
                    done: dict[int, AppendResult | BaseException] = {}
                    for i in pending:
                        done[i] = await self._attempt(conn, i, requests[i], now, careful)
            except _Culprit as culprit:
                if careful:
                    outcomes[culprit.index] = culprit.error
                    pending.remove(culprit.index)
                careful = True
                continue
            outcomes.update(done)
            break
        return [outcomes[i] for i in range(len(requests))]

    async def _attempt(
        self, conn: sqlite3.Connection, index: int, request: AppendRequest, now: str, careful: bool
    ) -> AppendResult | BaseException:
        """One append of a shared commit: its result, its own failure, or _Culprit."""
        guarded = careful or bool(self._hooks) or len(request.events) > 1 or bool(request.forgets)
        if guarded:
            conn.execute("SAVEPOINT chronik_append")
        try:
            result = await self._apply(conn, request, now)
        except Exception as exc:
            error = self._translate(exc)
            if not conn.in_transaction:
                raise _Culprit(index, error) from exc
            if guarded:
                conn.execute("ROLLBACK TO chronik_append")
                conn.execute("RELEASE chronik_append")
                return error
            if isinstance(exc, ConcurrencyError | DuplicateEventError | SubjectForgottenError):
                return error  # refused before it wrote, or one statement that wrote nothing
            raise _Culprit(index, error) from exc
        if guarded:
            conn.execute("RELEASE chronik_append")
        return result

    async def _apply(
        self, conn: sqlite3.Connection, request: AppendRequest, now: str
    ) -> AppendResult:
        """Write one append and run the hooks on it."""
        result = _append_request(conn, request, now)
        if self._hooks:
            await self._run_hooks(conn, request, result, datetime.fromisoformat(now))
        return result

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            error = StoreUnavailableError(f"SQLite {self.path}: {exc}")
            error.__cause__ = exc
            return error
        return exc

    async def _stream_rows(
        self, stream_id: str, start: int, stop: int | None, limit: int | None, backwards: bool
    ) -> list[Row]:
        lim = -1 if limit is None else limit
        if backwards:
            if start == 0:
                sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? ORDER BY version DESC LIMIT ?"  # noqa: E501
                return self._query(sql, (stream_id, lim))
            sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? AND version <= ? ORDER BY version DESC LIMIT ?"  # noqa: E501
            return self._query(sql, (stream_id, start, lim))
        if stop is None:
            sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT ?"  # noqa: E501
            return self._query(sql, (stream_id, start, lim))
        sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE stream_id = ? AND version >= ? AND version <= ? ORDER BY version LIMIT ?"  # noqa: E501
        return self._query(sql, (stream_id, start, stop, lim))

    async def _payload_rows(
        self, stream_id: str, start: int, stop: int | None
    ) -> list[tuple[int, str, int, bytes]]:
        if stop is None:
            return self._query(_PAYLOADS, (stream_id, start))
        return self._query(_PAYLOADS_TO, (stream_id, start, stop))

    async def _all_rows(
        self,
        after: int,
        limit: int,
        types: list[str] | None = None,
        upto: int | None = None,
        categories: list[str] | None = None,
    ) -> list[Row]:
        if types is None and categories is None:
            sql = f"SELECT {_COLUMNS} FROM chronik_events WHERE position > ? ORDER BY position LIMIT ?"  # noqa: E501
            return self._query(sql, (after, limit))
        top = upto if upto is not None else 1 << 62
        by, names, other = (
            ("type", types, categories) if types is not None else (CATEGORY, categories, None)
        )
        assert names is not None
        sql = filtered_sql(by, len(names), len(other) if other is not None else 0)
        extra = tuple(other or ())
        if len(names) > _MAX_UNION:
            return self._query(sql, (after, top, *names, *extra, limit))
        params: list[object] = []
        for name in names:
            params += (name, after, top, *extra, limit)
        params.append(limit)
        return self._query(sql, tuple(params))

    async def _stream_list(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        # A range on the (stream_id, version) index: no LIKE, so '%' and '_' are data.
        return [
            (s, v)
            for s, v in self._query(
                "SELECT stream_id, max(version) FROM chronik_events WHERE stream_id >= ? "
                "AND substr(stream_id, 1, ?) = ? GROUP BY stream_id ORDER BY stream_id LIMIT ?",
                (prefix, len(prefix), prefix, limit),
            )
        ]

    async def _stream_page(
        self, prefix: str, after: str, event_type: str | None, limit: int
    ) -> list[tuple[str, int]]:
        # One lower bound, so that the index range starts where the page does.
        op, bound = (">", after) if after >= prefix else (">=", prefix)
        if event_type is None:
            # The (stream_id, version) index, from past ``after``: a range, not a scan.
            sql = (
                "SELECT stream_id, max(version) FROM chronik_events WHERE stream_id {op} ? "
                "AND substr(stream_id, 1, ?) = ? GROUP BY stream_id "
                "ORDER BY stream_id LIMIT ?"
            )
            return [
                (s, v)
                for s, v in self._query(
                    sql.replace("{op}", op), (bound, len(prefix), prefix, limit)
                )
            ]
        # The (type, stream_id) index gives the page's ids; each one's version is a
        # lookup on (stream_id, version).
        sql = (
            "SELECT p.stream_id, (SELECT max(v.version) FROM chronik_events v "
            "WHERE v.stream_id = p.stream_id) FROM (SELECT DISTINCT stream_id "
            "FROM chronik_events WHERE type = ? AND stream_id {op} ? "
            "AND substr(stream_id, 1, ?) = ? ORDER BY stream_id LIMIT ?) p ORDER BY p.stream_id"
        )
        rows = self._query(sql.replace("{op}", op), (event_type, bound, len(prefix), prefix, limit))
        return [(s, v) for s, v in rows]

    async def _correlation_rows(self, correlation_id: str, limit: int) -> list[Row]:
        return self._query(
            f"SELECT {_COLUMNS} FROM chronik_events WHERE correlation_id = ? "
            "ORDER BY position LIMIT ?",
            (correlation_id, limit),
        )

    async def _event_row(self, event_id: UUID) -> Row | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM chronik_events WHERE id = ?", (event_id.bytes,))
        return rows[0] if rows else None

    async def _stream_version(self, stream_id: str) -> int:
        return int(self._query(_VERSION, (stream_id,))[0][0])

    async def _version_at(self, stream_id: str, when: datetime) -> int:
        rows = self._query(
            "SELECT coalesce(max(version), 0) FROM chronik_events "
            "WHERE stream_id = ? AND recorded_at <= ?",
            (stream_id, _iso(when)),
        )
        return int(rows[0][0])

    async def head_position(self) -> int:
        return int(self._query("SELECT coalesce(max(position), 0) FROM chronik_events", ())[0][0])

    # -- keys and snapshots ------------------------------------------------------------

    async def _keys(self, subjects: set[str], *, create: bool) -> dict[str, bytes]:
        wanted = sorted(subjects)
        marks = ",".join("?" * len(wanted))
        # A row without a key is a forgotten subject: it is never given one again.
        sql = f"SELECT subject, key FROM chronik_subject_keys WHERE subject IN ({marks})"
        rows = self._query(sql, wanted)
        missing = [s for s in wanted if s not in {subject for subject, _ in rows}]
        if create and missing:

            def insert(conn: sqlite3.Connection) -> None:
                now = _now()
                conn.executemany(
                    "INSERT OR IGNORE INTO chronik_subject_keys (subject, key, created_at) "
                    "VALUES (?, ?, ?)",
                    [(s, new_subject_key(), now) for s in missing],
                )

            await self._database.write(insert)
            rows = self._query(sql, wanted)
        return {s: bytes(k) for s, k in rows if k is not None}

    async def _forget(self, subject: str) -> None:
        await self._database.write(lambda conn: _forget_in(conn, (subject,), _now()))
        await self._database.checkpoint_wal()

    async def _forgotten_among(self, subjects: set[str]) -> set[str]:
        found: set[str] = set()
        wanted = sorted(subjects)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(
                s
                for (s,) in self._query(
                    "SELECT subject FROM chronik_subject_keys WHERE forgotten_at IS NOT NULL "
                    f"AND subject IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return found

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        subjects = _subjects_encode(snapshot.subjects)
        row = (
            snapshot.stream_id,
            snapshot.version,
            snapshot.schema,
            snapshot.state,
            subjects,
            _now(),
            subjects,
        )

        def insert(conn: sqlite3.Connection) -> None:
            # Not for a forgotten subject: it would bring their data back.
            conn.execute(
                "INSERT OR REPLACE INTO chronik_snapshots "
                "(stream_id, version, schema, state, subjects, recorded_at) "
                "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM chronik_subject_keys "
                "WHERE forgotten_at IS NOT NULL AND subject IN (SELECT value FROM json_each(?)))",
                row,
            )

        await self._database.write(insert)

    async def load_snapshot(
        self, stream_id: str, *, max_version: int | None = None
    ) -> Snapshot | None:
        top = (1 << 62) if max_version is None else max_version
        rows = self._query(
            "SELECT version, schema, state, subjects FROM chronik_snapshots "
            "WHERE stream_id = ? AND version <= ? ORDER BY version DESC LIMIT 1",
            (stream_id, top),
        )
        if not rows:
            return None
        version, schema, state, subjects = rows[0]
        return Snapshot(stream_id, version, schema, bytes(state), _subjects_decode(subjects))


def _append_request(conn: sqlite3.Connection, request: AppendRequest, now: str) -> AppendResult:
    """One append with what it does to data subjects, in the caller's transaction.

    The keys that sealed its personal fields must still be there (no forget committed
    since they were read); the subjects its events forget are forgotten with it.
    """
    if request.sealed:
        marks = ",".join("?" * len(request.sealed))
        kept = {
            subject
            for (subject,) in conn.execute(
                f"SELECT subject FROM chronik_subject_keys WHERE subject IN ({marks}) "
                "AND key IS NOT NULL",
                request.sealed,
            )
        }
        for subject in request.sealed:
            if subject not in kept:
                raise SubjectForgottenError(subject)
    result = _append_one(conn, request, now)
    if request.forgets:
        _forget_in(conn, request.forgets, now)
    return result


def _forget_in(conn: sqlite3.Connection, subjects: Sequence[str], now: str) -> None:
    """Delete the subjects' keys and snapshots, leaving their tombstones."""
    for subject in subjects:
        conn.execute(
            "INSERT INTO chronik_subject_keys (subject, key, created_at, forgotten_at) "
            "VALUES (?, NULL, ?, ?) ON CONFLICT (subject) DO UPDATE SET key = NULL, "
            "forgotten_at = coalesce(forgotten_at, excluded.forgotten_at)",
            (subject, now, now),
        )
        conn.execute(
            "DELETE FROM chronik_snapshots WHERE EXISTS "
            "(SELECT 1 FROM json_each(chronik_snapshots.subjects) WHERE value = ?)",
            (subject,),
        )


def _append_one(conn: sqlite3.Connection, request: AppendRequest, now: str) -> AppendResult:
    stream_id = request.stream_id
    expected = request.expected
    events = request.events
    current = -1
    try:
        if len(events) == 1:
            # Check and insert in one statement: the common case costs what a raw insert does.
            e = events[0]
            row = conn.execute(
                _INSERT_CHECKED,
                (
                    stream_id,
                    e.id.bytes,
                    e.type,
                    e.schema_version,
                    now,
                    e.data,
                    e.correlation_id,
                    e.causation_id,
                    e.headers,
                    stream_id,
                    expected,
                    expected,
                ),
            ).fetchone()
            if row is None:
                raise _conflict(conn, stream_id, expected)
            return AppendResult(stream_id, row[1], row[0], row[0])
        (current,) = conn.execute(_VERSION, (stream_id,)).fetchone()
        if expected >= 0 and expected != current:
            raise ConcurrencyError(stream_id, str(ExpectedVersion(expected)), current)
        conn.executemany(
            _INSERT,
            [
                (
                    stream_id,
                    current + i,
                    e.id.bytes,
                    e.type,
                    e.schema_version,
                    now,
                    e.data,
                    e.correlation_id,
                    e.causation_id,
                    e.headers,
                )
                for i, e in enumerate(events, start=1)
            ],
        )
    except sqlite3.IntegrityError as exc:
        if "chronik_events.id" not in str(exc):
            raise
        raise _duplicate(conn, stream_id, current, [e.id.bytes for e in events]) from None
    (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
    n = len(events)
    return AppendResult(stream_id, current + n, last - n + 1, last)


def _conflict(conn: sqlite3.Connection, stream_id: str, expected: int) -> ConcurrencyError:
    (current,) = conn.execute(_VERSION, (stream_id,)).fetchone()
    return ConcurrencyError(stream_id, str(ExpectedVersion(expected)), current)


def _duplicate(
    conn: sqlite3.Connection, stream_id: str, current: int, ids: list[bytes]
) -> DuplicateEventError:
    """Name the reused id. Rows this append wrote before failing (above ``current``) are ours."""
    marks = ",".join("?" * len(ids))
    taken = conn.execute(
        f"SELECT id FROM chronik_events WHERE id IN ({marks}) "
        "AND NOT (stream_id = ? AND version > ? AND ? >= 0)",
        [*ids, stream_id, current, current],
    ).fetchone()
    if taken:
        return DuplicateEventError(stream_id, str(uuid_from_bytes(taken[0])))
    seen: set[bytes] = set()
    for event_id in ids:
        if event_id in seen:
            return DuplicateEventError(stream_id, str(uuid_from_bytes(event_id)))
        seen.add(event_id)
    return DuplicateEventError(stream_id, str(uuid_from_bytes(ids[0])))
