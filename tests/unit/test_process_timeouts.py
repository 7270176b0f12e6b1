"""Durable timeouts and steps through ``Processes`` on the memory store, and the clocks.

The memory store runs the same runner code as the durable ones, without a server: the
tests here are about the runner's decisions (what fires when, what a failing handler
leaves behind); tests/integration/test_processes_*.py run the same on every store.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from chronik.adapters.memory.database import MemoryDatabase
from chronik.domain import event
from chronik.eventstore import BaseEventStore, EventTypes
from chronik.processes import (
    FailurePolicy,
    FileClock,
    Processes,
    ProcessManager,
    ProcessStepped,
    Step,
    VirtualClock,
    on_timeout,
    process_index,
    starts,
    when,
)

T0 = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


@event("process_timeouts.booking_requested")
@dataclass(frozen=True)
class BookingRequested:
    booking: str


@event("process_timeouts.booking_confirmed")
@dataclass(frozen=True)
class BookingConfirmed:
    booking: str


@event("process_timeouts.booking_poked")
@dataclass(frozen=True)
class BookingPoked:
    booking: str


class Booking(ProcessManager):
    """Expires unconfirmed after an hour; is cleaned up after two, confirmed or not."""

    name = "booking"
    correlation_key = "booking"
    policy = FailurePolicy(retries=1, backoff=0.001, then="park")

    @starts(BookingRequested)
    def requested(self, e: BookingRequested, p: Step) -> None:
        p.schedule("cleanup", after=timedelta(hours=2))
        p.schedule("confirm", after=timedelta(hours=1))
        p.goto("requested")

    @when("requested", BookingConfirmed)
    def confirmed(self, e: BookingConfirmed, p: Step) -> None:
        p.cancel("confirm")
        p.goto("confirmed")

    @when("*", BookingPoked)
    def poked(self, e: BookingPoked, p: Step) -> None:
        raise RuntimeError(f"cannot poke {e.booking}")

    @on_timeout("confirm")
    def unconfirmed(self, p: Step) -> None:
        p.goto("expired")

    @on_timeout("cleanup")
    def cleanup(self, p: Step) -> None:
        if p.instance.startswith("fragile"):
            raise RuntimeError("cleanup failed")
        p.finish()


@pytest.fixture
def database() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def store(database: MemoryDatabase) -> BaseEventStore:
    return database.event_store(EventTypes([BookingRequested, BookingConfirmed, BookingPoked]))


async def _processes(
    database: MemoryDatabase, store: BaseEventStore, clock: VirtualClock
) -> Processes:
    backend = database.projections()
    processes = Processes(
        store,
        [Booking()],
        {},
        backend=backend,
        index=process_index(store, backend),
        clock=clock,
        idle_wait=0.02,
        timer_wait=0.02,
    )
    await processes.setup()
    return processes


async def _kinds(store: BaseEventStore, booking: str) -> list[str]:
    records = await store.read_stream(Booking().stream_id(booking))
    return [r.event.trigger_type for r in records if isinstance(r.event, ProcessStepped)]


async def test_a_timeout_fires_when_the_clock_reaches_its_due_time_not_before(
    database: MemoryDatabase,
    store: BaseEventStore,
) -> None:
    clock = VirtualClock(T0)
    processes = await _processes(database, store, clock)
    await processes.handle(BookingRequested("b"), trigger="t1")
    clock.advance(timedelta(hours=1) - timedelta(microseconds=1))
    assert await processes.fire_due() == 0
    clock.advance(timedelta(microseconds=1))
    assert await processes.fire_due() == 1
    assert await processes.fire_due() == 0, "fired once"
    assert await _kinds(store, "b") == ["BookingRequested", "timeout:confirm"]
    view = await processes.instance("booking", "b")
    assert view is not None and view.status == "expired"
    assert [t["name"] for t in view.timeouts.values()] == ["cleanup"]


async def test_due_timeouts_fire_in_due_order_across_instances(
    database: MemoryDatabase, store: BaseEventStore
) -> None:
    clock = VirtualClock(T0)
    processes = await _processes(database, store, clock)
    await processes.handle(BookingRequested("early"), trigger="t1")
    clock.advance(timedelta(minutes=30))
    await processes.handle(BookingRequested("late"), trigger="t2")
    clock.advance(timedelta(hours=3))
    assert await processes.fire_due() == 4
    assert processes.fired == 4
    order = [
        (r.event.instance, r.event.trigger_type)
        for r in await store.read_all(0)
        if isinstance(r.event, ProcessStepped) and r.event.trigger_type.startswith("timeout")
    ]
    assert order == [
        ("early", "timeout:confirm"),
        ("late", "timeout:confirm"),
        ("early", "timeout:cleanup"),
        ("late", "timeout:cleanup"),
    ]


async def test_a_timeout_cancelled_by_the_awaited_event_never_fires(
    database: MemoryDatabase, store: BaseEventStore
) -> None:
    clock = VirtualClock(T0)
    processes = await _processes(database, store, clock)
    await processes.handle(BookingRequested("b"), trigger="t1")
    await processes.handle(BookingConfirmed("b"), trigger="t2")
    clock.advance(timedelta(hours=1, minutes=30))
    assert await processes.fire_due() == 0
    clock.advance(timedelta(hours=1))
    assert await processes.fire_due() == 1
    assert await _kinds(store, "b") == ["BookingRequested", "BookingConfirmed", "timeout:cleanup"]
    assert await processes.index.read_models.find("process_index", "timeouts") == []


async def test_a_trigger_handled_twice_takes_one_step_and_an_unrelated_event_none(
    database: MemoryDatabase,
    store: BaseEventStore,
) -> None:
    processes = await _processes(database, store, VirtualClock(T0))
    await processes.handle(BookingRequested("b"), trigger="t1")
    await processes.handle(BookingRequested("b"), trigger="t1")
    await processes.handle(BookingConfirmed("b"), trigger="t2")
    await processes.handle(BookingConfirmed("b"), trigger="t2")
    await processes.handle(BookingConfirmed("other"), trigger="t3")  # not started: ignored
    assert await _kinds(store, "b") == ["BookingRequested", "BookingConfirmed"]
    assert await store.read_stream(Booking().stream_id("other")) == []


async def test_a_timeout_whose_handler_keeps_failing_is_dropped_on_the_record_once(
    database: MemoryDatabase,
    store: BaseEventStore,
) -> None:
    clock = VirtualClock(T0)
    processes = await _processes(database, store, clock)
    await processes.handle(BookingRequested("fragile"), trigger="t1")
    clock.advance(timedelta(hours=3))
    assert await processes.fire_due() == 1, "confirm fires, cleanup fails twice and is dropped"
    assert await processes.fire_due() == 0
    assert await _kinds(store, "fragile") == [
        "BookingRequested",
        "timeout:confirm",
        "timeout:cleanup:dropped",
    ]
    view = await processes.instance("booking", "fragile")
    assert view is not None and (view.status, view.finished) == ("expired", False)
    assert await processes.index.read_models.find("process_index", "timeouts") == []


async def test_an_event_whose_handler_keeps_failing_is_parked_and_the_follower_moves_on(
    database: MemoryDatabase,
    store: BaseEventStore,
) -> None:
    processes = await _processes(database, store, VirtualClock(T0))
    stop = asyncio.Event()
    task = asyncio.create_task(processes.run(stop))
    try:
        await store.append("booking-b", [BookingRequested("b"), BookingPoked("b")])
        await store.append("booking-b", [BookingConfirmed("b")])

        async def confirmed() -> bool:
            view = await processes.instance("booking", "b")
            return view is not None and view.status == "confirmed"

        for _ in range(500):
            if await confirmed():
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
    assert await _kinds(store, "b") == ["BookingRequested", "BookingConfirmed"]
    (parked,) = await processes.backend.parked("processes_events")
    assert (parked.stream_id, parked.version, parked.attempts) == ("booking-b", 2, 2)
    assert "process booking b: RuntimeError: cannot poke b" in parked.error


# -- the clocks ----------------------------------------------------------------------------------


def test_a_virtual_clock_moves_only_when_told() -> None:
    clock = VirtualClock(T0)
    assert clock.now() == T0 == clock.now()
    assert clock.advance(timedelta(days=2)) == T0 + timedelta(days=2) == clock.now()
    assert VirtualClock().now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_file_clock_reads_the_time_another_process_wrote(tmp_path: Path) -> None:
    clock = FileClock(tmp_path / "now")
    clock.set(T0)
    assert FileClock(tmp_path / "now").now() == T0
    (tmp_path / "now").write_text(" 2026-07-01T08:00:00+02:00\n")
    assert clock.now() == T0


def test_a_file_clock_read_while_it_is_set_never_reads_half_a_time(tmp_path: Path) -> None:
    clock = FileClock(tmp_path / "now")
    clock.set(T0)
    done = threading.Event()

    def mover() -> None:
        minute = 0
        while not done.is_set():
            minute += 1
            clock.set(T0 + timedelta(minutes=minute))

    thread = threading.Thread(target=mover)
    thread.start()
    try:
        for _ in range(5000):
            assert clock.now() >= T0
    finally:
        done.set()
        thread.join()


async def test_a_clock_in_another_zone_fires_a_timeout_at_its_due_instant_not_before(
    database: MemoryDatabase,
    store: BaseEventStore,
) -> None:
    clock = VirtualClock(T0.astimezone(timezone(timedelta(hours=1))))
    processes = await _processes(database, store, clock)
    await processes.handle(BookingRequested("b"), trigger="t1")
    clock.advance(timedelta(minutes=1))
    assert await processes.fire_due() == 0, "fired 59 minutes early"
