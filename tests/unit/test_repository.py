"""Repository: saving, retrying on conflicts, and when snapshots are taken and trusted."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from chronik.adapters.memory.database import MemoryDatabase
from chronik.adapters.memory.eventstore import MemoryEventStore
from chronik.domain import Aggregate, applies, event
from chronik.errors import ConcurrencyError, InvalidInputError
from chronik.eventstore import EventTypes, Repository, Snapshot
from chronik.eventstore.snapshots import SnapshotCodec
from chronik.testing.rival import RivalWriterStore


@event("unit.tally_added")
@dataclass(frozen=True, slots=True)
class Added:
    amount: int


TYPES = EventTypes([Added])


class Tally(Aggregate):
    total: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    def add(self, amount: int) -> None:
        self.record(Added(amount))

    @applies(Added)
    def _added(self, e: Added) -> None:
        self.total += e.amount


class Sloppy(Tally):
    """Keeps state in an attribute it does not annotate: it cannot be snapshotted."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.last_amount = 0

    @applies(Added)
    def _added_and_kept(self, e: Added) -> None:
        self.total += e.amount
        self.last_amount = e.amount


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryDatabase().event_store(TYPES)


async def snapshot_versions_after_each_save(
    repo: Repository[Tally], tally: Tally, amounts: list[list[int]]
) -> list[int | None]:
    """Save one group of events at a time; the latest snapshot's version after each save."""
    seen: list[int | None] = []
    for group in amounts:
        for amount in group:
            tally.add(amount)
        await repo.save(tally)
        snapshot = await repo.store.load_snapshot(repo.stream_id(tally.id))
        seen.append(None if snapshot is None else snapshot.version)
    return seen


class TestSave:
    async def test_saving_with_nothing_pending_returns_none_and_writes_nothing(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally)
        assert await repo.save(Tally("t-1")) is None
        assert await store.head_position() == 0

    async def test_saving_appends_the_pending_events_under_the_prefixed_stream(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally, prefix="tally-")
        tally = Tally("t-1")
        tally.add(2)
        tally.add(3)
        result = await repo.save(tally)
        assert result is not None and (result.stream_id, result.version) == ("tally-t-1", 2)
        assert tally.pending_events == ()
        assert (await repo.load("t-1")).total == 5

    async def test_a_stale_aggregate_is_refused_and_keeps_its_pending_events(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally)
        first = Tally("t-1")
        first.add(1)
        await repo.save(first)
        stale, fresh = await repo.load("t-1"), await repo.load("t-1")
        fresh.add(2)
        await repo.save(fresh)
        stale.add(3)
        with pytest.raises(ConcurrencyError):
            await repo.save(stale)
        assert stale.pending_events == (Added(3),)
        assert (await repo.load("t-1")).total == 3


class TestOptions:
    @pytest.mark.parametrize("every", [0, -1, True, 2.5, "3"])
    def test_snapshot_every_must_be_an_int_of_at_least_one(
        self, store: MemoryEventStore, every: object
    ) -> None:
        with pytest.raises(InvalidInputError, match="snapshot_every must be an int >= 1"):
            Repository(store, Tally, snapshot_every=every)  # type: ignore[arg-type]  # bad on purpose

    def test_snapshot_every_one_is_accepted(self, store: MemoryEventStore) -> None:
        assert Repository(store, Tally, snapshot_every=1).snapshot_every == 1

    async def test_loading_as_of_a_version_and_a_time_together_is_refused(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally)
        tally = Tally("t-1")
        tally.add(1)
        await repo.save(tally)
        with pytest.raises(InvalidInputError, match="not both"):
            await repo.load("t-1", version=1, at=datetime.now(UTC))

    @pytest.mark.parametrize("version", [0, -1, True])
    async def test_loading_as_of_a_version_below_one_is_refused(
        self, store: MemoryEventStore, version: int
    ) -> None:
        with pytest.raises(InvalidInputError, match="version must be an int >= 1"):
            await Repository(store, Tally).load("t-1", version=version)


class TestExecute:
    async def test_a_conflict_is_retried_on_the_fresh_state(self) -> None:
        store = RivalWriterStore(TYPES, Added(1000), times=0)
        repo = Repository(store, Tally)
        tally = Tally("t-1")
        tally.add(1)
        await repo.save(tally)
        store.times = 1
        runs: list[int] = []

        def add_five(t: Tally) -> None:
            runs.append(t.total)
            t.add(5)

        result = await repo.execute("t-1", add_five)
        assert runs == [1, 1001]
        assert (result.total, result.version) == (1006, 3)

    async def test_execute_gives_up_after_the_retries_with_the_conflict(self) -> None:
        store = RivalWriterStore(TYPES, Added(1000), times=0)
        repo = Repository(store, Tally)
        tally = Tally("t-1")
        tally.add(1)
        await repo.save(tally)
        store.times = 1_000
        runs = 0

        def add_five(t: Tally) -> None:
            nonlocal runs
            runs += 1
            t.add(5)

        with pytest.raises(ConcurrencyError) as caught:
            await repo.execute("t-1", add_five, retries=2)
        assert runs == 3
        assert caught.value.stream_id == "t-1"
        assert Added(5) not in [r.event for r in await store.read_stream("t-1")]


class TestSnapshots:
    async def test_one_event_per_save_snapshots_at_each_multiple(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally, snapshot_every=3)
        seen = await snapshot_versions_after_each_save(repo, Tally("t-1"), [[1]] * 7)
        assert seen == [None, None, 3, 3, 3, 6, 6]

    async def test_a_save_that_steps_over_a_multiple_snapshots_where_it_lands(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally, snapshot_every=3)
        seen = await snapshot_versions_after_each_save(
            repo, Tally("t-1"), [[1, 1], [1, 1], [1], [1, 1, 1, 1, 1, 1, 1]]
        )
        assert seen == [None, 4, 4, 12]

    async def test_without_snapshot_every_no_snapshot_is_taken(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally)
        seen = await snapshot_versions_after_each_save(repo, Tally("t-1"), [[1] * 10])
        assert seen == [None]

    async def test_a_snapshot_holds_the_annotated_state(self, store: MemoryEventStore) -> None:
        repo = Repository(store, Tally, snapshot_every=2)
        tally = Tally("t-1")
        tally.add(4)
        tally.add(5)
        await repo.save(tally)
        snapshot = await store.load_snapshot("t-1")
        assert snapshot is not None
        assert snapshot.schema == SnapshotCodec(Tally).schema
        assert snapshot.state == b'{"total":9}'

    async def test_an_aggregate_with_unannotated_state_is_not_snapshotted_and_warns_once(
        self, store: MemoryEventStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="chronik.eventstore.snapshots")
        repo = Repository(store, Sloppy, snapshot_every=2)
        sloppy = Sloppy("s-1")
        for _ in range(3):
            sloppy.add(1)
            sloppy.add(1)
            await repo.save(sloppy)
        assert await store.load_snapshot("s-1") is None
        warnings = [r for r in caplog.records if r.name == "chronik.eventstore.snapshots"]
        assert len(warnings) == 1
        assert getattr(warnings[0], "aggregate") == "Sloppy"  # noqa: B009 - set by ``extra``
        assert "last_amount" in getattr(warnings[0], "attributes")  # noqa: B009
        assert (await repo.load("s-1")).total == 6

    async def test_a_snapshot_with_the_current_schema_is_trusted_over_the_events(
        self, store: MemoryEventStore
    ) -> None:
        repo = Repository(store, Tally, snapshot_every=100)
        tally = Tally("t-1")
        for _ in range(3):
            tally.add(1)
        await repo.save(tally)
        schema = SnapshotCodec(Tally).schema
        await store.save_snapshot(Snapshot("t-1", 2, schema, b'{"total":500}'))
        loaded = await repo.load("t-1")
        assert (loaded.total, loaded.version) == (501, 3)

    @pytest.mark.parametrize("state", [b"\xff not json", b'{"total":"many"}', b"{}", b"[]"])
    async def test_a_snapshot_that_no_longer_decodes_is_ignored_and_the_events_replayed(
        self, store: MemoryEventStore, caplog: pytest.LogCaptureFixture, state: bytes
    ) -> None:
        caplog.set_level(logging.WARNING, logger="chronik.eventstore.snapshots")
        repo = Repository(store, Tally, snapshot_every=100)
        tally = Tally("t-1")
        for amount in (1, 2, 3):
            tally.add(amount)
        await repo.save(tally)
        await store.save_snapshot(Snapshot("t-1", 2, SnapshotCodec(Tally).schema, state))
        loaded = await repo.load("t-1")
        assert (loaded.total, loaded.version) == (6, 3)
        assert any("ignoring snapshot" in r.getMessage() for r in caplog.records)

    async def test_a_snapshot_with_another_schema_is_ignored(self, store: MemoryEventStore) -> None:
        repo = Repository(store, Tally, snapshot_every=100)
        tally = Tally("t-1")
        tally.add(1)
        await repo.save(tally)
        await store.save_snapshot(Snapshot("t-1", 1, "some-old-schema", b'{"total":500}'))
        assert (await repo.load("t-1")).total == 1
