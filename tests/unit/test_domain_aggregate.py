"""Aggregates and Deciders: state changed only by events, and commands run against a store."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from chronik.adapters.memory.database import MemoryDatabase
from chronik.domain import Aggregate, Decider, DomainError, applies, event
from chronik.errors import ConcurrencyError
from chronik.eventstore import EventTypes, handle_command
from chronik.testing.rival import RivalWriterStore


@event("unit.added")
@dataclass(frozen=True, slots=True)
class Added:
    amount: int


@event("unit.reset")
@dataclass(frozen=True, slots=True)
class Reset:
    pass


@dataclass(frozen=True, slots=True)
class Unhandled:
    pass


class Counter(Aggregate):
    total: int
    resets: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0
        self.resets = 0

    def add(self, amount: int) -> None:
        self.record(Added(amount))

    @applies(Added)
    def _added(self, e: Added) -> None:
        if e.amount < 0:
            raise DomainError("a counter only counts up")
        self.total += e.amount

    @applies(Reset)
    def _reset(self, e: Reset) -> None:
        self.total = 0
        self.resets += 1


class DoublingCounter(Counter):
    """Overrides how Added applies, inherits how Reset applies."""

    @applies(Added)
    def _added_twice(self, e: Added) -> None:
        self.total += 2 * e.amount


class RenamedOverrideCounter(Counter):
    """Overrides the applier method by name, without repeating @applies."""

    def _added(self, e: Added) -> None:
        self.total += 100 * e.amount


class TestRecording:
    def test_a_new_aggregate_is_at_version_zero_with_nothing_pending(self) -> None:
        counter = Counter("c-1")
        assert (counter.id, counter.version, counter.pending_events) == ("c-1", 0, ())

    def test_record_applies_the_event_and_queues_it(self) -> None:
        counter = Counter("c-1")
        counter.add(3)
        assert counter.total == 3
        assert counter.pending_events == (Added(3),)

    def test_the_version_counts_every_recorded_event(self) -> None:
        counter = Counter("c-1")
        counter.add(1)
        counter.add(2)
        counter.record(Reset())
        assert counter.version == 3
        assert counter.pending_events == (Added(1), Added(2), Reset())

    def test_mark_saved_forgets_the_pending_events_but_keeps_the_version(self) -> None:
        counter = Counter("c-1")
        counter.add(1)
        counter.mark_saved()
        assert counter.pending_events == ()
        assert (counter.version, counter.total) == (1, 1)
        counter.add(4)
        assert list(counter.pending_events) == [Added(4)]

    def test_pending_events_is_a_copy_the_caller_cannot_change(self) -> None:
        counter = Counter("c-1")
        counter.add(1)
        pending = counter.pending_events
        counter.add(2)
        assert pending == (Added(1),)

    def test_an_applier_that_raises_leaves_the_event_unrecorded(self) -> None:
        counter = Counter("c-1")
        counter.add(5)
        with pytest.raises(DomainError, match="only counts up"):
            counter.add(-1)
        assert counter.pending_events == (Added(5),)
        assert (counter.version, counter.total) == (1, 5)

    def test_an_event_without_an_applier_raises_a_type_error_naming_both_classes(self) -> None:
        counter = Counter("c-1")
        with pytest.raises(TypeError) as caught:
            counter.record(Unhandled())
        assert "Counter" in str(caught.value) and "Unhandled" in str(caught.value)
        assert (counter.version, counter.pending_events) == (0, ())


class TestReplay:
    def test_replay_applies_the_events_and_sets_the_stream_version(self) -> None:
        counter = Counter("c-1")
        counter.replay([Added(2), Added(3)], version=7)
        assert (counter.total, counter.version) == (5, 7)
        assert counter.pending_events == ()

    def test_replay_of_an_event_without_an_applier_names_both_classes(self) -> None:
        with pytest.raises(TypeError, match=r"Counter has no @applies method for Unhandled"):
            Counter("c-1").replay([Added(1), Unhandled()], version=2)

    def test_blank_builds_the_aggregate_before_any_event(self) -> None:
        counter = Counter.blank("c-9")
        assert isinstance(counter, Counter)
        assert (counter.id, counter.version, counter.total) == ("c-9", 0, 0)


class TestInheritance:
    def test_a_subclass_inherits_the_appliers_it_does_not_override(self) -> None:
        counter = DoublingCounter("c-1")
        counter.add(1)
        counter.record(Reset())
        assert (counter.total, counter.resets) == (0, 1)

    def test_a_subclass_applier_for_the_same_event_replaces_the_inherited_one(self) -> None:
        counter = DoublingCounter("c-1")
        counter.add(3)
        assert counter.total == 6

    def test_a_subclass_does_not_change_how_its_base_class_applies_events(self) -> None:
        counter = Counter("c-1")
        counter.add(3)
        assert counter.total == 3

    def test_overriding_an_applier_method_by_name_uses_the_override(self) -> None:
        counter = RenamedOverrideCounter("c-1")
        counter.add(1)
        assert counter.total == 100


# -- the functional form ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Add:
    amount: int


def decide(command: Add, state: int) -> Sequence[Added]:
    if state + command.amount > 100:
        raise DomainError("the counter stops at 100")
    return [Added(command.amount)] if command.amount else []


def evolve(state: int, e: Added) -> int:
    return state + e.amount


COUNTER: Decider[Add, int, Added] = Decider(initial_state=0, decide=decide, evolve=evolve)
TYPES = EventTypes([Added])


class TestDeciderFold:
    def test_fold_starts_from_the_initial_state(self) -> None:
        assert COUNTER.fold([Added(2), Added(3)]) == 5

    def test_fold_of_no_events_is_the_initial_state(self) -> None:
        assert COUNTER.fold([]) == 0

    def test_fold_continues_from_a_given_state(self) -> None:
        assert COUNTER.fold([Added(1)], 10) == 11

    def test_a_decider_is_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            COUNTER.initial_state = 5  # type: ignore[misc]  # assigning is the test

    def test_a_decider_can_be_built_through_its_subscripted_type(self) -> None:
        decider = Decider[Add, int, Added](initial_state=0, decide=decide, evolve=evolve)
        assert decider.fold([Added(2)]) == 2


class CountingDecider:
    """COUNTER's decide, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, command: Add, state: int) -> Sequence[Added]:
        self.calls += 1
        return decide(command, state)


class TestHandleCommand:
    async def test_it_appends_the_decided_events_and_returns_state_events_and_result(
        self,
    ) -> None:
        store = MemoryDatabase().event_store(TYPES)
        await store.append("counter-1", [Added(4)])
        state, events, result = await handle_command(store, COUNTER, "counter-1", Add(3))
        assert (state, list(events)) == (7, [Added(3)])
        assert result is not None and (result.stream_id, result.version) == ("counter-1", 2)
        assert [r.event for r in await store.read_stream("counter-1")] == [Added(4), Added(3)]

    async def test_it_starts_a_new_stream_from_the_initial_state(self) -> None:
        store = MemoryDatabase().event_store(TYPES)
        state, _, result = await handle_command(store, COUNTER, "counter-1", Add(3))
        assert state == 3
        assert result is not None and result.version == 1

    async def test_it_returns_no_result_and_writes_nothing_when_decide_yields_nothing(
        self,
    ) -> None:
        store = MemoryDatabase().event_store(TYPES)
        await store.append("counter-1", [Added(4)])
        state, events, result = await handle_command(store, COUNTER, "counter-1", Add(0))
        assert (state, list(events), result) == (4, [], None)
        assert await store.stream_version("counter-1") == 1

    async def test_a_domain_error_from_decide_reaches_the_caller_and_writes_nothing(
        self,
    ) -> None:
        store = MemoryDatabase().event_store(TYPES)
        await store.append("counter-1", [Added(100)])
        with pytest.raises(DomainError, match="stops at 100"):
            await handle_command(store, COUNTER, "counter-1", Add(1))
        assert await store.stream_version("counter-1") == 1

    async def test_a_conflict_is_retried_on_fresh_state(self) -> None:
        store = RivalWriterStore(TYPES, Added(10), times=1)
        counting = CountingDecider()
        decider: Decider[Add, int, Added] = Decider(0, counting, evolve)
        state, events, result = await handle_command(store, decider, "counter-1", Add(3))
        assert counting.calls == 2
        assert (state, list(events)) == (13, [Added(3)])
        assert result is not None and result.version == 2
        assert [r.event for r in await store.read_stream("counter-1")] == [Added(10), Added(3)]

    async def test_it_gives_up_after_the_retries_with_the_last_conflict(self) -> None:
        store = RivalWriterStore(TYPES, Added(10), times=1_000)
        counting = CountingDecider()
        decider: Decider[Add, int, Added] = Decider(0, counting, evolve)
        with pytest.raises(ConcurrencyError) as caught:
            await handle_command(store, decider, "counter-1", Add(3), retries=2)
        assert counting.calls == 3
        assert caught.value.stream_id == "counter-1"
        assert Added(3) not in [r.event for r in await store.read_stream("counter-1")]
