"""The contract every projection backend passes, written once.

An adapter's test module subclasses ``ProjectionContract`` (and
``InlineProjectionContract``) and provides the ``database`` fixture: an empty database,
whose event store and projection backend the tests use. Every test here then runs the
engine and the read models on that backend.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from chronik.adapters.port import Database
from chronik.domain import event
from chronik.eventstore import BaseEventStore, EventTypes, Metadata
from chronik.projections import (
    InlineProjections,
    Projection,
    ProjectionEngine,
    ReadModelTx,
    handles,
)
from chronik.projections.port import ProjectionBackend
from chronik.testing.eventstore_contract import (
    CONTRACT_TYPES,
    NOW,
    Deposited,
    Opened,
    Renamed,
    Withdrawn,
)

__all__ = ["Balances", "InlineProjectionContract", "ProjectionContract", "wait_for"]


class Balances(Projection):
    """Accounts by stream, a running total, holders searchable by name."""

    name = "balances"
    tables = ("accounts", "totals")
    indexes: ClassVar[dict[str, tuple[str, ...]]] = {"accounts": ("holder",)}
    poison: ClassVar[set[int]] = set()

    @handles(Opened)
    async def _opened(self, e: Opened, tx: ReadModelTx) -> None:
        assert tx.current is not None
        tx.put("accounts", tx.current.stream_id, {"holder": e.holder, "balance": 0, "open": True})
        tx.increment("totals", "all", "accounts")

    @handles(Deposited)
    async def _deposited(self, e: Deposited, tx: ReadModelTx) -> None:
        assert tx.current is not None
        tx.increment("accounts", tx.current.stream_id, "balance", e.amount)
        tx.patch("accounts", tx.current.stream_id, {"currency": e.currency})
        tx.increment("totals", "all", "deposited", e.amount)

    @handles(Withdrawn)
    async def _withdrawn(self, e: Withdrawn, tx: ReadModelTx) -> None:
        assert tx.current is not None
        if e.amount in self.poison:
            raise ValueError(f"cannot withdraw {e.amount}")
        account = await tx.get("accounts", tx.current.stream_id)
        balance = (account or {}).get("balance", 0) - e.amount
        tx.patch("accounts", tx.current.stream_id, {"balance": balance, "overdrawn": balance < 0})


def _sid() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Poll ``check`` until it holds; fail the test after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {seconds} s")
        await asyncio.sleep(0.01)


class _OnADatabase:
    """The fixtures both contracts share: a database, its event store, its backend."""

    #: the projection backend of the database under test (set for each test)
    backend: ProjectionBackend

    @pytest.fixture
    async def database(self) -> Database:
        """An empty database; each adapter's subclass overrides this fixture (and closes it)."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, database: Database) -> BaseEventStore:
        """The database's event store, with the contract's event types."""
        return database.event_store(CONTRACT_TYPES)

    @pytest.fixture(autouse=True)
    def _backend(self, database: Database) -> None:
        self.backend = database.projections()


class ProjectionContract(_OnADatabase):
    """Behaviour every projection backend must have. Subclass it per adapter."""

    @pytest.fixture(autouse=True)
    def _no_poison(self) -> None:
        Balances.poison = set()

    async def _engine(self, store: BaseEventStore, **options: Any) -> ProjectionEngine:
        engine = ProjectionEngine(
            store, [Balances()], backend=self.backend, retry_backoff=0.01, idle_wait=0.2, **options
        )
        await engine.start()
        return engine

    async def test_a_new_projection_catches_up_and_follows_new_events(
        self, store: BaseEventStore
    ) -> None:
        a, b = _sid(), _sid()
        await store.append(a, [Opened("h1", "Ada", NOW), Deposited(10, "EUR")])
        engine = await self._engine(store)
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            rm = engine.read_models
            assert await rm.get("balances", "accounts", a) == {
                "holder": "Ada",
                "balance": 10,
                "open": True,
                "currency": "EUR",
            }
            result = await store.append(b, [Opened("h2", "Grace", NOW), Withdrawn(4)])
            assert await engine.wait_until(result.position, max_wait=10)
            assert await rm.get("balances", "accounts", b) == {
                "holder": "Grace",
                "balance": -4,
                "open": True,
                "overdrawn": True,
            }
            assert await rm.get("balances", "totals", "all") == {"accounts": 2, "deposited": 10}
        finally:
            await engine.stop()

    async def test_changes_within_one_page_coalesce_and_read_their_own_writes(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        events: list[object] = [Opened("h", "Ada", NOW)]
        events += [Deposited(1, "EUR"), Withdrawn(2), Deposited(3, "USD"), Withdrawn(1)] * 5
        await store.append(sid, events)
        engine = await self._engine(store)
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            doc = await engine.read_models.get("balances", "accounts", sid)
            assert doc == {
                "holder": "Ada",
                "balance": 5,
                "open": True,
                "currency": "USD",
                "overdrawn": False,
            }
        finally:
            await engine.stop()

    async def test_documents_keep_json_types_through_patches(self, store: BaseEventStore) -> None:
        class Shapes(Projection):
            name = "shapes"
            tables = ("docs",)

            @handles(Renamed)
            async def _renamed(self, e: Renamed, tx: ReadModelTx) -> None:
                tx.patch("docs", "blind", {"flag": True, "none": None, "nested": {"a": [1, "x"]}})
                tx.increment("docs", "blind", "n", 2.5)
                tx.put("docs", "full", {"flag": False, "list": [True, None, 3]})
                tx.patch("docs", "full", {"extra": {"k": "v"}})

        await store.append(_sid(), [Renamed("x")])
        engine = ProjectionEngine(store, [Shapes()], backend=self.backend)
        await engine.start()
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            rm = engine.read_models
            assert await rm.get("shapes", "docs", "blind") == {
                "flag": True,
                "none": None,
                "nested": {"a": [1, "x"]},
                "n": 2.5,
            }
            assert await rm.get("shapes", "docs", "full") == {
                "flag": False,
                "list": [True, None, 3],
                "extra": {"k": "v"},
            }
        finally:
            await engine.stop()

    async def test_queries_find_search_and_count_on_the_serving_read_model(
        self, store: BaseEventStore
    ) -> None:
        names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "ada byron", "50%_off\\"]
        for i, name in enumerate(names):
            await store.append(f"q-{i}", [Opened(f"h{i}", name, NOW), Deposited(i * 10, "EUR")])
        engine = await self._engine(store)
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            rm = engine.read_models
            found = await rm.search("balances", "accounts", "holder", "ADA")
            assert sorted(d["holder"] for d in found) == ["Ada Lovelace", "ada byron"]
            assert [
                d["holder"] for d in await rm.search("balances", "accounts", "holder", "%_")
            ] == ["50%_off\\"]
            assert await rm.search("balances", "accounts", "holder", "'; DROP TABLE x; --") == []
            rich = await rm.find(
                "balances", "accounts", order_by="balance", descending=True, limit=2
            )
            assert [d["balance"] for d in rich] == [40, 30]
            page = await rm.find("balances", "accounts", order_by="balance", limit=2, offset=1)
            assert [d["balance"] for d in page] == [10, 20]
            assert await rm.find("balances", "accounts", where={"balance": 20}) == [
                {"holder": "Alan Turing", "balance": 20, "open": True, "currency": "EUR"}
            ]
            assert await rm.count("balances", "accounts") == 5
            assert await rm.count("balances", "accounts", where={"currency": "EUR"}) == 5
            assert await rm.count("balances", "accounts", where={"open": True, "balance": 0}) == 1
            assert await rm.get("balances", "accounts", "nobody") is None
            with pytest.raises(ValueError, match="field name"):
                await rm.find("balances", "accounts", where={"x') OR 1=1 --": 1})
        finally:
            await engine.stop()

    async def test_events_of_other_types_and_unknown_types_are_passed_over(
        self, store: BaseEventStore
    ) -> None:
        @event("contract.elsewhere")
        @dataclass(frozen=True, slots=True)
        class Elsewhere:
            note: str

        await store.with_types(EventTypes([Elsewhere])).append("other", [Elsewhere("x")] * 3)
        sid = _sid()
        await store.append(sid, [Opened("h", "Ada", NOW)])
        engine = await self._engine(store)
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)

            async def live() -> bool:
                return (await engine.statuses())[0].state == "live"

            await wait_for(live)
            [status] = await engine.statuses()
            assert status.checkpoint == await store.head_position()
            assert status.lag_events == 0
        finally:
            await engine.stop()

    async def test_a_poison_event_is_parked_and_the_others_flow_on(
        self, store: BaseEventStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        Balances.poison = {666}
        bad, good = _sid(), _sid()
        caplog.set_level(logging.ERROR, "chronik.projections")
        await store.append(
            bad,
            [Opened("h", "Ada", NOW), Withdrawn(666), Deposited(5, "EUR")],
            metadata=Metadata(correlation_id="corr-poison"),
        )
        await store.append(good, [Opened("g", "Grace", NOW), Deposited(7, "EUR")])
        engine = await self._engine(store, retries=3)
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            rm = engine.read_models
            assert (await rm.get("balances", "accounts", bad) or {})["balance"] == 5
            assert (await rm.get("balances", "accounts", good) or {})["balance"] == 7
            [parked] = await engine.parked("balances")
            assert (parked.stream_id, parked.version, parked.attempts) == (bad, 2, 3)
            assert "cannot withdraw 666" in parked.error
            # One log line says so, its values in fields (docs/operations.md).
            [line] = [r for r in caplog.records if r.getMessage() == "projection parks an event"]
            fields = {k: getattr(line, k) for k in ("projection", "stream", "version", "attempts")}
            assert fields == {"projection": "balances", "stream": bad, "version": 2, "attempts": 3}
            assert getattr(line, "position") == parked.position  # noqa: B009 - set by extra
            assert getattr(line, "correlation_id") == "corr-poison"  # noqa: B009
            [status] = await engine.statuses()
            assert status.state == "degraded" and status.parked == 1
            # The handler is fixed: replaying applies the parked event once.
            Balances.poison = set()
            await engine.request("balances", "replay-parked")

            async def replayed() -> bool:
                return not await engine.parked("balances")

            await wait_for(replayed)
            assert (await rm.get("balances", "accounts", bad) or {})["balance"] == -661
            await store.append(good, [Deposited(1, "EUR")])
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            assert (await rm.get("balances", "accounts", bad) or {})["balance"] == -661
            [status] = await engine.statuses()
            assert status.state == "live" and status.parked == 0
        finally:
            await engine.stop()

    async def test_an_event_that_does_not_decode_is_parked_and_a_rebuild_passes_it_too(
        self, store: BaseEventStore
    ) -> None:
        @event("contract.withdrawn")
        @dataclass(frozen=True, slots=True)
        class WithdrawnInWords:
            """Another shape under Withdrawn's name: the projection's types cannot read it."""

            amount: str

        bad, good = _sid(), _sid()
        await store.append(bad, [Opened("h", "Ada", NOW), Deposited(5, "EUR")])
        words = store.with_types(EventTypes([WithdrawnInWords]))
        await words.append(bad, [WithdrawnInWords("all of it")])
        await store.append(bad, [Deposited(2, "EUR")])
        await store.append(good, [Opened("g", "Grace", NOW), Deposited(7, "EUR")])
        engine = await self._engine(store, retries=3)
        rm = engine.read_models
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            assert (await rm.get("balances", "accounts", bad) or {})["balance"] == 7
            assert (await rm.get("balances", "accounts", good) or {})["balance"] == 7
            [parked] = await engine.parked("balances")
            assert (parked.stream_id, parked.version, parked.type) == (bad, 3, "contract.withdrawn")
            assert "CorruptEventError" in parked.error and "does not decode" in parked.error
            [status] = await engine.statuses()
            assert status.state == "degraded" and status.parked == 1 and status.lag_events == 0
            # Replaying it fails the same way: it stays parked and the runner runs on.
            await engine.request("balances", "replay-parked")

            async def tried_again() -> bool:
                return (await engine.parked("balances"))[0].attempts > parked.attempts

            await wait_for(tried_again)
            # A rebuild reads it again, parks it again, and switches in.
            await engine.request("balances", "rebuild")

            async def rebuilt() -> bool:
                [status] = await engine.statuses()
                return status.generation == 2 and status.rebuild is None

            await wait_for(rebuilt)
            result = await store.append(good, [Deposited(1, "EUR")])
            assert await engine.wait_until(result.position, max_wait=10)
            assert (await rm.get("balances", "accounts", bad) or {})["balance"] == 7
            assert (await rm.get("balances", "accounts", good) or {})["balance"] == 8
            [status] = await engine.statuses()
            assert status.state == "degraded" and status.error is None
            assert [p.position for p in await engine.parked("balances")] == [parked.position]
        finally:
            await engine.stop()

    async def test_a_request_made_while_another_is_handled_is_kept_for_the_runner(
        self, store: BaseEventStore
    ) -> None:
        # A runner clears the request it handled; one made meanwhile (a rebuild asked for
        # while a replay runs) must survive that, or it is lost without a word.
        await self.backend.setup()
        spec = type(Balances())
        await self.backend.create("balances", spec.version, spec.tables, spec.indexes)
        await self.backend.request("balances", "replay-parked")
        await self.backend.request("balances", "rebuild")
        await self.backend.set_status("balances", "live", None, clear_request="replay-parked")
        row = await self.backend.load("balances")
        assert row is not None and row.request == "rebuild"
        await self.backend.set_status("balances", "live", None, clear_request="rebuild")
        row = await self.backend.load("balances")
        assert row is not None and row.request is None

    async def test_skipping_parked_events_drops_them_unapplied(self, store: BaseEventStore) -> None:
        Balances.poison = {13}
        sid = _sid()
        await store.append(sid, [Opened("h", "Ada", NOW), Withdrawn(13)])
        engine = await self._engine(store, retries=1)
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            assert len(await engine.parked("balances")) == 1
            await engine.request("balances", "skip-parked")

            async def skipped() -> bool:
                return not await engine.parked("balances")

            await wait_for(skipped)
            assert (await engine.read_models.get("balances", "accounts", sid) or {})["balance"] == 0
        finally:
            await engine.stop()

    async def test_a_checkpoint_commits_with_the_read_model_and_survives_a_restart(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Opened("h", "Ada", NOW), Deposited(10, "EUR")])
        engine = await self._engine(store)
        assert await engine.wait_until(await store.head_position(), max_wait=10)
        await engine.stop()
        await store.append(sid, [Deposited(5, "EUR")])
        again = await self._engine(store)
        try:
            assert await again.wait_until(await store.head_position(), max_wait=10)
            # Each deposit applied exactly once across the restart.
            assert (await again.read_models.get("balances", "accounts", sid) or {})["balance"] == 15
            assert (await again.read_models.get("balances", "totals", "all") or {})[
                "deposited"
            ] == 15
        finally:
            await again.stop()

    async def test_a_rebuild_serves_the_old_model_until_the_new_one_switches_in(
        self, store: BaseEventStore
    ) -> None:
        class SlowBalances(Balances):
            @handles(Opened)
            async def _opened(self, e: Opened, tx: ReadModelTx) -> None:
                await asyncio.sleep(0.003)  # a rebuild long enough to be seen under way
                await super()._opened(e, tx)

        sids = [_sid() for _ in range(20)]
        for sid in sids:
            await store.append(sid, [Opened("h", "Ada", NOW), Deposited(2, "EUR")])
        engine = ProjectionEngine(
            store, [SlowBalances()], backend=self.backend, page_size=7, idle_wait=0.2
        )
        await engine.start()
        rm = engine.read_models
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)
            before = await engine.backend.load("balances")
            assert before is not None
            await engine.request("balances", "rebuild")
            seen_rebuilding = False

            async def switched() -> bool:
                nonlocal seen_rebuilding
                # Readers keep getting the whole read model during the rebuild.
                assert await rm.count("balances", "accounts") >= 20
                row = await engine.backend.load("balances")
                assert row is not None
                seen_rebuilding = seen_rebuilding or row.rebuild_generation is not None
                return row.generation == before.generation + 1 and row.rebuild_generation is None

            await wait_for(switched)
            assert seen_rebuilding
            totals = await rm.get("balances", "totals", "all")
            assert totals == {"accounts": 20, "deposited": 40}
            result = await store.append(sids[0], [Deposited(1, "EUR")])
            assert await engine.wait_until(result.position, max_wait=10)
            assert (await rm.get("balances", "accounts", sids[0]) or {})["balance"] == 3
        finally:
            await engine.stop()

    async def test_a_new_code_version_rebuilds_beside_the_old_tables(
        self, store: BaseEventStore
    ) -> None:
        sid = _sid()
        await store.append(sid, [Opened("h", "Ada", NOW), Deposited(4, "EUR")])
        engine = await self._engine(store)
        assert await engine.wait_until(await store.head_position(), max_wait=10)
        await engine.stop()

        class BalancesV2(Balances):
            version = 2

            @handles(Deposited)
            async def _deposited(self, e: Deposited, tx: ReadModelTx) -> None:
                assert tx.current is not None
                tx.increment("accounts", tx.current.stream_id, "balance", e.amount * 100)

        upgraded = ProjectionEngine(store, [BalancesV2()], backend=self.backend, idle_wait=0.2)
        await upgraded.start()
        try:

            async def rebuilt() -> bool:
                row = await upgraded.backend.load("balances")
                return row is not None and row.version == 2 and row.rebuild_generation is None

            await wait_for(rebuilt)
            doc = await upgraded.read_models.get("balances", "accounts", sid)
            assert doc is not None and doc["balance"] == 400
        finally:
            await upgraded.stop()

    async def test_status_reports_lag_while_behind_and_none_once_live(
        self, store: BaseEventStore
    ) -> None:
        for _ in range(5):
            await store.append(_sid(), [Opened("h", "Ada", NOW)])
        engine = ProjectionEngine(store, [Balances()], backend=self.backend, idle_wait=0.2)
        runner = engine.runners["balances"]
        await engine.backend.setup()
        status = await runner.status()
        assert status.checkpoint == 0 and status.lag_events == 5 and status.lag_seconds >= 0
        await engine.start()
        try:
            assert await engine.wait_until(await store.head_position(), max_wait=10)

            async def live() -> bool:
                return (await runner.status()).state == "live"

            await wait_for(live)
            status = await runner.status()
            assert (status.lag_events, status.lag_seconds, status.parked) == (0, 0.0, 0)
        finally:
            await engine.stop()

    async def test_waiting_for_a_position_returns_false_when_time_runs_out(
        self, store: BaseEventStore
    ) -> None:
        engine = await self._engine(store)
        try:
            assert not await engine.wait_until(10**9, max_wait=0.05)
        finally:
            await engine.stop()


class InlineProjectionContract(_OnADatabase):
    """Inline projections: updated in the append's transaction. Subclass it per adapter."""

    @pytest.fixture(autouse=True)
    def _no_poison(self) -> None:
        Balances.poison = set()

    async def test_an_inline_read_model_is_current_when_the_append_returns(
        self, store: BaseEventStore
    ) -> None:
        inline = InlineProjections(store, [Balances()], backend=self.backend)
        await inline.setup()
        sid = _sid()
        await store.append(sid, [Opened("h", "Ada", NOW), Deposited(10, "EUR")])
        doc = await inline.read_models.get("balances", "accounts", sid)
        assert doc == {"holder": "Ada", "balance": 10, "open": True, "currency": "EUR"}
        await store.append(sid, [Withdrawn(3)])
        assert (await inline.read_models.get("balances", "accounts", sid) or {})["balance"] == 7

    async def test_a_failing_inline_handler_fails_the_append_and_writes_nothing(
        self, store: BaseEventStore
    ) -> None:
        Balances.poison = {99}
        inline = InlineProjections(store, [Balances()], backend=self.backend)
        await inline.setup()
        sid = _sid()
        await store.append(sid, [Opened("h", "Ada", NOW), Deposited(10, "EUR")])
        head = await store.head_position()
        with pytest.raises(ValueError, match="cannot withdraw 99"):
            await store.append(sid, [Deposited(1, "EUR"), Withdrawn(99)])
        assert await store.stream_version(sid) == 2
        assert await store.head_position() == head
        assert (await inline.read_models.get("balances", "accounts", sid) or {})["balance"] == 10
        assert await inline.read_models.get("balances", "totals", "all") == {
            "accounts": 1,
            "deposited": 10,
        }

    async def test_in_a_shared_commit_only_the_failing_append_is_undone(
        self, store: BaseEventStore
    ) -> None:
        Balances.poison = {99}
        inline = InlineProjections(store, [Balances()], backend=self.backend)
        await inline.setup()
        sids = [_sid() for _ in range(6)]
        outcomes = await asyncio.gather(
            *(
                store.append(sid, [Opened("h", "Ada", NOW), Withdrawn(99 if i == 2 else 1)])
                for i, sid in enumerate(sids)
            ),
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], ValueError)
        assert [await store.stream_version(s) for s in sids] == [2, 2, 0, 2, 2, 2]
        assert await inline.read_models.get("balances", "accounts", sids[2]) is None
        assert (await inline.read_models.get("balances", "totals", "all") or {})["accounts"] == 5

    async def test_an_inline_rebuild_while_appending_ends_equal_to_the_history(
        self, store: BaseEventStore
    ) -> None:
        sids = [_sid() for _ in range(30)]
        for sid in sids:
            await store.append(sid, [Opened("h", "Ada", NOW), Deposited(2, "EUR")])
        inline = InlineProjections(store, [Balances()], backend=self.backend, page_size=7)
        await inline.setup()  # created after the history: a rebuild fills it
        await inline.rebuild("balances")
        writing = True

        async def writer() -> None:
            while writing:
                await store.append(sids[0], [Deposited(1, "EUR")])
                await asyncio.sleep(0)

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.01)
        await inline.rebuild("balances")
        writing = False
        await task
        deposits = await store.read_stream(sids[0])
        expected = sum(e.event.amount for e in deposits if isinstance(e.event, Deposited))
        doc = await inline.read_models.get("balances", "accounts", sids[0])
        assert doc is not None and doc["balance"] == expected
        totals = await inline.read_models.get("balances", "totals", "all")
        assert totals == {"accounts": 30, "deposited": 2 * 29 + expected}
