"""The contract every message storage passes (outbox, relay leadership, inbox, dead letters).

An adapter's test module subclasses ``MessageStorageContract`` and provides the
``database`` fixture: an empty database, whose event store and message storage
(``Database.messages()``) the tests use. The outbox rows and inbox marks are written the
way the outbox and the consumers write them: by append hooks, on the append's
connection, so that they commit (or roll back) with the append.

``SharedMessageStorageContract`` adds what a database that several processes open
(SQLite's file, a PostgreSQL schema) must do: one relay leader among all of them, taken
over when the leader's process dies, and one winner when two of them mark one message.
Its subclass sets ``self.url`` in its ``database`` fixture; ``open_again`` opens that
URL once more, as another replica would, and ``hold_leadership_elsewhere`` starts a
process that takes the relay leadership there (override either for a database that
``chronik.adapters.open_database`` cannot open).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chronik.adapters.port import Database
from chronik.errors import DuplicateMessageError
from chronik.eventstore import AppendResult, BaseEventStore, RecordedEvent
from chronik.eventstore.base import AppendHook
from chronik.messaging.port import DeadLetter, MessageStorage, OutboxRow, OutboxStatus
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Deposited, Withdrawn

__all__ = ["MessageStorageContract", "SharedMessageStorageContract", "eventually"]

CONSUMER = "ledger"
#: how long a test waits for something that should happen (a generous cap, not a speed)
PATIENCE = 30.0


def _sid() -> str:
    return f"acc-{uuid.uuid4()}"


def _mid() -> str:
    return str(uuid.uuid4())


def _body(recorded: RecordedEvent) -> bytes:
    # Bytes that are not text: a body is stored as it is, never decoded.
    return b"\x00\xff" + f"{recorded.stream_id}/{recorded.version}".encode()


def row_of(recorded: RecordedEvent) -> OutboxRow:
    """The outbox row the contract writes for an event."""
    return OutboxRow(
        recorded.position, str(recorded.id), recorded.stream_id, recorded.type, _body(recorded)
    )


def outbox_hook(
    storage: MessageStorage, keep: Callable[[RecordedEvent], bool] = lambda _: True
) -> AppendHook:
    """An append hook that writes a row for each event ``keep`` takes, as the outbox does."""

    async def hook(conn: Any, events: list[RecordedEvent]) -> Callable[[], None] | None:
        rows = [row_of(e) for e in events if keep(e)]
        return await storage.add_outbox(conn, rows) if rows else None

    return hook


def inbox_hook(storage: MessageStorage, marks: Mapping[str, str]) -> AppendHook:
    """An append hook that marks message ``marks[stream]`` handled, as a consumer does."""

    async def hook(conn: Any, events: list[RecordedEvent]) -> Callable[[], None] | None:
        message_id = marks.get(events[0].stream_id)
        if message_id is None:
            return None
        return await storage.mark_handled(conn, CONSUMER, message_id)

    return hook


def refusing(streams: set[str]) -> AppendHook:
    """An append hook that fails the appends to ``streams`` after the hooks before it ran."""

    async def hook(conn: Any, events: list[RecordedEvent]) -> None:
        if events[0].stream_id in streams:
            raise RuntimeError(f"the test refuses {events[0].stream_id}")

    return hook


@contextlib.contextmanager
def hooked(store: BaseEventStore, *hooks: AppendHook) -> Iterator[None]:
    """Run ``hooks`` in every append of ``store`` for the block, in this order."""
    for hook in hooks:
        store.add_append_hook(hook)
    try:
        yield
    finally:
        for hook in hooks:
            store.remove_append_hook(hook)


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], found: Callable[[], str] = lambda: ""
) -> None:
    """Return once ``check`` holds; fail the test naming ``what`` after PATIENCE seconds.

    ``found`` says what there was instead, for the failure's message.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await check():
        if loop.time() > deadline:
            instead = found()
            pytest.fail(f"{what}: not within {PATIENCE:g} s" + (f"; {instead}" if instead else ""))
        await asyncio.sleep(0.02)


async def _leads(storage: MessageStorage) -> bool:
    """Whether ``storage`` could take the relay leadership now (released again at once)."""
    async with storage.relay_leadership() as leading:
        return leading


def _letter(consumer: str, message_id: str, at: datetime, error: str = "boom") -> DeadLetter:
    return DeadLetter(
        consumer, message_id, "bank.paid.v1", b"\x00{\xff}", f"ValueError: {error}", 5, at
    )


T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


class MessageStorageContract:
    """Behaviour every message storage must have. Subclass it per adapter."""

    @pytest.fixture
    async def database(self) -> Database:
        """An empty database; each adapter's subclass overrides this fixture (and closes it)."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, database: Database) -> BaseEventStore:
        """The database's event store, with the contract's event types."""
        return database.event_store(CONTRACT_TYPES)

    @pytest.fixture
    async def storage(self, database: Database) -> MessageStorage:
        """The database's message storage, its tables set up."""
        storage = database.messages()
        await storage.setup()
        return storage

    async def test_setting_up_again_keeps_what_is_stored(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        with hooked(store, outbox_hook(storage)):
            await store.append(_sid(), [Withdrawn(1)])
        await storage.record_handled(CONSUMER, "m-1")
        rows = await storage.pending(100)
        await storage.setup()
        assert await storage.pending(100) == rows
        assert await storage.handled(CONSUMER, "m-1")

    # -- the outbox --------------------------------------------------------------------

    async def test_outbox_rows_written_in_an_append_are_pending_once_it_returns(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        sid = _sid()
        with hooked(store, outbox_hook(storage)):
            await store.append(sid, [Withdrawn(1), Withdrawn(2), Deposited(3, "EUR")])
        recorded = await store.read_stream(sid)
        assert await storage.pending(100) == [row_of(r) for r in recorded]
        assert [r.position for r in recorded] == sorted(r.position for r in recorded)

    async def test_an_append_that_fails_after_writing_outbox_rows_leaves_none(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        sid = _sid()
        with hooked(store, outbox_hook(storage), refusing({sid})), pytest.raises(RuntimeError):
            await store.append(sid, [Withdrawn(1), Withdrawn(2)])
        assert await store.stream_version(sid) == 0
        assert await storage.pending(100) == []
        assert await storage.outbox_status() == OutboxStatus(0, None, 0)

    async def test_in_a_shared_commit_only_the_failing_appends_rows_are_undone(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        streams = [_sid() for _ in range(20)]
        culprit = streams[10]
        with hooked(store, outbox_hook(storage), refusing({culprit})):
            # Started together: the store commits them in one or two shared commits.
            outcomes = await asyncio.gather(
                *(store.append(s, [Withdrawn(1), Withdrawn(2)]) for s in streams),
                return_exceptions=True,
            )
        assert isinstance(outcomes[10], RuntimeError)
        assert not [o for i, o in enumerate(outcomes) if i != 10 and isinstance(o, BaseException)]
        written = [r for s in streams if s != culprit for r in await store.read_stream(s)]
        expected = sorted(map(row_of, written), key=lambda row: row.position)
        assert await storage.pending(100) == expected

    async def test_pending_rows_come_in_position_order_and_page_after_a_position(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        # Only deposits leave: the outbox's positions have gaps, as a real outbox's have.
        with hooked(store, outbox_hook(storage, lambda r: isinstance(r.event, Deposited))):
            for i in range(5):
                await store.append(_sid(), [Withdrawn(i), Deposited(i, "EUR"), Deposited(i, "USD")])
        rows = await storage.pending(100)
        assert len(rows) == 10
        assert [r.position for r in rows] == sorted({r.position for r in rows})
        first = await storage.pending(4)
        assert first == rows[:4]
        assert await storage.pending(4, after=first[-1].position) == rows[4:8]
        assert await storage.pending(4, after=rows[7].position) == rows[8:]
        assert await storage.pending(4, after=rows[-1].position) == []
        # ``after`` a position without a row (a withdrawal's): the next row on.
        assert rows[2].position - rows[1].position == 2
        assert await storage.pending(1, after=rows[1].position + 1) == rows[2:3]

    async def test_published_rows_are_not_pending_and_count_as_published(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        with hooked(store, outbox_hook(storage)):
            for _ in range(3):
                await store.append(_sid(), [Withdrawn(1), Withdrawn(2)])
        rows = await storage.pending(100)
        await storage.mark_published([rows[0].position, rows[3].position])
        assert await storage.pending(100) == [rows[1], rows[2], rows[4], rows[5]]
        status = await storage.outbox_status()
        assert (status.pending, status.published) == (4, 2)
        await storage.mark_published([r.position for r in rows])
        assert await storage.pending(100) == []
        assert await storage.outbox_status() == OutboxStatus(0, None, 6)

    async def test_the_oldest_pending_row_dates_from_its_append(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        assert await storage.outbox_status() == OutboxStatus(0, None, 0)
        before = datetime.now(UTC)
        with hooked(store, outbox_hook(storage)):
            await store.append(_sid(), [Withdrawn(1)])
            first = await storage.outbox_status()
            await store.append(_sid(), [Withdrawn(2)])
        oldest = first.oldest_pending
        assert oldest is not None and oldest.utcoffset() is not None, "a time with its zone"
        # The database's clock, not this process's: a minute's leeway either side.
        assert before - timedelta(minutes=1) <= oldest <= datetime.now(UTC) + timedelta(minutes=1)
        assert (await storage.outbox_status()).oldest_pending == oldest
        rows = await storage.pending(100)
        await storage.mark_published([rows[0].position])
        second = await storage.outbox_status()
        assert second.oldest_pending is not None and second.oldest_pending >= oldest
        assert (second.pending, second.published) == (1, 1)

    async def test_purging_drops_published_rows_older_than_the_age_given_and_nothing_else(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        with hooked(store, outbox_hook(storage)):
            await store.append(_sid(), [Withdrawn(1), Withdrawn(2), Withdrawn(3), Withdrawn(4)])
        rows = await storage.pending(100)
        await storage.mark_published([rows[0].position, rows[2].position])
        marked = datetime.now(UTC)
        assert await storage.purge_published(3600) == 0  # published just now: kept
        status = await storage.outbox_status()
        assert (status.pending, status.published) == (2, 2)

        async def the_clock_moved_on() -> bool:
            return datetime.now(UTC) > marked + timedelta(milliseconds=20)

        await eventually("the clock to move on", the_clock_moved_on)
        assert await storage.purge_published(0) == 2
        assert await storage.pending(100) == [rows[1], rows[3]]
        status = await storage.outbox_status()
        assert (status.pending, status.published) == (2, 0)
        assert await storage.purge_published(0) == 0

    # -- the relay's leadership --------------------------------------------------------

    async def test_one_contender_at_a_time_holds_the_relay_leadership(
        self, storage: MessageStorage
    ) -> None:
        async with storage.relay_leadership() as first:
            assert first is True
            async with storage.relay_leadership() as second:
                assert second is False, "two relays of one outbox at once"
            assert await _leads(storage) is False
        assert await _leads(storage) is True, "the leadership was not released on exit"

    async def test_a_leader_that_fails_releases_the_leadership(
        self, storage: MessageStorage
    ) -> None:
        async def relay() -> None:
            async with storage.relay_leadership() as leading:
                assert leading
                raise RuntimeError("the relay broke")

        with pytest.raises(RuntimeError, match="the relay broke"):
            await relay()
        assert await _leads(storage) is True

    async def test_contenders_take_turns_as_each_leader_leaves(
        self, storage: MessageStorage
    ) -> None:
        leaves = asyncio.Event()
        turns: list[str] = []
        tries: Counter[str] = Counter()

        async def contend(name: str) -> None:
            while True:
                tries[name] += 1
                async with storage.relay_leadership() as leading:
                    if leading:
                        turns.append(name)
                        await leaves.wait()
                        return
                await asyncio.sleep(0.01)

        first = asyncio.create_task(contend("first"))

        async def first_leads() -> bool:
            return turns == ["first"]

        await eventually("the first contender to lead", first_leads)
        second = asyncio.create_task(contend("second"))

        async def second_stood_by() -> bool:
            return tries["second"] >= 3 or len(turns) > 1

        await eventually("the second contender to try", second_stood_by)
        assert turns == ["first"], "the second led while the first held the leadership"
        leaves.set()
        await asyncio.wait_for(asyncio.gather(first, second), PATIENCE)
        assert turns == ["first", "second"]

    # -- the inbox ---------------------------------------------------------------------

    async def test_a_mark_commits_with_its_effect_and_a_second_mark_fails_with_its_effect(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        message, effect, again = _mid(), _sid(), _sid()
        assert await storage.handled(CONSUMER, message) is False
        with hooked(store, inbox_hook(storage, {effect: message, again: message})):
            await store.append(effect, [Withdrawn(1)])
            assert await storage.handled(CONSUMER, message) is True
            with pytest.raises(DuplicateMessageError):
                await store.append(again, [Withdrawn(1), Withdrawn(2)])
        assert await store.stream_version(effect) == 1
        assert await store.stream_version(again) == 0, "the duplicate's effect was committed"

    async def test_a_mark_whose_append_fails_is_not_kept(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        message, sid = _mid(), _sid()
        marks = inbox_hook(storage, {sid: message})
        with hooked(store, marks, refusing({sid})), pytest.raises(RuntimeError):
            await store.append(sid, [Withdrawn(1)])
        assert await storage.handled(CONSUMER, message) is False
        with hooked(store, marks):  # delivered again, it takes effect this time
            await store.append(sid, [Withdrawn(1)])
        assert await storage.handled(CONSUMER, message) is True
        assert await store.stream_version(sid) == 1

    async def test_a_mark_and_an_outbox_row_commit_together_or_not_at_all(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        message, sid, other = _mid(), _sid(), _sid()
        marks = inbox_hook(storage, {sid: message, other: message})
        with hooked(store, marks, outbox_hook(storage)):
            await store.append(sid, [Withdrawn(1)])
            with pytest.raises(DuplicateMessageError):
                await store.append(other, [Withdrawn(1)])
        assert [r.stream_id for r in await storage.pending(100)] == [sid]

    async def test_handled_marks_are_kept_per_consumer(self, storage: MessageStorage) -> None:
        message = _mid()
        assert await storage.record_handled(CONSUMER, message) is True
        assert await storage.handled(CONSUMER, message) is True
        assert await storage.handled("audit", message) is False
        assert await storage.record_handled("audit", message) is True

    async def test_many_messages_are_checked_at_once_per_consumer(
        self, storage: MessageStorage
    ) -> None:
        handled, other, fresh = _mid(), _mid(), _mid()
        assert await storage.record_handled(CONSUMER, handled) is True
        assert await storage.record_handled("audit", other) is True
        ids = [handled, other, fresh, handled]
        assert await storage.handled_among(CONSUMER, ids) == {handled}
        assert await storage.handled_among("audit", ids) == {other}
        assert await storage.handled_among(CONSUMER, []) == set()
        many = [_mid() for _ in range(1200)]  # more than a statement's parameters in SQLite
        assert await storage.handled_among(CONSUMER, [*many, handled]) == {handled}

    async def test_recording_a_message_handled_says_whether_it_was_new(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        message = _mid()
        assert await storage.record_handled(CONSUMER, message) is True
        assert await storage.record_handled(CONSUMER, message) is False
        sid = _sid()
        with (
            hooked(store, inbox_hook(storage, {sid: message})),
            pytest.raises(DuplicateMessageError),
        ):
            await store.append(sid, [Withdrawn(1)])
        marked, effect = _mid(), _sid()
        with hooked(store, inbox_hook(storage, {effect: marked})):
            await store.append(effect, [Withdrawn(1)])
        assert await storage.record_handled(CONSUMER, marked) is False

    async def test_two_concurrent_marks_of_one_message_let_exactly_one_effect_commit(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        message = _mid()
        streams = [_sid() for _ in range(6)]
        marks = dict.fromkeys(streams[:2], message) | {s: _mid() for s in streams[2:]}
        with hooked(store, inbox_hook(storage, marks)):
            outcomes = await asyncio.gather(
                *(store.append(s, [Withdrawn(1)]) for s in streams), return_exceptions=True
            )
        _exactly_one_won(outcomes[:2])
        assert all(isinstance(o, AppendResult) for o in outcomes[2:]), outcomes[2:]
        versions = [await store.stream_version(s) for s in streams]
        assert sorted(versions[:2]) == [0, 1] and versions[2:] == [1, 1, 1, 1]

    async def test_two_concurrent_records_of_one_message_let_exactly_one_say_new(
        self, storage: MessageStorage
    ) -> None:
        message = _mid()
        outcomes = await asyncio.gather(*(storage.record_handled(CONSUMER, message) for _ in "ab"))
        assert sorted(outcomes) == [False, True]

    # -- dead letters ------------------------------------------------------------------

    async def test_a_dead_letter_is_kept_as_it_was_given_and_counts_as_handled(
        self, storage: MessageStorage
    ) -> None:
        letter = _letter(CONSUMER, _mid(), T0)
        await storage.add_dead_letter(letter)
        assert await storage.dead_letters(CONSUMER) == [letter]
        assert await storage.handled(CONSUMER, letter.message_id) is True
        assert await storage.record_handled(CONSUMER, letter.message_id) is False

    async def test_a_message_already_handled_can_still_be_buried(
        self, storage: MessageStorage
    ) -> None:
        letter = _letter(CONSUMER, _mid(), T0)
        await storage.record_handled(CONSUMER, letter.message_id)
        await storage.add_dead_letter(letter)
        assert await storage.dead_letters() == [letter]

    async def test_dead_letters_are_listed_oldest_first_and_by_consumer(
        self, storage: MessageStorage
    ) -> None:
        late = _letter(CONSUMER, _mid(), T0 + timedelta(minutes=2))
        early = _letter(CONSUMER, _mid(), T0)
        elsewhere = _letter("audit", _mid(), T0 + timedelta(minutes=1))
        for letter in (late, early, elsewhere):
            await storage.add_dead_letter(letter)
        assert await storage.dead_letters() == [early, elsewhere, late]
        assert await storage.dead_letters(CONSUMER) == [early, late]
        assert await storage.dead_letters("audit") == [elsewhere]
        assert await storage.dead_letters("nobody") == []

    async def test_a_letter_buried_again_replaces_the_earlier_one_and_its_request(
        self, storage: MessageStorage
    ) -> None:
        first = _letter(CONSUMER, _mid(), T0)
        await storage.add_dead_letter(first)
        assert await storage.request_redelivery(CONSUMER, first.message_id) is True
        again = _letter(CONSUMER, first.message_id, T0 + timedelta(hours=1), error="still")
        await storage.add_dead_letter(again)
        assert await storage.dead_letters() == [again]
        # A new failure: an operator asks again once it is fixed, rather than looping.
        assert await storage.requested_redeliveries(CONSUMER) == []

    async def test_a_redelivery_is_requested_only_for_a_dead_letter(
        self, storage: MessageStorage
    ) -> None:
        late = _letter(CONSUMER, _mid(), T0 + timedelta(minutes=1))
        early = _letter(CONSUMER, _mid(), T0)
        elsewhere = _letter("audit", _mid(), T0)
        for letter in (late, early, elsewhere):
            await storage.add_dead_letter(letter)
        assert await storage.request_redelivery(CONSUMER, _mid()) is False
        assert await storage.request_redelivery(CONSUMER, elsewhere.message_id) is False
        assert await storage.requested_redeliveries(CONSUMER) == []
        assert await storage.request_redelivery(CONSUMER, late.message_id) is True
        assert await storage.request_redelivery(CONSUMER, early.message_id) is True
        assert await storage.request_redelivery(CONSUMER, early.message_id) is True
        # The oldest letter first.
        assert await storage.requested_redeliveries(CONSUMER) == [
            early.message_id,
            late.message_id,
        ]
        assert await storage.requested_redeliveries("audit") == []

    async def test_removing_a_dead_letter_forgets_it_its_request_and_its_handled_mark(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        letter, kept = _letter(CONSUMER, _mid(), T0), _letter(CONSUMER, _mid(), T0)
        await storage.add_dead_letter(letter)
        await storage.add_dead_letter(kept)
        await storage.request_redelivery(CONSUMER, letter.message_id)
        await storage.remove_dead_letter(CONSUMER, letter.message_id)
        assert await storage.dead_letters() == [kept]
        assert await storage.requested_redeliveries(CONSUMER) == []
        assert await storage.handled(CONSUMER, letter.message_id) is False
        sid = _sid()  # redelivered, its effect can commit now
        with hooked(store, inbox_hook(storage, {sid: letter.message_id})):
            await store.append(sid, [Withdrawn(1)])
        assert await storage.handled(CONSUMER, kept.message_id) is True
        await storage.remove_dead_letter(CONSUMER, _mid())  # none such: nothing happens
        assert await storage.dead_letters() == [kept]


def _exactly_one_won(outcomes: list[AppendResult | BaseException]) -> None:
    won = [o for o in outcomes if isinstance(o, AppendResult)]
    lost = [o for o in outcomes if isinstance(o, DuplicateMessageError)]
    assert (len(won), len(lost)) == (1, 1), outcomes


#: run by ``hold_leadership_elsewhere``: take the relay leadership of the database at
#: argv[1], say whether it was taken, and hold it until killed
_HOLDER = """
import asyncio, sys
from chronik.adapters import open_database

async def hold(url):
    database = await open_database(url)
    async with database.messages().relay_leadership() as leading:
        print("leading" if leading else "standby", flush=True)
        await asyncio.Event().wait()

asyncio.run(hold(sys.argv[1]))
"""


class SharedMessageStorageContract(MessageStorageContract):
    """A database several processes open (its subclass sets ``self.url``): one outbox for all."""

    url: str

    async def open_again(self) -> Database:
        """The same database opened once more, as another replica would (closed by the test)."""
        from chronik.adapters import open_database

        return await open_database(self.url)

    @contextlib.asynccontextmanager
    async def hold_leadership_elsewhere(self) -> AsyncIterator[asyncio.subprocess.Process]:
        """A process that took the relay leadership of this database and holds it.

        The block may kill it (SIGKILL: no goodbye, as a crash); it is killed at the end.
        """
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLDER, self.url, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            said = await asyncio.wait_for(process.stdout.readline(), PATIENCE)
            assert said == b"leading\n", f"the other process said {said!r}"
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    @contextlib.asynccontextmanager
    async def _again(self) -> AsyncIterator[Database]:
        database = await self.open_again()
        try:
            yield database
        finally:
            await database.close()

    async def test_two_openings_of_one_database_have_one_relay_leader(
        self, storage: MessageStorage
    ) -> None:
        async with self._again() as other:
            elsewhere = other.messages()
            async with storage.relay_leadership() as leading:
                assert leading
                assert await _leads(elsewhere) is False, "two relays of one outbox at once"
            assert await _leads(elsewhere) is True
            async with elsewhere.relay_leadership() as leading:
                assert leading
                assert await _leads(storage) is False

    async def test_the_leadership_of_a_process_that_dies_passes_to_another(
        self, storage: MessageStorage
    ) -> None:
        async with self.hold_leadership_elsewhere() as holder:
            assert await _leads(storage) is False
            holder.kill()
            await holder.wait()

            async def taken_over() -> bool:
                return await _leads(storage)

            await eventually("the leadership to pass on after its holder died", taken_over)

    async def test_outbox_rows_one_opening_writes_are_pending_for_the_other(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        async with self._again() as other:
            sid = _sid()
            with hooked(store, outbox_hook(storage)):
                await store.append(sid, [Withdrawn(1), Withdrawn(2)])
            elsewhere = other.messages()
            rows = await elsewhere.pending(100)
            assert rows == [row_of(r) for r in await store.read_stream(sid)]
            await elsewhere.mark_published([rows[0].position])
            assert await storage.pending(100) == rows[1:]

    async def test_two_openings_marking_one_message_at_once_let_exactly_one_effect_commit(
        self, store: BaseEventStore, storage: MessageStorage
    ) -> None:
        async with self._again() as other:
            elsewhere = other.event_store(CONTRACT_TYPES)
            for _ in range(3):  # each round a new message: one winner each time
                message, here, there = _mid(), _sid(), _sid()
                with (
                    hooked(store, inbox_hook(storage, {here: message})),
                    hooked(elsewhere, inbox_hook(other.messages(), {there: message})),
                ):
                    outcomes = await asyncio.gather(
                        store.append(here, [Withdrawn(1)]),
                        elsewhere.append(there, [Withdrawn(1)]),
                        return_exceptions=True,
                    )
                _exactly_one_won(list(outcomes))
                versions = [await store.stream_version(s) for s in (here, there)]
                assert sorted(versions) == [0, 1]
