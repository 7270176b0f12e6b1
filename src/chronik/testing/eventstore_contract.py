"""The contract every event store adapter passes, written once.

An adapter's test module subclasses ``EventStoreContract`` and provides the
``database`` fixture (an empty database, opened by URL: its event store is under test)
plus three small hooks that reach under the port (to reopen the same storage, to
damage a stored row, to read stored bytes). Every test here then runs against that
adapter.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar

import pytest

from chronik.adapters.port import Database
from chronik.domain import Aggregate, Personal, applies, event
from chronik.errors import (
    ConcurrencyError,
    CorruptEventError,
    DuplicateEventError,
    EventStoreError,
    InvalidInputError,
    StreamNotFoundError,
    SubjectForgottenError,
    UnknownEventTypeError,
)
from chronik.eventstore import (
    AppendResult,
    BaseEventStore,
    EventTypes,
    ExpectedVersion,
    Metadata,
    NewEvent,
    RecordedEvent,
    Repository,
    Snapshot,
    Undecodable,
    Upcaster,
    category_of,
)
from chronik.eventstore.context import ambient_metadata

__all__ = [
    "CONTRACT_TYPES",
    "TWO_STEP_TYPES",
    "Account",
    "Deposited",
    "DurableEventStoreContract",
    "EventStoreContract",
    "HolderForgotten",
    "HolderForgottenBefore",
    "Opened",
    "Renamed",
    "Withdrawn",
]


@event("contract.opened", subject="holder_id")
@dataclass(frozen=True, slots=True)
class Opened:
    holder_id: str
    holder: Annotated[str, Personal()]
    at: datetime


@event("contract.deposited", version=2, aliases=("contract.paid_in",))
@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int
    currency: str


@event("contract.withdrawn")
@dataclass(frozen=True, slots=True)
class Withdrawn:
    amount: int


@event("contract.renamed")
@dataclass(frozen=True, slots=True)
class Renamed:
    name: Annotated[str, Personal(placeholder="(erased)")]
    note: str = ""


@event("contract.holder_forgotten", subject="holder_id", forgets=True)
@dataclass(frozen=True, slots=True)
class HolderForgotten:
    """The holder asked to be forgotten: appending this forgets them, atomically."""

    holder_id: str


@event("contract.holder_forgotten", subject="holder_id")
@dataclass(frozen=True, slots=True)
class HolderForgottenBefore:
    """HolderForgotten as code declared it before forgetting was part of the append."""

    holder_id: str


@event("contract.deposited")
@dataclass(frozen=True, slots=True)
class DepositedV1:
    """The first shape of Deposited, as old code wrote it."""

    amount: int


CONTRACT_TYPES = EventTypes(
    [Opened, Deposited, Withdrawn, Renamed, HolderForgotten],
    upcasters=[Upcaster("contract.deposited", 1, lambda d: {**d, "currency": "EUR"})],
)
V1_TYPES = EventTypes([Opened, DepositedV1, Withdrawn, Renamed])
#: the registry of code that forgot in a second step, after appending the event
TWO_STEP_TYPES = EventTypes([Opened, Deposited, Withdrawn, Renamed, HolderForgottenBefore])

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Account(Aggregate):
    """A small aggregate to exercise repositories and snapshots."""

    holder: str
    balance: int
    snapshot_version: ClassVar[int] = 1

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.holder = ""
        self.balance = 0

    @classmethod
    def open(cls, id: str, holder_id: str, holder: str) -> Account:
        account = cls(id)
        account.record(Opened(holder_id, holder, NOW))
        return account

    def deposit(self, amount: int) -> None:
        self.record(Deposited(amount, "EUR"))

    @applies(Opened)
    def _opened(self, e: Opened) -> None:
        self.holder = e.holder

    @applies(Deposited)
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount

    @applies(Withdrawn)
    def _withdrawn(self, e: Withdrawn) -> None:
        self.balance -= e.amount

    @applies(Renamed)
    def _renamed(self, e: Renamed) -> None:
        self.holder = e.name


def _sid() -> str:
    return f"acc-{uuid.uuid4()}"


async def _twenty_appends(
    store: BaseEventStore, culprit: str
) -> tuple[list[str], list[AppendResult | BaseException]]:
    """Twenty concurrent appends (one, then two events each in turn), the 11th to ``culprit``.

    They are started together, so the store commits them in one or two shared commits.
    """
    streams = [_sid() for _ in range(20)]
    streams[10] = culprit
    outcomes = await asyncio.gather(
        *(
            store.append(sid, [Withdrawn(1)] if i % 2 else [Withdrawn(1), Withdrawn(2)])
            for i, sid in enumerate(streams)
        ),
        return_exceptions=True,
    )
    return streams, outcomes


async def _only_the_culprit_failed(
    store: BaseEventStore,
    start: int,
    streams: list[str],
    outcomes: list[AppendResult | BaseException],
) -> BaseException:
    """The 11th append failed and wrote nothing; the 19 others are stored whole."""
    failed = outcomes[10]
    assert isinstance(failed, BaseException), "the culprit's append succeeded"
    others = [o for i, o in enumerate(outcomes) if i != 10]
    failures = [o for o in others if isinstance(o, BaseException)]
    assert not failures, f"{len(failures)} other appends failed too, first: {failures[0]!r}"
    for i, sid in enumerate(streams):
        expected = 0 if i == 10 else 1 if i % 2 else 2
        assert await store.stream_version(sid) == expected, sid
    stored = await store.read_all(start, limit=1000)
    assert streams[10] not in {r.stream_id for r in stored}
    assert len(stored) == sum(1 if i % 2 else 2 for i in range(20) if i != 10)
    assert await store.head_position() == stored[-1].position
    return failed


async def _elsewhere(store: BaseEventStore, sid: str) -> None:
    with ambient_metadata(Metadata("other-request"), replace=True):
        await store.append(sid + "-b", [Withdrawn(3)])


class EventStoreContract:
    """Behaviour every event store adapter must have. Subclass it per adapter."""

    @pytest.fixture
    async def database(self) -> Database:
        """An empty database; each adapter's subclass overrides this fixture (and closes it)."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, database: Database) -> BaseEventStore:
        """The store under test: the database's, with the contract's event types."""
        return database.event_store(CONTRACT_TYPES)

    async def reopen(self, store: BaseEventStore) -> BaseEventStore:
        """Close the store and open the same storage again (or return it if not durable)."""
        raise NotImplementedError

    async def corrupt(
        self, store: BaseEventStore, stream_id: str, version: int, data: bytes
    ) -> None:
        """Overwrite the stored data bytes of one event."""
        raise NotImplementedError

    async def stored_data(self, store: BaseEventStore, stream_id: str, version: int) -> bytes:
        """The stored data bytes of one event."""
        raise NotImplementedError

    # -- appending ---------------------------------------------------------------------

    async def test_an_append_to_a_new_stream_starts_it_at_version_one(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        result = await store.append(sid, [Deposited(5, "EUR")], expected=ExpectedVersion.NO_STREAM)
        assert result.version == 1
        assert result.position == result.first_position >= 1
        [recorded] = await store.read_stream(sid)
        assert recorded.event == Deposited(5, "EUR")
        assert (recorded.stream_id, recorded.version, recorded.position) == (
            sid,
            1,
            result.position,
        )
        assert recorded.type == "contract.deposited"
        assert recorded.schema_version == 2
        assert isinstance(recorded.id, uuid.UUID)
        assert recorded.recorded_at.tzinfo is not None

    async def test_a_batch_gets_contiguous_versions_and_increasing_positions(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Deposited(1, "EUR")])
        events = [Deposited(i, "EUR") for i in range(2, 7)]
        result = await store.append(sid, events, expected=1)
        assert result.version == 6
        assert result.position - result.first_position == 4
        records = await store.read_stream(sid)
        assert [r.version for r in records] == [1, 2, 3, 4, 5, 6]
        assert [r.event for r in records[1:]] == events
        positions = [r.position for r in records]
        assert positions == sorted(positions) and len(set(positions)) == 6
        assert [r.position for r in records[1:]] == list(
            range(result.first_position, result.position + 1)
        )

    async def test_a_wrong_expected_version_raises_and_writes_nothing(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Deposited(1, "EUR"), Deposited(2, "EUR")])
        head = await store.head_position()
        with pytest.raises(ConcurrencyError) as caught:
            await store.append(sid, [Deposited(3, "EUR"), Deposited(4, "EUR")], expected=1)
        assert caught.value.stream_id == sid
        assert caught.value.actual == 2
        assert caught.value.expected == "1"
        assert sid in str(caught.value) and "1" in str(caught.value) and "2" in str(caught.value)
        assert await store.stream_version(sid) == 2
        assert await store.head_position() == head

    async def test_no_stream_refuses_a_stream_that_exists(self, store: BaseEventStore) -> None:
        sid = _sid()
        await store.append(sid, [Deposited(1, "EUR")], expected=ExpectedVersion.NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append(sid, [Deposited(2, "EUR")], expected=ExpectedVersion.NO_STREAM)
        assert caught.value.actual == 1
        with pytest.raises(ConcurrencyError):
            await store.append(sid, [Deposited(2, "EUR")], expected=0)

    async def test_exact_version_on_a_missing_stream_raises_with_actual_zero(
        self, store: BaseEventStore
    ) -> None:
        with pytest.raises(ConcurrencyError) as caught:
            await store.append(_sid(), [Deposited(1, "EUR")], expected=3)
        assert caught.value.actual == 0

    async def test_any_appends_whatever_the_version(self, store: BaseEventStore) -> None:
        sid = _sid()
        for _ in range(3):
            await store.append(sid, [Withdrawn(1)], expected=ExpectedVersion.ANY)
        assert await store.stream_version(sid) == 3

    async def test_bad_arguments_are_refused_with_a_clear_error(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        with pytest.raises(InvalidInputError, match="non-empty sequence"):
            await store.append(sid, [])
        with pytest.raises(InvalidInputError, match="expected version"):
            await store.append(sid, [Withdrawn(1)], expected=-3)
        with pytest.raises(InvalidInputError, match="not a registered event type"):
            await store.append(sid, [object()])
        with pytest.raises(InvalidInputError, match="not a registered event type"):
            await store.append(sid, [Withdrawn(1), "not an event"])
        with pytest.raises(InvalidInputError, match="from_version"):
            await store.read_stream(sid, 0)
        with pytest.raises(InvalidInputError, match="limit"):
            await store.read_all(0, limit=0)
        with pytest.raises(InvalidInputError, match="after"):
            await store.read_all(-1)
        with pytest.raises(InvalidInputError, match="headers"):
            await store.append(sid, [Withdrawn(1)], metadata=Metadata(headers={"a": 1}))  # type: ignore[dict-item]
        assert await store.stream_version(sid) == 0

    @pytest.mark.parametrize(
        "stream_id",
        [
            "it's",
            'say "hi"',
            "x'); DROP TABLE chronik_events; --",
            "Robert'); DELETE FROM chronik_subject_keys WHERE ('1'='1",
            "ünïcødé-流-🚀",
            "a" * 1000,
            " spaces inside and around ",
            "back\\slash%_wild*card",
        ],
    )
    async def test_stream_ids_are_data_and_round_trip(
        self, store: BaseEventStore, stream_id: str
    ) -> None:
        await store.append(stream_id, [Withdrawn(1)], expected=ExpectedVersion.NO_STREAM)
        await store.append(stream_id, [Withdrawn(2)], expected=1)
        records = await store.read_stream(stream_id)
        assert [(r.stream_id, r.version) for r in records] == [(stream_id, 1), (stream_id, 2)]
        assert await store.stream_version(stream_id) == 2
        backwards = await store.read_stream_backwards(stream_id)
        assert [r.version for r in backwards] == [2, 1]
        neighbour = ("b" if stream_id[0] == "a" else "a") + stream_id[1:]
        assert await store.stream_version(neighbour) == 0

    @pytest.mark.parametrize(
        ("stream_id", "reason"),
        [
            ("", "empty"),
            ("nul\x00byte", "NUL"),
            ("é" * 501, "1000 bytes"),
            ("\ud800", "surrogate"),
            (42, "must be a str"),
        ],
    )
    async def test_stream_ids_the_store_cannot_keep_are_refused(
        self, store: BaseEventStore, stream_id: str, reason: str
    ) -> None:
        head = await store.head_position()
        with pytest.raises(InvalidInputError, match=reason):
            await store.append(stream_id, [Withdrawn(1)])
        with pytest.raises(InvalidInputError, match=reason):
            await store.read_stream(stream_id)
        assert await store.head_position() == head

    async def test_chosen_ids_are_kept_and_a_reused_id_writes_nothing(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        chosen = uuid.uuid4()
        await store.append(sid, [NewEvent(Withdrawn(1), id=chosen)])
        [recorded] = await store.read_stream(sid)
        assert recorded.id == chosen
        head = await store.head_position()
        other = _sid()
        with pytest.raises(DuplicateEventError) as caught:
            await store.append(other, [Withdrawn(2), NewEvent(Withdrawn(3), id=chosen)])
        assert caught.value.event_id == str(chosen)
        twice = uuid.uuid4()
        with pytest.raises(DuplicateEventError):
            await store.append(
                other, [NewEvent(Withdrawn(2), id=twice), NewEvent(Withdrawn(3), id=twice)]
            )
        assert await store.stream_version(other) == 0
        assert await store.head_position() == head

    async def test_ambient_metadata_reaches_appends_made_inside_it(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        with ambient_metadata(Metadata("request-1", "command-9", {"traceparent": "00-t-s-01"})):
            await store.append(sid, [Withdrawn(1)], metadata=Metadata(causation_id="mine"))
            # Concurrent appends share a commit; each keeps the metadata of its own task.
            await asyncio.gather(store.append(sid + "-a", [Withdrawn(2)]), _elsewhere(store, sid))
        [first] = await store.read_stream(sid)
        assert first.metadata == Metadata("request-1", "mine", {"traceparent": "00-t-s-01"})
        [joined] = await store.read_stream(sid + "-a")
        assert joined.metadata.correlation_id == "request-1"
        [other] = await store.read_stream(sid + "-b")
        assert other.metadata.correlation_id == "other-request"
        assert other.metadata.headers is None

    async def test_metadata_defaults_to_the_first_event_and_round_trips(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Withdrawn(1), Withdrawn(2)])
        first, second = await store.read_stream(sid)
        assert first.metadata.correlation_id == str(first.id)
        assert first.metadata.causation_id == str(first.id)
        assert second.metadata.correlation_id == str(first.id)
        meta = Metadata("corr-1", "cause-1", {"traceparent": "00-abc-def-01", "user": "ü"})
        own = Metadata("corr-2", None, None)
        await store.append(sid, [Withdrawn(3), NewEvent(Withdrawn(4), metadata=own)], metadata=meta)
        third, fourth = await store.read_stream(sid, 3)
        assert third.metadata == meta
        # An event's own metadata refines the append's, field by field.
        assert fourth.metadata.correlation_id == "corr-2"
        assert fourth.metadata.causation_id == "cause-1"
        assert fourth.metadata.headers == meta.headers

    # -- reading -----------------------------------------------------------------------

    async def test_a_stream_reads_forwards_from_a_version_and_backwards(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Withdrawn(i) for i in range(1, 11)])
        assert [r.version for r in await store.read_stream(sid, 4)] == list(range(4, 11))
        assert [r.version for r in await store.read_stream(sid, 4, to_version=6)] == [4, 5, 6]
        assert [r.version for r in await store.read_stream(sid, 2, limit=3)] == [2, 3, 4]
        assert [r.version for r in await store.read_stream_backwards(sid, limit=3)] == [10, 9, 8]
        assert [r.version for r in await store.read_stream_backwards(sid, 5, limit=2)] == [5, 4]
        assert await store.read_stream(sid, 11) == []
        assert await store.read_stream(_sid()) == []
        assert await store.read_stream_backwards(_sid()) == []

    async def test_read_all_pages_through_every_event_in_position_order(
        self, store: BaseEventStore
    ) -> None:
        start = await store.head_position()
        streams = [_sid() for _ in range(3)]
        for round_ in range(4):
            for sid in streams:
                await store.append(sid, [Withdrawn(round_), Withdrawn(round_ + 100)])
        seen: list[RecordedEvent] = []
        after = start
        while page := await store.read_all(after, limit=5):
            assert len(page) <= 5
            seen.extend(page)
            after = page[-1].position
        assert len(seen) == 24
        assert [r.position for r in seen] == sorted({r.position for r in seen})
        assert after == await store.head_position()
        for sid in streams:
            assert [r.version for r in seen if r.stream_id == sid] == list(range(1, 9))
        assert await store.read_all(after) == []

    async def test_a_filtered_read_pages_through_only_the_types_asked_for(
        self, store: BaseEventStore
    ) -> None:
        start = await store.head_position()
        sid = _sid()
        for i in range(1, 31):
            # one deposit in ten, as a projection of a small share of the store sees it
            await store.append(sid, [Deposited(i, "EUR") if i % 10 == 0 else Withdrawn(i)])
        head = await store.head_position()
        seen: list[RecordedEvent] = []
        after = start
        while True:
            page = await store.read_all_page(after, limit=2, types=["contract.deposited"])
            if page.scanned_to <= after:
                break
            assert len(page.events) <= 2
            seen.extend(page.events)
            after = page.scanned_to
        assert [r.event for r in seen] == [
            Deposited(10, "EUR"),
            Deposited(20, "EUR"),
            Deposited(30, "EUR"),
        ]
        assert [r.version for r in seen] == [10, 20, 30]
        assert after == head  # past the withdrawals after the last deposit too
        both = await store.read_all_page(
            start, types=["contract.withdrawn", "contract.deposited"], limit=100
        )
        assert [r.version for r in both.events] == list(range(1, 31))
        assert [r.position for r in both.events] == sorted(r.position for r in both.events)

    async def test_a_filtered_read_moves_past_a_page_where_nothing_matched(
        self, store: BaseEventStore
    ) -> None:
        # A follower's checkpoint must move even when nothing is for it: else its lag
        # (measured in positions) looks stuck.
        start = await store.head_position()
        await store.append(_sid(), [Withdrawn(i) for i in range(1, 6)])
        head = await store.head_position()
        page = await store.read_all_page(start, types=["contract.deposited"])
        assert page.events == []
        assert page.scanned_to == head
        nothing = await store.read_all_page(start, categories=[f"none{uuid.uuid4().hex}"])
        assert (nothing.events, nothing.scanned_to) == ([], head)
        empty = await store.read_all_page(start, types=[])
        assert (empty.events, empty.scanned_to) == ([], head)
        again = await store.read_all_page(head, types=["contract.withdrawn"])
        assert (again.events, again.scanned_to) == ([], head)

    async def test_a_read_filtered_by_category_sees_only_those_streams(
        self, store: BaseEventStore
    ) -> None:
        start = await store.head_position()
        tag = uuid.uuid4().hex[:8]
        budget, lead, bare = f"budget{tag}", f"lead{tag}", f"bare{tag}"
        await store.append(f"{budget}-main", [Withdrawn(1), Deposited(2, "EUR")])
        await store.append(f"{lead}-a-b", [Withdrawn(3)])  # the category ends at the first '-'
        await store.append(f"{budget}-other", [Withdrawn(4)])
        await store.append(bare, [Withdrawn(5)])  # no '-': the whole id is the category
        await store.append(f"{budget}x-main", [Withdrawn(6)])  # a longer name, not a prefix
        assert category_of(f"{lead}-a-b") == lead
        assert category_of(bare) == bare
        page = await store.read_all_page(start, categories=[budget])
        assert [(r.stream_id, r.version) for r in page.events] == [
            (f"{budget}-main", 1),
            (f"{budget}-main", 2),
            (f"{budget}-other", 1),
        ]
        assert page.scanned_to == await store.head_position()
        two = await store.read_all_page(start, categories=[lead, bare])
        assert [r.event for r in two.events] == [Withdrawn(3), Withdrawn(5)]
        typed = await store.read_all_page(
            start, categories=[budget, lead], types=["contract.withdrawn"]
        )
        assert [r.event for r in typed.events] == [Withdrawn(1), Withdrawn(3), Withdrawn(4)]
        paged = await store.read_all_page(start, categories=[budget], limit=2)
        assert [r.version for r in paged.events] == [1, 2]
        assert paged.scanned_to == paged.events[-1].position

    async def test_a_filter_that_is_not_a_collection_of_names_is_refused(
        self, store: BaseEventStore
    ) -> None:
        with pytest.raises(InvalidInputError, match="types must be a collection of strings"):
            await store.read_all_page(0, types="contract.withdrawn")
        with pytest.raises(InvalidInputError, match="categories must hold strings only"):
            await store.read_all_page(0, categories=["acc", 3])  # type: ignore[list-item]

    async def test_recorded_at_never_goes_back_along_positions(self, store: BaseEventStore) -> None:
        start = await store.head_position()
        for _ in range(5):
            await store.append(_sid(), [Withdrawn(1), Withdrawn(2)])
        records = await store.read_all(start)
        times = [r.recorded_at for r in records]
        assert times == sorted(times)

    async def test_the_version_at_a_time_follows_the_recorded_times(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Withdrawn(1)])
        await store.append(sid, [Withdrawn(2)])
        first, second = await store.read_stream(sid)
        assert await store.version_at(sid, first.recorded_at - timedelta(seconds=1)) == 0
        assert await store.version_at(sid, first.recorded_at) == 1
        assert await store.version_at(sid, second.recorded_at) == 2
        with pytest.raises(InvalidInputError, match="timezone"):
            await store.version_at(sid, datetime(2026, 1, 1))

    async def test_the_version_at_any_aware_time_is_a_version_however_far_off(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Withdrawn(1)])
        await store.append(sid, [Withdrawn(2)])
        first, second = await store.read_stream(sid)
        east, west = timezone(timedelta(hours=10)), timezone(timedelta(hours=-10))
        latest = [
            datetime.max.replace(tzinfo=west),  # beyond the last instant in UTC
            datetime.max.replace(tzinfo=UTC),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=23, minutes=59))),
            datetime(3000, 1, 1, tzinfo=east),
            second.recorded_at.astimezone(west),
        ]
        earliest = [
            datetime.min.replace(tzinfo=east),  # before the first instant in UTC
            datetime.min.replace(tzinfo=UTC),
            datetime.min.replace(tzinfo=timezone(timedelta(hours=-23, minutes=-59))),
            datetime(1970, 1, 1, tzinfo=west),
            first.recorded_at.astimezone(east) - timedelta(microseconds=1),
        ]
        for when in latest:
            assert await store.version_at(sid, when) == 2, when
            assert await store.version_at(_sid(), when) == 0, when
        for when in earliest:
            assert await store.version_at(sid, when) == 0, when
        assert await store.version_at(sid, first.recorded_at.astimezone(west)) == 1
        repo = Repository(store, Account, prefix="")
        assert (await repo.load(sid, at=datetime.max.replace(tzinfo=west))).version == 2
        with pytest.raises(StreamNotFoundError):
            await repo.load(sid, at=datetime.min.replace(tzinfo=east))

    # -- what is stored stays readable -------------------------------------------------

    async def test_old_schema_versions_are_upcast_on_read_and_never_rewritten(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        old = store.with_types(V1_TYPES)
        await old.append(sid, [DepositedV1(7)])
        stored = await self.stored_data(store, sid, 1)
        [recorded] = await store.read_stream(sid)
        assert recorded.event == Deposited(7, "EUR")
        assert recorded.schema_version == 1
        assert await self.stored_data(store, sid, 1) == stored

    async def test_an_alias_reads_events_stored_under_an_earlier_name(
        self, store: BaseEventStore
    ) -> None:
        @event("contract.paid_in", version=2)
        @dataclass(frozen=True, slots=True)
        class PaidIn:
            amount: int
            currency: str

        sid = _sid()
        await store.with_types(EventTypes([PaidIn])).append(sid, [PaidIn(3, "USD")])
        [recorded] = await store.read_stream(sid)
        assert recorded.event == Deposited(3, "USD")

    async def test_an_unknown_event_type_names_stream_and_version(
        self, store: BaseEventStore
    ) -> None:
        @event("contract.mystery")
        @dataclass(frozen=True, slots=True)
        class Mystery:
            clue: str

        sid = _sid()
        await store.append(sid, [Withdrawn(1)])
        await store.with_types(EventTypes([Mystery])).append(sid, [Mystery("?")])
        with pytest.raises(UnknownEventTypeError) as caught:
            await store.read_stream(sid)
        assert (caught.value.stream_id, caught.value.version) == (sid, 2)
        assert "contract.mystery" in str(caught.value) and sid in str(caught.value)
        with pytest.raises(UnknownEventTypeError):
            await store.read_all(await store.head_position() - 1)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"{not json", "not valid JSON"),
            (b'{"amount": "five"}', "does not decode"),
            (b"[1, 2]", "does not decode"),
        ],
    )
    async def test_a_row_that_does_not_decode_names_stream_and_version(
        self, store: BaseEventStore, data: bytes, reason: str
    ) -> None:
        sid = _sid()
        await store.append(sid, [Withdrawn(1), Withdrawn(2)])
        await self.corrupt(store, sid, 2, data)
        with pytest.raises(CorruptEventError) as caught:
            await store.read_stream(sid)
        assert (caught.value.stream_id, caught.value.version) == (sid, 2)
        assert "version 2" in str(caught.value)
        [first] = await store.read_stream(sid, to_version=1)
        assert first.event == Withdrawn(1)

    async def test_a_tolerant_page_read_gives_an_undecodable_event_in_its_place(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        start = await store.head_position()
        await store.append(sid, [Withdrawn(1), Withdrawn(2), Withdrawn(3)])
        await self.corrupt(store, sid, 2, b"{broken")
        with pytest.raises(CorruptEventError):
            await store.read_all_page(start, types=["contract.withdrawn"])
        page = await store.read_all_page(start, types=["contract.withdrawn"], tolerant=True)
        first, broken, third = page.events
        assert (first.event, third.event) == (Withdrawn(1), Withdrawn(3))
        assert (broken.stream_id, broken.version, broken.type) == (sid, 2, "contract.withdrawn")
        assert broken.position == first.position + 1
        assert isinstance(broken.event, Undecodable)
        assert (broken.event.error.stream_id, broken.event.error.version) == (sid, 2)
        assert page.scanned_to == await store.head_position()

    async def test_an_old_row_that_does_not_fit_after_upcasting_names_stream_and_version(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.with_types(V1_TYPES).append(sid, [DepositedV1(1)])
        await self.corrupt(store, sid, 1, b'{"amount": []}')
        with pytest.raises(CorruptEventError, match="does not fit") as caught:
            await store.read_stream(sid)
        assert caught.value.version == 1

    # -- personal data -----------------------------------------------------------------

    async def test_personal_fields_are_stored_encrypted_and_read_back_plain(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        holder = f"holder-{uuid.uuid4()}"
        await store.append(sid, [Opened(holder, "Ada Lovelace", NOW), Renamed("Ada King", "wed")])
        assert b"Lovelace" not in await self.stored_data(store, sid, 1)
        assert b"Ada King" not in await self.stored_data(store, sid, 2)
        assert b"wed" in await self.stored_data(store, sid, 2)
        opened, renamed = await store.read_stream(sid)
        assert opened.event == Opened(holder, "Ada Lovelace", NOW)
        assert renamed.event == Renamed("Ada King", "wed")

    async def test_forgetting_a_subject_turns_their_fields_into_placeholders(
        self, store: BaseEventStore
    ) -> None:
        sid, other = _sid(), _sid()
        holder = f"holder-{uuid.uuid4()}"
        await store.append(sid, [Opened(holder, "Grace Hopper", NOW), Renamed("G. Hopper", "n")])
        await store.append(other, [Renamed("Alan Turing")])
        await store.forget(holder)
        opened, renamed = await store.read_stream(sid)
        assert opened.event == Opened(holder, "[forgotten]", NOW)
        assert renamed.event == Renamed("G. Hopper", "n")  # subject is the stream: kept
        await store.forget(sid)
        _, renamed = await store.read_stream(sid)
        assert renamed.event == Renamed("(erased)", "n")
        [kept] = await store.read_stream(other)
        assert kept.event == Renamed("Alan Turing")
        page = await store.read_all(opened.position - 1, limit=2)
        assert page[0].event == Opened(holder, "[forgotten]", NOW)
        await store.forget(sid)  # forgetting twice is harmless
        with pytest.raises(InvalidInputError):
            await store.forget("")

    # -- inspecting: the admin queries of the console and the CLI -----------------------

    async def test_streams_are_listed_a_page_at_a_time_by_prefix_and_by_event_type(
        self, store: BaseEventStore
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        ids = [f"{tag}-acc-{n:02}" for n in range(7)]
        for n, sid in enumerate(ids):
            await store.append(sid, [Deposited(n, "EUR")] + [Withdrawn(1)] * (n % 2))
        await store.append(f"{tag}-other-1", [Withdrawn(5)])
        # A prefix such as "a%" or "a_" is data, not a pattern.
        await store.append(f"{tag}-acc_%x", [Deposited(1, "EUR")])
        first = await store.list_streams(f"{tag}-acc-", 3)
        assert first == [(ids[0], 1), (ids[1], 2), (ids[2], 1)]
        second = await store.list_streams(f"{tag}-acc-", 3, after=first[-1][0])
        assert second == [(ids[3], 2), (ids[4], 1), (ids[5], 2)]
        last = await store.list_streams(f"{tag}-acc-", 3, after=second[-1][0])
        assert last == [(ids[6], 1)]
        assert await store.list_streams(f"{tag}-acc-", 3, after=ids[6]) == []
        # By type: the streams that have such an event, with their whole version.
        withdrawn = await store.list_streams(f"{tag}-", 2, event_type="contract.withdrawn")
        assert withdrawn == [(ids[1], 2), (ids[3], 2)]
        more = await store.list_streams(
            f"{tag}-", 10, after=withdrawn[-1][0], event_type="contract.withdrawn"
        )
        assert more == [(ids[5], 2), (f"{tag}-other-1", 1)]
        assert await store.list_streams(f"{tag}-", 10, event_type="contract.nothing") == []
        assert await store.list_streams(f"{tag}-acc_%", 10) == [(f"{tag}-acc_%x", 1)]
        with pytest.raises(InvalidInputError):
            await store.list_streams(f"{tag}-", 10, event_type="")

    async def test_the_events_of_one_correlation_come_in_position_order(
        self, store: BaseEventStore
    ) -> None:
        correlation = f"corr-{uuid.uuid4()}"
        a, b = _sid(), _sid()
        first = await store.append(a, [Deposited(1, "EUR")], metadata=Metadata(correlation))
        cause = str((await store.read_stream(a))[0].id)
        await store.append(b, [Withdrawn(2), Withdrawn(3)], metadata=Metadata(correlation, cause))
        await store.append(a, [Withdrawn(9)], metadata=Metadata("another-correlation"))
        found = await store.correlated(correlation)
        assert [(e.stream_id, e.version) for e in found] == [(a, 1), (b, 1), (b, 2)]
        assert found[0].position == first.position and found[0].id == cause
        assert [e.causation_id for e in found[1:]] == [cause, cause]
        assert found[1].data == {"amount": 2}
        assert [e.stream_id for e in await store.correlated(correlation, limit=1)] == [a]
        assert await store.correlated("no-such-correlation") == []
        with pytest.raises(InvalidInputError):
            await store.correlated("")

    async def test_an_inspected_stream_shows_personal_data_decrypted_hidden_or_forgotten(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        holder = f"holder-{uuid.uuid4()}"
        await store.append(sid, [Opened(holder, "Ada Lovelace", NOW), Renamed("Ada King", "n")])
        opened, renamed = await store.inspect_stream(sid)
        assert opened.data["holder"] == "Ada Lovelace" and opened.personal == {"holder": "shown"}
        assert renamed.data == {"name": "Ada King", "note": "n"}
        assert opened.type == "contract.opened" and opened.version == 1
        hidden, _ = await store.inspect_stream(sid, decrypt=False)
        assert hidden.personal == {"holder": "hidden"}
        assert hidden.data["holder"] == "[encrypted]"
        await store.forget(holder)
        for decrypt in (True, False):
            gone, kept = await store.inspect_stream(sid, decrypt=decrypt)
            assert gone.personal == {"holder": "forgotten"}
            assert "$enc" not in str(gone.data) and "Ada Lovelace" not in str(gone.data)
            assert kept.personal == {"name": "shown" if decrypt else "hidden"}
        [second] = await store.inspect_stream(sid, 2, limit=1)
        assert second.version == 2

    async def test_personal_data_for_a_forgotten_subject_is_refused_and_nothing_is_written(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        holder = f"holder-{uuid.uuid4()}"
        await store.append(sid, [Opened(holder, "Grace Hopper", NOW)])
        await store.forget(holder)
        head = await store.head_position()
        with pytest.raises(SubjectForgottenError) as caught:
            await store.append(sid, [Withdrawn(1), Opened(holder, "Grace Murray", NOW)])
        assert caught.value.subject == holder
        assert holder in str(caught.value)
        assert await store.stream_version(sid) == 1
        assert await store.head_position() == head
        # The old events still read, as placeholders: no new key was made for the subject.
        [opened] = await store.read_stream(sid)
        assert opened.event == Opened(holder, "[forgotten]", NOW)
        # Events without personal data of that subject are taken as before.
        await store.append(sid, [Withdrawn(1), Renamed("Someone Else")], expected=1)
        assert (await store.read_stream(sid))[-1].event == Renamed("Someone Else")

    async def test_a_subject_forgotten_before_their_first_event_is_refused_too(
        self, store: BaseEventStore
    ) -> None:
        holder = f"holder-{uuid.uuid4()}"
        await store.forget(holder)
        await store.forget(holder)
        with pytest.raises(SubjectForgottenError):
            await store.append(_sid(), [Opened(holder, "Hedy Lamarr", NOW)])

    async def test_an_append_sealed_before_a_forget_that_commits_first_is_refused(
        self, store: BaseEventStore
    ) -> None:
        # The append took the subject's key, then the subject was forgotten before it
        # committed: it must not land with data sealed by a key that no longer exists.
        sid = _sid()
        holder = f"holder-{uuid.uuid4()}"
        await store.append(_sid(), [Opened(holder, "Radia Perlman", NOW)])
        request = await store.prepare(sid, [Opened(holder, "Radia J. Perlman", NOW)])
        await store.forget(holder)
        with pytest.raises(SubjectForgottenError):
            await store._append(request)
        assert await store.stream_version(sid) == 0

    async def test_forgetting_drops_the_snapshots_that_hold_the_subjects_data(
        self, store: BaseEventStore
    ) -> None:
        repo = Repository(store, Account, snapshot_every=2)
        holder = f"holder-{uuid.uuid4()}"
        account = Account.open(_sid(), holder, "Katherine Johnson")
        account.deposit(10)
        await repo.save(account)
        sid = repo.stream_id(account.id)
        snapshot = await store.load_snapshot(sid)
        assert snapshot is not None and holder in snapshot.subjects
        bystander = Account.open(_sid(), f"holder-{uuid.uuid4()}", "Dorothy Vaughan")
        bystander.deposit(1)
        await repo.save(bystander)
        await store.forget(holder)
        assert await store.load_snapshot(sid) is None
        assert await store.load_snapshot(repo.stream_id(bystander.id)) is not None
        reloaded = await repo.load(account.id)
        assert reloaded.holder == "[forgotten]"
        assert reloaded.balance == 10

    async def test_appending_a_forgetting_event_forgets_its_subject_in_the_same_append(
        self, store: BaseEventStore
    ) -> None:
        repo = Repository(store, Account, snapshot_every=2)
        holder = f"holder-{uuid.uuid4()}"
        account = Account.open(_sid(), holder, "Mary Jackson")
        account.deposit(10)
        await repo.save(account)
        sid = repo.stream_id(account.id)
        assert await store.load_snapshot(sid) is not None
        result = await store.append(sid, [Withdrawn(1), HolderForgotten(holder)], expected=2)
        assert result.version == 4
        records = await store.read_stream(sid)
        assert records[0].event == Opened(holder, "[forgotten]", NOW)
        assert records[-1].event == HolderForgotten(holder)
        assert await store.load_snapshot(sid) is None
        with pytest.raises(SubjectForgottenError):
            await store.append(sid, [Opened(holder, "M. Jackson", NOW)], expected=4)
        with pytest.raises(SubjectForgottenError):
            await store.append(_sid(), [Opened(holder, "Mary Winston", NOW)])
        # Personal data before the forgetting event, in the same append, is forgotten too;
        # after it, it is refused.
        other = f"holder-{uuid.uuid4()}"
        both = _sid()
        await store.append(both, [Opened(other, "Annie Easley", NOW), HolderForgotten(other)])
        assert (await store.read_stream(both))[0].event == Opened(other, "[forgotten]", NOW)
        late = f"holder-{uuid.uuid4()}"
        with pytest.raises(SubjectForgottenError):
            await store.append(_sid(), [HolderForgotten(late), Opened(late, "Too Late", NOW)])
        assert await store.check_forgetting() == []

    async def test_a_forgetting_append_that_fails_forgets_nothing(
        self, store: BaseEventStore
    ) -> None:
        holder = f"holder-{uuid.uuid4()}"
        sid = _sid()
        await store.append(sid, [Opened(holder, "Christine Darden", NOW)])

        async def refuse(conn: object, events: list[RecordedEvent]) -> None:
            if any(isinstance(r.event, HolderForgotten) for r in events):
                raise RuntimeError("the outbox is full")

        store.add_append_hook(refuse)
        try:
            with pytest.raises(RuntimeError, match="outbox is full"):
                await store.append(sid, [HolderForgotten(holder)], expected=1)
        finally:
            store.remove_append_hook(refuse)
        with pytest.raises(ConcurrencyError):
            await store.append(sid, [HolderForgotten(holder)], expected=7)
        # Shared commits: the forgetting append loses its version check among others.
        outcomes = await asyncio.gather(
            *(store.append(_sid(), [Withdrawn(1)]) for _ in range(3)),
            store.append(sid, [Withdrawn(1), HolderForgotten(holder)], expected=5),
            *(store.append(_sid(), [Withdrawn(1)]) for _ in range(3)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[3], ConcurrencyError)
        assert await store.stream_version(sid) == 1
        [opened] = await store.read_stream(sid)
        assert opened.event == Opened(holder, "Christine Darden", NOW)
        await store.append(sid, [Renamed("C. Darden")], expected=1)
        assert await store.check_forgetting() == []

    async def test_the_check_finds_a_subject_left_half_forgotten_and_repair_forgets_them(
        self, store: BaseEventStore
    ) -> None:
        repo = Repository(store, Account, snapshot_every=1)
        holder, bystander = f"holder-{uuid.uuid4()}", f"holder-{uuid.uuid4()}"
        account = Account.open(_sid(), holder, "Evelyn Boyd")
        await repo.save(account)
        sid, elsewhere = repo.stream_id(account.id), _sid()
        await store.append(elsewhere, [Opened(bystander, "Gladys West", NOW)])
        # The old two-step path: the forgetting event is stored, the forget never ran.
        await store.with_types(TWO_STEP_TYPES).append(sid, [HolderForgottenBefore(holder)])
        done = f"holder-{uuid.uuid4()}"
        await store.append(_sid(), [Opened(done, "Melba Mouton", NOW), HolderForgotten(done)])
        assert await store.check_forgetting() == [holder]
        assert (await store.read_stream(sid))[0].event == Opened(holder, "Evelyn Boyd", NOW)
        assert await store.check_forgetting(repair=True) == [holder]
        assert (await store.read_stream(sid))[0].event == Opened(holder, "[forgotten]", NOW)
        assert await store.load_snapshot(sid) is None
        assert await store.check_forgetting() == []
        with pytest.raises(SubjectForgottenError):
            await store.append(sid, [Opened(holder, "E. Boyd", NOW)])
        [kept] = await store.read_stream(elsewhere)
        assert kept.event == Opened(bystander, "Gladys West", NOW)

    async def test_a_snapshot_of_a_forgotten_subjects_data_is_not_stored(
        self, store: BaseEventStore
    ) -> None:
        holder = f"holder-{uuid.uuid4()}"
        sid = _sid()
        await store.forget(holder)
        await store.save_snapshot(Snapshot(sid, 1, "s1", b"Vera Rubin", (holder,)))
        assert await store.load_snapshot(sid) is None
        await store.save_snapshot(Snapshot(sid, 1, "s1", b"nobody", ()))
        assert await store.load_snapshot(sid) is not None

    # -- snapshots ---------------------------------------------------------------------

    async def test_snapshots_are_kept_per_version_and_the_latest_fitting_one_loads(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        assert await store.load_snapshot(sid) is None
        for version in (3, 6):
            await store.save_snapshot(
                Snapshot(sid, version, "s1", f"state{version}".encode(), ("x",))
            )
        latest = await store.load_snapshot(sid)
        assert latest == Snapshot(sid, 6, "s1", b"state6", ("x",))
        older = await store.load_snapshot(sid, max_version=5)
        assert older is not None and older.version == 3
        assert await store.load_snapshot(sid, max_version=2) is None
        await store.save_snapshot(Snapshot(sid, 6, "s2", b"again", ()))
        replaced = await store.load_snapshot(sid)
        assert replaced == Snapshot(sid, 6, "s2", b"again", ())

    # -- concurrency -------------------------------------------------------------------

    async def test_concurrent_appends_to_distinct_streams_all_land(
        self, store: BaseEventStore
    ) -> None:
        start = await store.head_position()
        streams = [_sid() for _ in range(40)]

        async def write(sid: str) -> None:
            await store.append(sid, [Withdrawn(1)], expected=ExpectedVersion.NO_STREAM)
            await store.append(sid, [Withdrawn(2), Withdrawn(3)], expected=1)

        await asyncio.gather(*(write(s) for s in streams))
        records = await store.read_all(start, limit=1000)
        assert len(records) == 120
        assert [r.position for r in records] == sorted({r.position for r in records})
        for sid in streams:
            assert [r.version for r in records if r.stream_id == sid] == [1, 2, 3]

    async def test_concurrent_appends_expecting_the_same_version_let_exactly_one_win(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        outcomes = await asyncio.gather(
            *(store.append(sid, [Withdrawn(i), Withdrawn(i)], expected=0) for i in range(10)),
            return_exceptions=True,
        )
        wins = [o for o in outcomes if not isinstance(o, BaseException)]
        losses = [o for o in outcomes if isinstance(o, ConcurrencyError)]
        assert len(wins) == 1 and len(losses) == 9
        assert all(loss.actual == 2 for loss in losses)
        assert [r.version for r in await store.read_stream(sid)] == [1, 2]

    async def test_one_bad_append_in_a_shared_commit_leaves_the_others_written(
        self, store: BaseEventStore
    ) -> None:
        taken = uuid.uuid4()
        await store.append(_sid(), [NewEvent(Withdrawn(0), id=taken)])
        good = [_sid() for _ in range(6)]
        bad = _sid()
        outcomes = await asyncio.gather(
            *(store.append(s, [Withdrawn(1)]) for s in good[:3]),
            store.append(bad, [Withdrawn(1), NewEvent(Withdrawn(2), id=taken)]),
            *(store.append(s, [Withdrawn(1)]) for s in good[3:]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[3], DuplicateEventError)
        assert not any(isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 3)
        assert await store.stream_version(bad) == 0
        for sid in good:
            assert await store.stream_version(sid) == 1

    async def test_a_single_event_reusing_an_id_in_a_shared_commit_fails_alone(
        self, store: BaseEventStore
    ) -> None:
        taken = uuid.uuid4()
        await store.append(_sid(), [NewEvent(Withdrawn(0), id=taken)])
        streams = [_sid() for _ in range(5)]
        outcomes = await asyncio.gather(
            store.append(streams[0], [Withdrawn(1)]),
            store.append(streams[1], [NewEvent(Withdrawn(1), id=taken)]),
            store.append(streams[2], [Withdrawn(1)], expected=7),
            *(store.append(s, [Withdrawn(1)]) for s in streams[3:]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], DuplicateEventError)
        assert isinstance(outcomes[2], ConcurrencyError)
        assert [await store.stream_version(s) for s in streams] == [1, 0, 0, 1, 1]

    async def test_an_append_whose_hook_raises_fails_alone_among_twenty_concurrent_ones(
        self, store: BaseEventStore
    ) -> None:
        culprit = _sid()

        async def refuse(conn: object, events: list[RecordedEvent]) -> None:
            if events[0].stream_id == culprit:
                raise RuntimeError(f"the hook refuses {culprit}")

        start = await store.head_position()
        store.add_append_hook(refuse)
        try:
            streams, outcomes = await _twenty_appends(store, culprit)
        finally:
            store.remove_append_hook(refuse)
        failed = await _only_the_culprit_failed(store, start, streams, outcomes)
        assert isinstance(failed, RuntimeError) and culprit in str(failed)

    async def test_eight_writers_on_one_stream_with_retries_lose_no_update(
        self, store: BaseEventStore
    ) -> None:
        repo = Repository(store, Account)
        account = Account.open(_sid(), "h", "Holder")
        await repo.save(account)
        per_writer = 10

        async def writer(n: int) -> None:
            for _ in range(per_writer):
                await repo.execute(account.id, lambda a: a.deposit(n), retries=200)

        await asyncio.gather(*(writer(n) for n in range(1, 9)))
        final = await repo.load(account.id)
        assert final.version == 1 + 8 * per_writer
        assert final.balance == per_writer * sum(range(1, 9))
        versions = [r.version for r in await store.read_stream(repo.stream_id(account.id))]
        assert versions == list(range(1, 82))

    # -- repositories ------------------------------------------------------------------

    async def test_a_repository_loads_as_of_a_version_and_a_time(
        self, store: BaseEventStore
    ) -> None:
        repo = Repository(store, Account, prefix="account-")
        account = Account.open(str(uuid.uuid4()), "h", "Holder")
        await repo.save(account)
        for amount in (10, 20, 30):
            await repo.execute(account.id, lambda a, amount=amount: a.deposit(amount))  # type: ignore[misc]
        assert (await repo.load(account.id)).balance == 60
        assert (await repo.load(account.id, version=2)).balance == 10
        records = await store.read_stream(repo.stream_id(account.id))
        as_of = await repo.load(account.id, at=records[2].recorded_at)
        assert (as_of.version, as_of.balance) == (3, 30)
        with pytest.raises(StreamNotFoundError):
            await repo.load(account.id, at=records[0].recorded_at - timedelta(days=1))
        with pytest.raises(StreamNotFoundError, match="has 4 events"):
            await repo.load(account.id, version=9)
        with pytest.raises(StreamNotFoundError):
            await repo.load("nobody")

    async def test_loading_events_gives_what_a_stream_read_gives_without_the_records(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        holder = f"holder-{uuid.uuid4()}"
        await store.with_types(V1_TYPES).append(sid, [DepositedV1(7)])
        await store.append(sid, [Opened(holder, "Ada Lovelace", NOW), Deposited(2, "USD")])
        await store.append(sid, [Renamed("Ada King", "wed")], expected=3)
        read = [r.event for r in await store.read_stream(sid)]
        assert read[0] == Deposited(7, "EUR")  # upcast
        assert await store.load_events(sid) == (read, 4)
        assert await store.load_events(sid, 2, 3) == (read[1:3], 3)
        assert await store.load_events(sid, 5) == ([], 0)
        assert await store.load_events(_sid()) == ([], 0)
        await store.forget(holder)
        events, version = await store.load_events(sid)
        assert (events[1], version) == (Opened(holder, "[forgotten]", NOW), 4)
        with pytest.raises(InvalidInputError):
            await store.load_events(sid, 0)
        with pytest.raises(InvalidInputError):
            await store.load_events("")
        await self.corrupt(store, sid, 3, b"{broken")
        with pytest.raises(CorruptEventError, match="version 3: "):
            await store.load_events(sid)

    async def test_a_snapshot_spares_the_replay_and_a_changed_shape_ignores_it(
        self, store: BaseEventStore
    ) -> None:
        repo = Repository(store, Account, snapshot_every=5)
        account = Account.open(_sid(), "h", "Holder")
        for _ in range(6):
            account.deposit(1)
        await repo.save(account)
        sid = repo.stream_id(account.id)
        snapshot = await store.load_snapshot(sid)
        assert snapshot is not None and snapshot.version == 7
        # Damage an event the snapshot covers: a load that uses the snapshot never reads it.
        await self.corrupt(store, sid, 3, b"{broken")
        loaded = await repo.load(account.id)
        assert (loaded.version, loaded.balance, loaded.holder) == (7, 6, "Holder")

        class AccountV2(Account):
            snapshot_version: ClassVar[int] = 2

        changed = Repository(store, AccountV2, snapshot_every=5)
        with pytest.raises(CorruptEventError):
            await changed.load(account.id)


class DurableEventStoreContract(EventStoreContract):
    """The contract plus durability, for adapters that keep events across restarts.

    Its subclasses also say how to make the database itself refuse a write, which the
    tests of failure isolation need.
    """

    async def refuse_in_database(self, store: BaseEventStore, stream_id: str) -> None:
        """Make the database refuse (a trigger raising) every event of ``stream_id``."""
        raise NotImplementedError

    #: what the error of ``fail_in_database``'s statement says
    failed_statement_says: ClassVar[str] = "refused by the test"

    async def fail_in_database(self, conn: Any) -> None:
        """Run a statement the database refuses on an append's connection (from a hook)."""
        raise NotImplementedError

    @pytest.mark.parametrize("hooked", [False, True], ids=["plain", "with-a-hook"])
    async def test_an_append_the_database_refuses_fails_alone_among_twenty_concurrent_ones(
        self, store: BaseEventStore, hooked: bool
    ) -> None:
        culprit = _sid()
        await self.refuse_in_database(store, culprit)
        start = await store.head_position()
        seen: list[str] = []

        async def note(conn: object, events: list[RecordedEvent]) -> None:
            seen.append(events[0].stream_id)

        if hooked:
            store.add_append_hook(note)
        try:
            streams, outcomes = await _twenty_appends(store, culprit)
        finally:
            store.remove_append_hook(note)
        failed = await _only_the_culprit_failed(store, start, streams, outcomes)
        assert isinstance(failed, EventStoreError)
        assert "refused by the test" in str(failed)
        if hooked:
            assert set(streams) - {culprit} <= set(seen)

    async def test_an_append_whose_hook_fails_in_the_database_fails_alone(
        self, store: BaseEventStore
    ) -> None:
        culprit = _sid()

        async def refuse(conn: object, events: list[RecordedEvent]) -> None:
            if events[0].stream_id == culprit:
                await self.fail_in_database(conn)

        start = await store.head_position()
        store.add_append_hook(refuse)
        try:
            streams, outcomes = await _twenty_appends(store, culprit)
        finally:
            store.remove_append_hook(refuse)
        failed = await _only_the_culprit_failed(store, start, streams, outcomes)
        assert isinstance(failed, EventStoreError)
        assert self.failed_statement_says in str(failed)

    async def test_events_survive_closing_and_reopening(self, store: BaseEventStore) -> None:
        sid = _sid()
        await store.append(sid, [Withdrawn(1), Withdrawn(2)])
        head = await store.head_position()
        reopened = await self.reopen(store)
        try:
            assert [r.event for r in await reopened.read_stream(sid)] == [
                Withdrawn(1),
                Withdrawn(2),
            ]
            assert await reopened.head_position() == head
            result = await reopened.append(sid, [Withdrawn(3)], expected=2)
            assert result.position > head
        finally:
            await reopened.close()
