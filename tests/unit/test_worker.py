"""The supervised worker: backoff, stop, standby, lost leadership, status, on memory.

A counting worker stands in for a kind: each step takes one item from a list (its
"page"), and the test decides what the step, the lease and the hooks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from chronik.errors import LostLeadershipError, StoreUnavailableError
from chronik.worker import (
    GRANTED,
    REFUSED,
    Backoff,
    Lease,
    Supervised,
    Worker,
    WorkerStatus,
    sleep_until_stopped,
)

PATIENCE = 10.0


async def eventually(what: str, check: Callable[[], bool], within: float = PATIENCE) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.005)


LeaseCM = contextlib.AbstractAsyncContextManager[Lease]


class Losable:
    """A lease that is held until the test takes it away."""

    def __init__(self) -> None:
        self.lost = False

    @property
    def held(self) -> bool:
        return True

    async def check(self) -> None:
        if self.lost:
            raise LostLeadershipError("lease 'counting': its lock session is gone")


class Counting(Worker):
    """Takes one item per step from ``items``; ``fail`` makes the next steps raise."""

    kind = "counting"

    def __init__(self, lease: Callable[[], LeaseCM]) -> None:
        super().__init__("counter", lease=lease, backoff=0.01, max_backoff=0.04, idle_wait=0.01)
        self.items: list[int] = []
        self.done: list[int] = []
        self.fail: list[Exception] = []
        self.ended = 0
        self.contended = 0

    async def step(self) -> bool:
        if self.fail:
            raise self.fail.pop(0)
        if not self.items:
            return False
        self.done.append(self.items.pop(0))
        return True

    async def end(self) -> None:
        self.ended += 1


def source(lease: Lease, worker: list[Counting]) -> Callable[[], LeaseCM]:
    @contextlib.asynccontextmanager
    async def contend() -> AsyncIterator[Lease]:
        worker[0].contended += 1
        yield lease

    return contend


def counting(lease: Lease = GRANTED) -> Counting:
    box: list[Counting] = []
    worker = Counting(source(lease, box))
    box.append(worker)
    return worker


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, PATIENCE)


# -- backoff ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(0.1, 0.5)
    assert [backoff.failed() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.failed() == 0.1


@pytest.mark.parametrize(("first", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_a_backoff_that_cannot_work_is_refused_naming_both_values(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match=f"first={first} cap={cap}"):
        Backoff(first, cap)


async def test_sleep_until_stopped_returns_at_once_when_stop_is_set() -> None:
    stop = asyncio.Event()
    stop.set()
    began = time.monotonic()
    assert await sleep_until_stopped(stop, 60) is True
    assert time.monotonic() - began < PATIENCE
    assert await sleep_until_stopped(asyncio.Event(), 0.001) is False


# -- the loop ---------------------------------------------------------------------------


async def test_a_worker_works_through_its_items_then_runs_at_the_head() -> None:
    worker = counting()
    worker.items = [1, 2, 3]
    assert worker.worker_status().state == "starting"
    async with running(worker):
        await eventually("the items done", lambda: worker.done == [1, 2, 3])
        await eventually("running at the head", lambda: worker.state == "running")
        status = worker.worker_status()
        assert status.leading and status.ready and status.reason is None
        assert status.heartbeat_at is not None
        worker.items.append(4)
        await eventually("woken for the new item", lambda: worker.done == [1, 2, 3, 4])


async def test_a_failing_step_backs_off_with_the_reason_growing_to_the_cap_then_recovers() -> None:
    worker = counting()
    worker.fail = [StoreUnavailableError(f"database gone ({n})") for n in range(4)]
    worker.items = [1]
    seen: list[WorkerStatus] = []
    async with running(worker):
        await eventually("backing off", lambda: worker.state == "backing_off")
        seen.append(worker.worker_status())
        await eventually("recovered", lambda: worker.done == [1] and worker.state == "running")
    first = seen[0]
    assert not first.ready
    assert first.reason is not None and first.reason.startswith("StoreUnavailableError: ")
    assert first.why_not_ready() == f"counting counter is backing_off: {first.reason}"
    # four failures: 0.01, 0.02, 0.04, 0.04 (the cap), then reset by a clean round
    assert worker.ended >= 4, "each failed round let go of what it held"
    assert worker.backoff.next == worker.backoff.first


async def test_a_stopped_worker_ends_its_round_and_shows_stopped_not_ready() -> None:
    worker = counting()
    async with running(worker) as stop:
        await eventually("running", lambda: worker.state == "running")
        stop.set()
        await eventually("stopped", lambda: worker.state == "stopped")
    status = worker.worker_status()
    assert not status.leading and not status.ready
    assert status.why_not_ready() == "counting counter is stopped"
    assert worker.ended == 1


async def test_a_worker_refused_the_lease_stands_by_ready_and_does_no_work() -> None:
    worker = counting(REFUSED)
    worker.items = [1, 2]
    async with running(worker):
        await eventually("standby", lambda: worker.state == "standby")
        await eventually("settled", worker.settled.is_set)
        await asyncio.sleep(0.05)
        status = worker.worker_status()
        assert status.ready and not status.leading
        assert worker.done == [], "a standby worker acted"
    assert worker.state == "standby", "a standby worker's stop leaves it shown as standby"


async def test_a_leader_that_loses_its_lease_stops_acting_and_contends_again() -> None:
    lease = Losable()
    worker = counting(lease)
    async with running(worker):
        await eventually("leading", lambda: worker.state == "running")
        contended = worker.contended
        lease.lost = True
        worker.items = [1, 2, 3]
        await eventually(
            "gave up the lease", lambda: worker.contended > contended + 1 and worker.ended >= 2
        )
        assert worker.done == [], "a leader that lost its lease went on acting"
        assert worker.state == "backing_off"
        assert worker.error is not None and "LostLeadershipError" in worker.error
        lease.lost = False
        await eventually("took over again", lambda: worker.done == [1, 2, 3])


async def test_an_error_escaping_a_hook_shows_the_worker_failed_with_the_reason() -> None:
    class Broken(Counting):
        async def stopped(self) -> None:
            raise RuntimeError("the stop hook broke")

    box: list[Counting] = []
    worker = Broken(source(GRANTED, box))
    box.append(worker)
    stop = asyncio.Event()
    supervised = Supervised(worker, stop)
    await eventually("running", lambda: worker.state == "running")
    stop.set()
    await asyncio.wait_for(supervised.task, PATIENCE)
    status = worker.worker_status()
    assert status.state == "failed" and not status.ready
    assert status.why_not_ready() == "counting counter is failed: RuntimeError: the stop hook broke"


async def test_pause_inside_a_step_ends_early_when_the_worker_is_stopped() -> None:
    paused: list[bool] = []

    class Pausing(Counting):
        async def step(self) -> bool:
            paused.append(await self.pause(60))
            return False

    box: list[Counting] = []
    worker = Pausing(source(GRANTED, box))
    box.append(worker)
    async with running(worker):
        await eventually("in its pause", lambda: worker.settled.is_set())
        await asyncio.sleep(0.01)
    assert paused == [True]


# -- a kind that parks: the projection runner, on memory --------------------------------


async def test_a_projection_runner_parks_a_poison_event_and_flows_on_showing_degraded() -> None:
    from chronik.adapters import open_database
    from chronik.projections import ProjectionEngine
    from chronik.testing.eventstore_contract import (
        CONTRACT_TYPES,
        NOW,
        Deposited,
        Opened,
        Withdrawn,
    )
    from chronik.testing.projection_contract import Balances

    class Poisoned(Balances):
        poison = {13}  # noqa: RUF012 - the contract's class attribute, overridden

    database = await open_database("memory://")
    store = database.event_store(CONTRACT_TYPES)
    engine = ProjectionEngine(
        store, [Poisoned()], backend=database.projections(), retry_backoff=0.001, idle_wait=0.01
    )
    runner = engine.runners["balances"]
    states: list[str] = []
    await store.append("acc-1", [Opened("h", "Ada", NOW), Deposited(20, "EUR"), Withdrawn(13)])
    await engine.start()
    try:
        await eventually("parked", lambda: runner.parked_count == 1)
        await store.append("acc-1", [Deposited(5, "EUR")])
        await eventually("caught up", lambda: runner.checkpoint == 4)
        states.append(runner.state)
        status = await runner.status()
        assert status.parked == 1 and status.lag_events == 0
        [parked] = await engine.parked("balances")
        assert "ValueError: cannot withdraw 13" in parked.error
        doc = await engine.read_models.get("balances", "accounts", "acc-1")
        assert doc is not None and doc["balance"] == 25, "the events after the poison flowed on"
    finally:
        await engine.stop()
        await database.close()
    assert states == ["degraded"]
    assert runner.state == "stopped" and not runner.worker_status().ready
