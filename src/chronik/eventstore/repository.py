"""Repositories: load an aggregate from its stream (and snapshot), save its new events."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from chronik.domain.aggregate import Aggregate
from chronik.domain.decider import Decider
from chronik.errors import ConcurrencyError, EventStoreError, InvalidInputError, StreamNotFoundError
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.port import AppendResult, ExpectedVersion, Metadata, Snapshot
from chronik.eventstore.snapshots import SnapshotCodec

__all__ = ["Repository", "handle_command"]

A = TypeVar("A", bound=Aggregate)
C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")

log = logging.getLogger(__name__)


def _backoff(attempt: int) -> float:
    """Jittered wait before retry ``attempt``: spreads writers that collided."""
    return random.uniform(0, min(0.001 * 2**attempt, 0.05))


async def _append(
    store: BaseEventStore,
    stream_id: str,
    events: Sequence[object],
    version: int,
    metadata: Metadata | None,
) -> AppendResult:
    """Append expecting the stream at ``version``, timed for the store's instruments."""
    started = time.perf_counter()
    try:
        return await store.append(
            stream_id, events, expected=ExpectedVersion.exactly(version), metadata=metadata
        )
    finally:
        store.instruments.appended(time.perf_counter() - started, len(events))


class Repository(Generic[A]):
    """Loads and saves one aggregate class in an event store.

    ``prefix`` is put before the aggregate id to make the stream id (``"lead-"``,
    say). With ``snapshot_every=N`` a snapshot is stored each time a save crosses a
    multiple of N events, and loads start from the latest fitting snapshot.
    """

    def __init__(
        self,
        store: BaseEventStore,
        aggregate: type[A],
        *,
        prefix: str = "",
        snapshot_every: int | None = None,
    ) -> None:
        if snapshot_every is not None and (
            isinstance(snapshot_every, bool)
            or not isinstance(snapshot_every, int)
            or snapshot_every < 1
        ):
            raise InvalidInputError(f"snapshot_every must be an int >= 1, got {snapshot_every!r}")
        self.store = store
        self.aggregate = aggregate
        self.prefix = prefix
        self.snapshot_every = snapshot_every
        self._snapshots = SnapshotCodec(aggregate) if snapshot_every else None
        self._subjects: weakref.WeakKeyDictionary[A, set[str]] = weakref.WeakKeyDictionary()

    def stream_id(self, aggregate_id: str) -> str:
        return self.prefix + aggregate_id

    async def load(
        self, aggregate_id: str, *, version: int | None = None, at: datetime | None = None
    ) -> A:
        """The aggregate now, or as it was at ``version`` or at the time ``at``.

        Raises StreamNotFoundError when the stream has no events (up to that point).
        """
        stream_id = self.stream_id(aggregate_id)
        if version is not None and at is not None:
            raise InvalidInputError("load as of a version or as of a time, not both")
        if at is not None:
            version = await self.store.version_at(stream_id, at)
            if version == 0:
                raise StreamNotFoundError(stream_id, f"at or before {at.isoformat()}")
        elif version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise InvalidInputError(f"version must be an int >= 1, got {version!r}")

        aggregate: A | None = None
        subjects: set[str] = set()
        if self._snapshots is not None:
            snapshot = await self.store.load_snapshot(stream_id, max_version=version)
            if snapshot is not None and snapshot.schema == self._snapshots.schema:
                aggregate = self._snapshots.restore(aggregate_id, snapshot.version, snapshot.state)
                if aggregate is not None:
                    subjects.update(snapshot.subjects)
        start = aggregate.version + 1 if aggregate is not None else 1
        store = self.store
        events, last = await store.load_events(stream_id, start, version)
        if aggregate is None:
            if not events:
                raise StreamNotFoundError(stream_id)
            aggregate = self.aggregate.blank(aggregate_id)
        if events:
            types = store.types
            if types.personal_classes:
                for e in events:
                    subject = types.subject_of(e, stream_id)
                    if subject is not None:
                        subjects.add(subject)
            aggregate.replay(events, last)
        if version is not None and aggregate.version < version:
            raise StreamNotFoundError(
                stream_id, f"at version {version}: it has {aggregate.version} events"
            )
        if subjects:
            self._subjects[aggregate] = subjects
        return aggregate

    async def save(self, aggregate: A, *, metadata: Metadata | None = None) -> AppendResult | None:
        """Append the aggregate's pending events, expecting the version it was loaded at.

        Returns None when there was nothing to save. A ConcurrencyError means another
        writer got there first: load again and retry (``execute`` does this for you).
        """
        pending = aggregate.pending_events
        if not pending:
            return None
        stream_id = self.stream_id(aggregate.id)
        base = aggregate.version - len(pending)
        result = await _append(self.store, stream_id, pending, base, metadata)
        aggregate.mark_saved()
        types = self.store.types
        for event in pending:
            subject = types.subject_of(event, stream_id)
            if subject is not None:
                self._subjects.setdefault(aggregate, set()).add(subject)
        every = self.snapshot_every
        if every and base // every < result.version // every:
            await self._snapshot(stream_id, aggregate)
        return result

    async def _snapshot(self, stream_id: str, aggregate: A) -> None:
        assert self._snapshots is not None
        state = self._snapshots.encode(aggregate)
        if state is None:
            return
        subjects = tuple(sorted(self._subjects.get(aggregate, ())))
        snapshot = Snapshot(stream_id, aggregate.version, self._snapshots.schema, state, subjects)
        try:
            await self.store.save_snapshot(snapshot)
        except EventStoreError as exc:
            # The events are stored; a missing snapshot only makes the next load longer.
            log.warning(
                "snapshot not stored",
                extra={"stream": stream_id, "version": aggregate.version, "error": str(exc)},
            )

    async def execute(
        self,
        aggregate_id: str,
        command: Callable[[A], object],
        *,
        retries: int = 3,
        metadata: Metadata | None = None,
    ) -> A:
        """Load, run ``command`` on the aggregate, save; on a conflict, do it all again.

        Gives up after ``retries`` retries by raising the last ConcurrencyError. The
        command must be safe to run again on fresh state (domain methods are).
        """
        aggregate, _ = await self.handle(aggregate_id, command, retries=retries, metadata=metadata)
        return aggregate

    async def handle(
        self,
        aggregate_id: str,
        command: Callable[[A], object],
        *,
        retries: int = 3,
        metadata: Metadata | None = None,
        create: bool = False,
    ) -> tuple[A, AppendResult | None]:
        """Like ``execute``, also returning where the new events landed (None: no change).

        With ``create``, a missing stream is not an error: the command runs on the
        aggregate before any event (for aggregates that legitimately start empty).
        """
        attempt = 0
        while True:
            try:
                aggregate = await self.load(aggregate_id)
            except StreamNotFoundError:
                if not create:
                    raise
                aggregate = self.aggregate.blank(aggregate_id)
            command(aggregate)
            try:
                result = await self.save(aggregate, metadata=metadata)
            except ConcurrencyError:
                if attempt >= retries:
                    raise
                attempt += 1
                self.store.instruments.concurrency_retry()
                await asyncio.sleep(_backoff(attempt))
                continue
            return aggregate, result


async def handle_command(
    store: BaseEventStore,
    decider: Decider[C, S, E],
    stream_id: str,
    command: C,
    *,
    retries: int = 3,
    metadata: Metadata | None = None,
) -> tuple[S, Sequence[E], AppendResult | None]:
    """Run a command through a Decider on a stream: fold, decide, append; retry on conflict.

    Returns the new state, the new events and where they landed (None if none).
    """
    attempt = 0
    while True:
        records = await store.read_stream(stream_id)
        state = decider.fold(r.event for r in records)  # type: ignore[misc]
        events = list(decider.decide(command, state))
        if not events:
            return state, events, None
        try:
            result = await _append(store, stream_id, events, len(records), metadata)
        except ConcurrencyError:
            if attempt >= retries:
                raise
            attempt += 1
            store.instruments.concurrency_retry()
            await asyncio.sleep(_backoff(attempt))
            continue
        return decider.fold(events, state), events, result
