"""The projection engine under faults: kill -9, concurrent writers, rebuilds under load, rivals.

Each test ends the same way: the read model it served must equal a fresh rebuild of the
same handlers under another name (``balances_check``), document for document, and its
totals must match the events in the store. A page applied twice or an event missed
shows in the running totals even when every account looks plausible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chronik.adapters import Database, open_database
from chronik.eventstore import BaseEventStore
from chronik.projections import ProjectionEngine, ReadModels, ReadModelTx, handles
from chronik.projections.engine import ProjectionRunner
from chronik.testing.eventstore_contract import (
    CONTRACT_TYPES,
    NOW,
    Deposited,
    Opened,
    Renamed,
    Withdrawn,
)
from chronik.testing.projection_contract import Balances, wait_for

WORKER = Path(__file__).with_name("projection_worker.py")
KILLS = 20
LINE_TIMEOUT = 30.0
LEADING = ("catching_up", "live", "degraded")


class BalancesCheck(Balances):
    """The same handlers under another name: a fresh rebuild beside the model under test."""

    name = "balances_check"


class SlowBalances(Balances):
    """Balances whose accounts take a millisecond each: a rebuild long enough to watch."""

    @handles(Opened)
    async def _opened(self, e: Opened, tx: ReadModelTx) -> None:
        await asyncio.sleep(0.001)
        await super()._opened(e, tx)


@dataclass
class Ledger:
    """Writes a random but plausible mix of events: accounts opened, then paid in and out."""

    rng: random.Random
    accounts: list[str] = field(default_factory=list)

    def _events_for_existing(self) -> list[object]:
        events: list[object] = []
        for _ in range(self.rng.randint(1, 4)):
            roll = self.rng.random()
            if roll < 0.55:
                events.append(Deposited(self.rng.randint(1, 100), self.rng.choice(["EUR", "USD"])))
            elif roll < 0.95:
                events.append(Withdrawn(self.rng.randint(1, 60)))
            else:
                events.append(Renamed(f"name-{self.rng.randint(1, 9)}"))  # not projected
        return events

    async def write(self, store: BaseEventStore, events: int, *, fan_out: int = 16) -> int:
        """Append about ``events`` events, ``fan_out`` concurrent appends to distinct streams."""
        written = 0
        while written < events:
            appends: dict[str, list[object]] = {}
            opened: list[str] = []
            for _ in range(fan_out):
                if not self.accounts or self.rng.random() < 0.15:
                    sid = f"acc-{uuid.uuid4().hex[:12]}"
                    batch: list[object] = [Opened(sid, f"holder {sid[-4:]}", NOW)]
                    if self.rng.random() < 0.7:
                        batch.append(Deposited(self.rng.randint(1, 100), "EUR"))
                    appends[sid] = batch
                    opened.append(sid)
                else:
                    sid = self.rng.choice(self.accounts)
                    if sid not in appends:
                        appends[sid] = self._events_for_existing()
            await asyncio.gather(*(store.append(s, batch) for s, batch in appends.items()))
            self.accounts += opened  # written: from now on others may pay into them
            written += sum(len(batch) for batch in appends.values())
        return written


@dataclass
class Replica:
    """A database opened by URL, as one process opens it: its event store and backend."""

    database: Database
    store: BaseEventStore


def _engine(
    at: Replica, projection: Balances | None = None, *, page_size: int = 50
) -> ProjectionEngine:
    return ProjectionEngine(
        at.store,
        [projection or Balances()],
        backend=at.database.projections(),
        page_size=page_size,
        idle_wait=0.2,
        retry_backoff=0.01,
        standby_wait=0.2,
    )


@contextlib.asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Replica]:
    database = await open_database(url)
    try:
        yield Replica(database, database.event_store(CONTRACT_TYPES))
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def _running(engine: ProjectionEngine) -> AsyncIterator[ProjectionEngine]:
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def _totals_in(store: BaseEventStore) -> dict[str, int]:
    """What ``totals/all`` must say, counted from the stored events themselves."""
    accounts = deposited = 0
    after = 0
    while page := await store.read_all(after, limit=5000):
        for recorded in page:
            if isinstance(recorded.event, Opened):
                accounts += 1
            elif isinstance(recorded.event, Deposited):
                deposited += recorded.event.amount
        after = page[-1].position
    return {"accounts": accounts, "deposited": deposited}


def _counted(docs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(doc, sort_keys=True) for doc in docs)


async def _assert_equals_a_fresh_rebuild(at: Replica, served: ReadModels) -> None:
    store = at.store
    head = await store.head_position()
    async with _running(_engine(at, BalancesCheck(), page_size=500)) as fresh:
        assert await fresh.wait_until(head, max_wait=30), "the fresh rebuild did not catch up"
        for table in Balances.tables:
            ours = await served.find("balances", table, limit=10_000)
            theirs = await fresh.read_models.find("balances_check", table, limit=10_000)
            assert 0 < len(theirs) < 10_000
            served_only = _counted(ours) - _counted(theirs)
            rebuilt_only = _counted(theirs) - _counted(ours)
            assert ours == theirs, (
                f"table {table}: {len(ours)} documents served, {len(theirs)} rebuilt; "
                f"{served_only.total()} only served, e.g. {list(served_only)[:2]}; "
                f"{rebuilt_only.total()} only rebuilt, e.g. {list(rebuilt_only)[:2]}"
            )
    assert await served.get("balances", "totals", "all") == await _totals_in(store)


class Worker:
    """projection_worker.py in a real process, read line by line, killed with SIGKILL."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.reported = 0  # the highest checkpoint it said it had committed
        self.leading_at: int | None = None

    @classmethod
    async def start(cls, url: str, page_size: int) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            url,
            str(page_size),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    def _note(self, line: str) -> None:
        word, _, number = line.partition(" ")
        if word == "leading":
            self.leading_at = int(number)
        if word in ("leading", "checkpoint"):
            self.reported = max(self.reported, int(number))

    async def line(self) -> str:
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), LINE_TIMEOUT)
        except TimeoutError:
            raw = b""
        if not raw.endswith(b"\n"):
            stderr = await self.kill()
            pytest.fail(f"the worker said nothing more within {LINE_TIMEOUT} s: {stderr}")
        line = raw.decode().strip()
        self._note(line)
        return line

    async def until_leading(self) -> int:
        while self.leading_at is None:
            await self.line()
        return self.leading_at

    async def until_checkpoint_above(self, position: int) -> None:
        while self.reported <= position:
            await self.line()

    async def kill(self) -> str:
        """SIGKILL it (if it still runs); note the lines it wrote before; return its stderr."""
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
        stdout, stderr = await self.process.communicate()
        for line in stdout.decode().splitlines(keepends=True):
            if line.endswith("\n"):
                self._note(line.strip())
        return stderr.decode()[-3000:]


# -- 1. kill -9 of the runner during catch-up -------------------------------------------


async def _kill_the_runner_repeatedly(url: str) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    ledger = Ledger(rng)
    mid_catch_up = 0
    async with _opened(url) as at:
        store = at.store
        await ledger.write(store, 6000)
        for kill in range(KILLS):
            head = await store.head_position()
            worker = await Worker.start(url, rng.choice([5, 10, 25, 50]))
            try:
                leading_at = await worker.until_leading()
                if leading_at < head:
                    await worker.until_checkpoint_above(leading_at)
                if rng.random() < 0.8:  # else the moment it reports its first move
                    await asyncio.sleep(rng.uniform(0, 0.03))
            finally:
                stderr = await worker.kill()
            assert worker.process.returncode == -signal.SIGKILL, stderr
            row = await at.database.projections().load("balances")
            assert row is not None
            assert row.checkpoint >= worker.reported, (
                f"kill {kill}: the worker reported checkpoint {worker.reported} committed, "
                f"the store has {row.checkpoint}"
            )
            mid_catch_up += row.checkpoint < head
            await ledger.write(store, rng.randint(50, 300))
        print(f"{mid_catch_up} of {KILLS} kills landed during catch-up")
        assert mid_catch_up > 0, "no kill landed during catch-up: the test tested nothing"
        async with _running(_engine(at)) as engine:
            assert await engine.wait_until(await store.head_position(), max_wait=30)
            await _assert_equals_a_fresh_rebuild(at, engine.read_models)


@pytest.mark.slow
async def test_killing_a_sqlite_runner_during_catch_up_neither_loses_nor_repeats_an_event(
    tmp_path: Path,
) -> None:
    await _kill_the_runner_repeatedly(f"sqlite:///{tmp_path}/e.db")


@pytest.mark.slow
async def test_killing_a_postgres_runner_during_catch_up_neither_loses_nor_repeats_an_event(
    postgres_url: str, pg_schema: str
) -> None:
    await _kill_the_runner_repeatedly(f"{postgres_url}?schema={pg_schema}")


# -- 2. concurrent writers on PostgreSQL while the projection tails ---------------------


@pytest.mark.slow
async def test_a_projection_tailing_concurrent_postgres_writers_applies_every_event_once(
    postgres_url: str, pg_schema: str
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    ledger = Ledger(random.Random())
    async with contextlib.AsyncExitStack() as stack:
        at = await stack.enter_async_context(_opened(url))
        store = at.store
        await ledger.write(store, 200)
        engine = await stack.enter_async_context(_running(_engine(at)))
        writers = [(await stack.enter_async_context(_opened(url))).store for _ in range(4)]
        loop = asyncio.get_running_loop()
        until = loop.time() + 3.0
        followed: list[int] = []

        async def write(writer: BaseEventStore) -> None:
            # Paced so that the projection keeps up and reads at the head, where commits
            # land between its reads, rather than full pages far behind it.
            while loop.time() < until:
                await ledger.write(writer, 1, fan_out=random.randint(1, 3))
                await asyncio.sleep(random.uniform(0, 0.04))

        async def follow() -> None:
            while loop.time() < until:
                followed.append(engine.runners["balances"].checkpoint)
                await asyncio.sleep(0.05)

        await asyncio.gather(follow(), *(write(w) for w in writers for _ in range(3)))
        head = await store.head_position()
        assert len(set(followed)) > 2, "the projection did not follow the writers as they wrote"
        assert await engine.wait_until(head, max_wait=30)
        await _assert_equals_a_fresh_rebuild(at, engine.read_models)


# -- 3. a rebuild under a steady write load ---------------------------------------------


async def _rebuild_under_load(url: str) -> None:
    ledger = Ledger(random.Random())
    async with contextlib.AsyncExitStack() as stack:
        at = await stack.enter_async_context(_opened(url))
        store = at.store
        writer = (await stack.enter_async_context(_opened(url))).store
        await ledger.write(store, 4000)
        known = list(ledger.accounts)
        engine = await stack.enter_async_context(
            _running(_engine(at, SlowBalances(), page_size=20))
        )
        rm = engine.read_models
        assert await engine.wait_until(await store.head_position(), max_wait=30)
        stop = asyncio.Event()

        async def write_steadily() -> None:
            while not stop.is_set():
                await ledger.write(writer, 1, fan_out=1)
                await asyncio.sleep(0.01)

        writing = asyncio.create_task(write_steadily())
        try:
            await asyncio.sleep(0.2)
            before = await engine.backend.load("balances")
            assert before is not None and before.rebuild_generation is None
            accounts_before = await rm.count("balances", "accounts")
            assert accounts_before >= len(known)
            await engine.request("balances", "rebuild")
            served = accounts_before
            opened = accounts_before
            reads_while_rebuilding = 0

            async def switched() -> bool:
                nonlocal served, opened, reads_while_rebuilding
                row = await engine.backend.load("balances")
                assert row is not None
                count = await rm.count("balances", "accounts")
                totals = await rm.get("balances", "totals", "all") or {}
                account = await rm.get("balances", "accounts", random.choice(known))
                # The old generation serves until the switch, the new one after it:
                # never fewer accounts than a moment ago, or than before the rebuild.
                assert count >= served >= accounts_before, (
                    f"{count} accounts served after {served} ({accounts_before} when the "
                    "rebuild began)"
                )
                assert totals.get("accounts", 0) >= opened, f"{totals} after {opened} accounts"
                assert account is not None and account["open"] is True
                served, opened = count, totals["accounts"]
                if row.rebuild_generation is not None:
                    reads_while_rebuilding += 1
                return row.generation == before.generation + 1 and row.rebuild_generation is None

            await wait_for(switched, seconds=30)
            print(f"{reads_while_rebuilding} reads while rebuilding")
            assert reads_while_rebuilding > 0, "the rebuild was never seen under way"
        finally:
            stop.set()
            await writing
        assert await engine.wait_until(await store.head_position(), max_wait=30)
        await _assert_equals_a_fresh_rebuild(at, rm)


@pytest.mark.slow
async def test_a_sqlite_rebuild_under_write_load_serves_the_old_model_then_switches_whole(
    tmp_path: Path,
) -> None:
    await _rebuild_under_load(f"sqlite:///{tmp_path}/e.db")


@pytest.mark.slow
async def test_a_postgres_rebuild_under_write_load_serves_the_old_model_then_switches_whole(
    postgres_url: str, pg_schema: str
) -> None:
    await _rebuild_under_load(f"{postgres_url}?schema={pg_schema}")


# -- 4. two runners for one projection on PostgreSQL ------------------------------------


def _leader(runners: Sequence[ProjectionRunner]) -> ProjectionRunner | None:
    """The one runner that leads while every other stands by, else None."""
    leading = [r for r in runners if r.state in LEADING]
    standing_by = [r for r in runners if r.state == "standby"]
    if len(leading) == 1 and len(standing_by) == len(runners) - 1:
        return leading[0]
    return None


async def test_two_postgres_runners_of_one_projection_elect_one_leader_and_apply_events_once(
    postgres_url: str, pg_schema: str
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    ledger = Ledger(random.Random())
    async with contextlib.AsyncExitStack() as stack:
        first_at = await stack.enter_async_context(_opened(url))
        second_at = await stack.enter_async_context(_opened(url))
        first = first_at.store
        await ledger.write(first, 1000)
        engines = [_engine(first_at, page_size=20), _engine(second_at, page_size=20)]
        await asyncio.gather(*(stack.enter_async_context(_running(e)) for e in engines))
        runners = [e.runners["balances"] for e in engines]

        async def one_leads() -> bool:
            return _leader(runners) is not None

        await wait_for(one_leads)
        leader = _leader(runners)
        assert leader is not None
        written = asyncio.create_task(ledger.write(first, 1500, fan_out=4))
        for _ in range(20):  # ten standby intervals, while events keep coming
            await asyncio.sleep(0.1)
            assert _leader(runners) is leader, [r.state for r in runners]
        await written
        engine = engines[runners.index(leader)]
        assert await engine.wait_until(await first.head_position(), max_wait=30)
        assert _leader(runners) is leader, [r.state for r in runners]
        await _assert_equals_a_fresh_rebuild(first_at, engine.read_models)


async def test_read_your_writes_on_a_standby_replica_returns_once_the_leader_applied_the_write(
    postgres_url: str, pg_schema: str
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    async with contextlib.AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(_opened(url)) for _ in range(2)]
        stores = [at.store for at in opened]
        engines = [_engine(at) for at in opened]
        await asyncio.gather(*(stack.enter_async_context(_running(e)) for e in engines))
        runners = [e.runners["balances"] for e in engines]

        async def one_leads() -> bool:
            return _leader(runners) is not None

        await wait_for(one_leads)
        runner = _leader(runners)
        assert runner is not None
        leading = runners.index(runner)
        leader, replica = engines[leading], engines[1 - leading]
        sid = f"acc-{uuid.uuid4().hex[:12]}"
        written = await stores[1 - leading].append(
            sid, [Opened(sid, "Ada", NOW), Deposited(7, "EUR")]
        )
        assert await leader.wait_until(written.position, max_wait=10)
        # The replica serves the same read model, which has the write...
        assert (await replica.read_models.get("balances", "accounts", sid) or {})["balance"] == 7
        # ...so read-your-writes on the replica must not wait for nothing.
        assert await replica.wait_until(written.position, max_wait=2)


@pytest.mark.slow
async def test_a_standby_runner_takes_over_when_the_leading_process_is_killed(
    postgres_url: str, pg_schema: str
) -> None:
    url = f"{postgres_url}?schema={pg_schema}"
    rng = random.Random()
    ledger = Ledger(rng)
    async with contextlib.AsyncExitStack() as stack:
        at = await stack.enter_async_context(_opened(url))
        store = at.store
        await ledger.write(store, 300)
        worker = await Worker.start(url, 10)
        stack.push_async_callback(worker.kill)
        await worker.until_leading()
        engine = await stack.enter_async_context(_running(_engine(at, page_size=20)))
        runner = engine.runners["balances"]

        async def standing_by() -> bool:
            return runner.state == "standby"

        await wait_for(standing_by)
        head = await store.head_position()
        await ledger.write(store, 3000)
        await worker.until_checkpoint_above(head)  # the worker is catching up: kill it now
        await asyncio.sleep(rng.uniform(0, 0.1))
        assert runner.state == "standby", "the in-process runner led beside a live leader"
        stderr = await worker.kill()
        assert worker.process.returncode == -signal.SIGKILL, stderr
        row = await engine.backend.load("balances")
        assert row is not None and row.checkpoint >= worker.reported
        await ledger.write(store, 500)

        async def took_over() -> bool:
            return runner.state not in ("standby", "starting")

        await wait_for(took_over, seconds=10)
        assert await engine.wait_until(await store.head_position(), max_wait=30)
        await _assert_equals_a_fresh_rebuild(at, engine.read_models)


async def test_a_projection_moves_past_events_it_does_not_follow_without_a_commit_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every append wakes every runner; one that follows none of the new events moves
    # its checkpoint at once (in memory: status and wait_until) and writes it within a
    # second, not in a transaction of its own per append.
    from chronik.adapters.memory import readmodels

    writes: list[int] = []
    advance = readmodels._Tx.advance

    async def counted(self: Any, name: str, generation: int, rebuilding: bool, *a: int) -> None:
        writes.append(a[-1])
        await advance(self, name, generation, rebuilding, *a)

    monkeypatch.setattr(readmodels._Tx, "advance", counted)
    database = await open_database("memory://")
    store = database.event_store(CONTRACT_TYPES)
    engine = ProjectionEngine(store, [Balances()], backend=database.projections(), idle_wait=0.05)
    await engine.start()
    try:
        await store.append("acc-1", [Opened("h1", "Holder", NOW)])
        assert await engine.wait_until(await store.head_position(), max_wait=30)
        await wait_for(lambda: _stored_at_head(engine, store), 30)
        writes.clear()
        started = asyncio.get_running_loop().time()
        for i in range(50):  # Renamed: not a type Balances handles
            result = await store.append("acc-1", [Renamed(f"name-{i}")])
            assert await engine.wait_until(result.position, max_wait=30)
            [status] = await engine.statuses()
            assert status.checkpoint == result.position  # lag is not stuck
        elapsed = asyncio.get_running_loop().time() - started
        # At most one write a second (and one at the end), where every append wrote one.
        assert len(writes) <= elapsed + 2, (len(writes), elapsed)
        await wait_for(lambda: _stored_at_head(engine, store), 30)  # written within a second
    finally:
        await engine.stop()
        await database.close()


async def _stored_at_head(engine: ProjectionEngine, store: BaseEventStore) -> bool:
    row = await engine.backend.load("balances")
    return row is not None and row.checkpoint == await store.head_position()
