"""The in-memory event store: for tests and throwaway runs. Nothing survives the process."""

from __future__ import annotations

import bisect
import heapq
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from chronik.errors import ConcurrencyError, DuplicateEventError, SubjectForgottenError
from chronik.eventstore.base import AppendRequest, BaseEventStore, Row
from chronik.eventstore.codec import EventTypes, new_subject_key
from chronik.eventstore.port import AppendResult, ExpectedVersion, Snapshot, category_of

if TYPE_CHECKING:
    from chronik.adapters.memory.database import MemoryDatabase

__all__ = ["EventState", "MemoryEventStore"]


class EventState:
    """The events of a memory database, with their keys and snapshots."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.streams: dict[str, list[Row]] = {}
        self.ids: set[object] = set()
        self.keys_by_subject: dict[str, bytes] = {}
        self.forgotten: set[str] = set()  # the tombstones
        self.snapshots: dict[str, list[Snapshot]] = {}
        #: the filtered reads' indexes: the positions of each type and each category
        self.by_type: dict[str, list[int]] = {}
        self.by_category: dict[str, list[int]] = {}


class MemoryEventStore(BaseEventStore):
    """Keeps rows in lists. Appends run without awaiting, so each is atomic on its loop.

    The lists are the database's: every store of one memory database sees the same events.
    """

    def __init__(
        self, database: MemoryDatabase, types: EventTypes, *, closes_database: bool = False
    ) -> None:
        super().__init__(
            types,
            signal=database.signal,
            on_close=database.close if closes_database else None,
        )
        state = database.event_state
        self._rows = state.rows
        self._streams = state.streams
        self._ids = state.ids
        self._keys_by_subject = state.keys_by_subject
        self._forgotten = state.forgotten
        self._snapshots = state.snapshots
        self._by_type = state.by_type
        self._by_category = state.by_category

    async def _append(self, request: AppendRequest) -> AppendResult:
        stream_id = request.stream_id
        stream = self._streams.get(stream_id, [])
        current = len(stream)
        if request.expected >= 0 and request.expected != current:
            raise ConcurrencyError(stream_id, str(ExpectedVersion(request.expected)), current)
        seen: set[object] = set()
        for e in request.events:
            if e.id in self._ids or e.id in seen:
                raise DuplicateEventError(stream_id, str(e.id))
            seen.add(e.id)
        now = datetime.now(UTC)
        first = len(self._rows) + 1
        rows: list[Row] = [
            (
                first + i,
                stream_id,
                current + 1 + i,
                e.id,
                e.type,
                e.schema_version,
                now,
                e.data,
                e.correlation_id,
                e.causation_id,
                e.headers,
            )
            for i, e in enumerate(request.events)
        ]
        result = AppendResult(stream_id, current + len(rows), first, first + len(rows) - 1)
        # Hooks run before anything is applied: one that raises leaves nothing behind.
        after = await self._run_hooks(None, request, result, now) if self._hooks else []
        for subject in request.sealed:
            if subject not in self._keys_by_subject:  # forgotten since the append took it
                raise SubjectForgottenError(subject)
        self._rows.extend(rows)
        self._streams.setdefault(stream_id, stream).extend(rows)
        self._ids.update(seen)
        by_type = self._by_type
        for row in rows:
            by_type.setdefault(row[4], []).append(row[0])
        self._by_category.setdefault(category_of(stream_id), []).extend(row[0] for row in rows)
        for subject in request.forgets:
            self._forget_now(subject)
        for done in after:
            done()
        return result

    async def _stream_rows(
        self, stream_id: str, start: int, stop: int | None, limit: int | None, backwards: bool
    ) -> list[Row]:
        stream = self._streams.get(stream_id, [])
        if backwards:
            top = len(stream) if start == 0 else min(start, len(stream))
            rows = stream[:top][::-1]
        else:
            end = len(stream) if stop is None else min(stop, len(stream))
            rows = stream[start - 1 : end]
        return rows if limit is None else rows[:limit]

    async def _all_rows(
        self,
        after: int,
        limit: int,
        types: list[str] | None = None,
        upto: int | None = None,
        categories: list[str] | None = None,
    ) -> list[Row]:
        if types is None and categories is None:
            return self._rows[after : after + limit]
        top = upto if upto is not None else len(self._rows)
        # Through the index of the narrower filter given, checking the other per row.
        index, names = (
            (self._by_type, types) if types is not None else (self._by_category, categories)
        )
        assert names is not None
        wanted = set(categories) if types is not None and categories is not None else None
        lists = []
        for name in names:
            positions = index.get(name, [])
            lo = bisect.bisect_right(positions, after)
            hi = bisect.bisect_right(positions, top, lo)
            lists.append(
                positions[lo:hi] if wanted is not None else positions[lo : min(hi, lo + limit)]
            )
        out: list[Row] = []
        for position in heapq.merge(*lists):
            row = self._rows[position - 1]
            if wanted is None or category_of(row[1]) in wanted:
                out.append(row)
                if len(out) == limit:
                    break
        return out

    async def _stream_list(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        ids = sorted(s for s in self._streams if s.startswith(prefix))[:limit]
        return [(s, len(self._streams[s])) for s in ids]

    async def _stream_page(
        self, prefix: str, after: str, event_type: str | None, limit: int
    ) -> list[tuple[str, int]]:
        ids = sorted(
            s
            for s, rows in self._streams.items()
            if s.startswith(prefix)
            and s > after
            and (event_type is None or any(row[4] == event_type for row in rows))
        )[:limit]
        return [(s, len(self._streams[s])) for s in ids]

    async def _correlation_rows(self, correlation_id: str, limit: int) -> list[Row]:
        return [row for row in self._rows if row[8] == correlation_id][:limit]

    async def _event_row(self, event_id: UUID) -> Row | None:
        return next((row for row in self._rows if row[3] == event_id), None)

    async def _stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, ()))

    async def _version_at(self, stream_id: str, when: datetime) -> int:
        stream = self._streams.get(stream_id, [])
        return bisect.bisect_right([row[6] for row in stream], when)

    async def head_position(self) -> int:
        return len(self._rows)

    async def _keys(self, subjects: set[str], *, create: bool) -> dict[str, bytes]:
        if create:
            for subject in subjects - self._forgotten:
                self._keys_by_subject.setdefault(subject, new_subject_key())
        return {s: self._keys_by_subject[s] for s in subjects if s in self._keys_by_subject}

    async def _forget(self, subject: str) -> None:
        self._forget_now(subject)

    def _forget_now(self, subject: str) -> None:
        self._keys_by_subject.pop(subject, None)
        self._forgotten.add(subject)
        for stream_id, snapshots in list(self._snapshots.items()):
            kept = [s for s in snapshots if subject not in s.subjects]
            self._snapshots[stream_id] = kept

    async def _forgotten_among(self, subjects: set[str]) -> set[str]:
        return subjects & self._forgotten

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        if not self._forgotten.isdisjoint(snapshot.subjects):
            return  # it would bring a forgotten subject's data back
        snapshots = self._snapshots.setdefault(snapshot.stream_id, [])
        snapshots[:] = [s for s in snapshots if s.version != snapshot.version]
        snapshots.append(snapshot)
        snapshots.sort(key=lambda s: s.version)

    async def load_snapshot(
        self, stream_id: str, *, max_version: int | None = None
    ) -> Snapshot | None:
        for snapshot in reversed(self._snapshots.get(stream_id, [])):
            if max_version is None or snapshot.version <= max_version:
                return snapshot
        return None
