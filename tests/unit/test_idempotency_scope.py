"""IdempotencyScope: the n-th event a scope stores gets the n-th id, whatever failed before.

A retried request (or a process command run again) finds its first effect by those ids:
an append that wrote nothing (a version conflict, a refused argument) must not use any up.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass

import pytest

from chronik.adapters.memory.database import MemoryDatabase
from chronik.adapters.memory.eventstore import MemoryEventStore
from chronik.domain import Aggregate, applies, event
from chronik.errors import ConcurrencyError, DuplicateEventError, InvalidInputError
from chronik.eventstore import EventTypes, ExpectedVersion, Repository
from chronik.eventstore.context import idempotency_scope
from chronik.eventstore.port import RecordedEvent


@event("unit.counter_bumped")
@dataclass(frozen=True, slots=True)
class Bumped:
    by: int


@dataclass(frozen=True, slots=True)
class Unregistered:
    pass


TYPES = EventTypes([Bumped])


class Counter(Aggregate):
    value: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.value = 0

    def bump(self, by: int) -> None:
        self.record(Bumped(by))

    @applies(Bumped)
    def _bumped(self, e: Bumped) -> None:
        self.value += e.by


class RivalOutsideTheScope(MemoryEventStore):
    """After each of the first ``times`` stream reads, another writer appends to the stream.

    The rival runs in a context of its own, as another request would: its append takes
    no id from the reader's scope.
    """

    def __init__(self, times: int) -> None:
        super().__init__(MemoryDatabase(), TYPES)
        self.times = times

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        *,
        to_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        records = await super().read_stream(
            stream_id, from_version, to_version=to_version, limit=limit
        )
        await self._rival(stream_id)
        return records

    async def load_events(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> tuple[list[object], int]:
        loaded = await super().load_events(stream_id, from_version, to_version)
        await self._rival(stream_id)  # what a repository reads
        return loaded

    async def _rival(self, stream_id: str) -> None:
        if self.times > 0:
            self.times -= 1
            rival = self.append(stream_id, [Bumped(100)])
            await asyncio.create_task(rival, context=contextvars.Context())


async def ids_of(store: MemoryEventStore, stream_id: str, by: int) -> list[str]:
    return [str(r.id) for r in await store.read_stream(stream_id) if r.event == Bumped(by)]


async def test_an_append_refused_for_a_conflict_takes_no_id_from_the_scope() -> None:
    store = MemoryDatabase().event_store(TYPES)
    with idempotency_scope("key-1", "fp") as scope:
        with pytest.raises(ConcurrencyError):
            await store.append("counter-a", [Bumped(1)], expected=ExpectedVersion.exactly(3))
        await store.append("counter-a", [Bumped(1), Bumped(1)], expected=ExpectedVersion.NO_STREAM)
    assert await ids_of(store, "counter-a", 1) == [str(scope.event_id(0)), str(scope.event_id(1))]


async def test_an_append_refused_as_invalid_takes_no_id_from_the_scope() -> None:
    store = MemoryDatabase().event_store(TYPES)
    with idempotency_scope("key-2", "fp") as scope:
        with pytest.raises(InvalidInputError):
            await store.append("counter-a", [Bumped(1), Unregistered()])
        await store.append("counter-a", [Bumped(1)])
    assert await ids_of(store, "counter-a", 1) == [str(scope.event_id(0))]


async def test_a_command_retried_after_conflicts_stores_its_event_under_the_first_id() -> None:
    store = RivalOutsideTheScope(times=3)
    repo = Repository(store, Counter, prefix="counter-")
    with idempotency_scope("key-3", "fp") as scope:
        _, result = await repo.handle("a", lambda c: c.bump(1), create=True, retries=5)
    assert store.times == 0  # the rival wrote after each of the first 3 reads
    assert result is not None
    assert await ids_of(store, "counter-a", 1) == [str(scope.event_id(0))]
    assert scope.count == 1


async def test_the_same_command_run_again_after_a_conflict_is_refused_as_a_duplicate() -> None:
    store = RivalOutsideTheScope(times=2)
    repo = Repository(store, Counter, prefix="counter-")
    with idempotency_scope("key-4", "fp"):
        await repo.handle("a", lambda c: c.bump(1), create=True, retries=5)
    with idempotency_scope("key-4", "fp"), pytest.raises(DuplicateEventError):
        await repo.handle("a", lambda c: c.bump(1), create=True, retries=5)
    assert len(await ids_of(store, "counter-a", 1)) == 1


async def test_a_resumed_handler_that_had_met_a_conflict_skips_what_it_stored() -> None:
    store = RivalOutsideTheScope(times=2)
    repo = Repository(store, Counter, prefix="counter-")
    with idempotency_scope("command-1", "bump", resume=True):
        first = await repo.handle("a", lambda c: c.bump(1), create=True, retries=5)
    with idempotency_scope("command-1", "bump", resume=True) as again:
        second = await repo.handle("a", lambda c: c.bump(1), create=True, retries=5)
    assert store.times == 0
    assert second[1] == first[1]
    assert (again.count, again.found) == (1, 1)
    assert len(await ids_of(store, "counter-a", 1)) == 1
