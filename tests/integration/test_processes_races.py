"""Triggers at once on one instance: one winner between an event and its timeout, no lost step.

Races are made likely, not hoped for: ``Contention`` makes every read of a process
stream yield before returning, so concurrent steps load the same version and all but
one of them meet a conflict on append, and counts the conflicts (the optimistic
concurrency retries the tests claim to exercise).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from processes_domain import (
    HOLD,
    T0,
    BasketCount,
    BasketOpened,
    CancelOrder,
    ItemAdded,
    OrderCancelled,
    OrderPlaced,
    PaymentHold,
    PaymentReceived,
    Wired,
    cancel_order_by_appending,
    open_wired,
    order_stream,
    running,
    settle,
    steps,
    store_url,
    stream_events,
    wait_until,
)

from chronik.errors import ConcurrencyError
from chronik.eventstore import AppendResult, BaseEventStore, RecordedEvent
from chronik.processes import Processes, VirtualClock


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def wired(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Wired]:
    postgres = None
    if request.param == "postgres":
        postgres = f"{request.getfixturevalue('postgres_url')}?schema="
        postgres += request.getfixturevalue("pg_schema")
    wired = await open_wired(store_url(request.param, tmp_path, postgres))
    yield wired
    await wired.database.close()


@pytest.fixture
def store(wired: Wired) -> BaseEventStore:
    return wired.store


class Contention:
    """Reads of process streams yield (for up to ``delay`` s); appends' conflicts are counted."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, store: BaseEventStore, delay: float = 0.0
    ) -> None:
        self.conflicts = 0
        self.rng = random.Random(11)
        read, append = store.read_stream, store.append

        async def read_stream(stream_id: str, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
            records = await read(stream_id, *args, **kwargs)
            if stream_id.startswith("process-"):
                await asyncio.sleep(self.rng.uniform(0, delay))
            return records

        async def counting_append(*args: Any, **kwargs: Any) -> AppendResult:
            try:
                return await append(*args, **kwargs)
            except ConcurrencyError:
                self.conflicts += 1
                raise

        monkeypatch.setattr(store, "read_stream", read_stream)
        monkeypatch.setattr(store, "append", counting_append)


# -- the awaited event and the timeout at once -----------------------------------------------


async def _one_way_only(store: BaseEventStore, processes: Processes, order: str) -> str:
    """Check the instance ended confirmed or cancelled, not both; return which."""
    taken = await steps(store, PaymentHold(), order)
    kinds = [s.trigger_type for s in taken]
    assert kinds in (
        ["OrderPlaced", "PaymentReceived"],
        ["OrderPlaced", "timeout:payment"],
    ), kinds
    last = taken[-1]
    assert last.finished
    winner = last.status
    assert winner == ("confirmed" if kinds[1] == "PaymentReceived" else "cancelled")
    view = await processes.instance(PaymentHold.name, order)
    assert view is not None
    assert (view.status, view.steps, view.timeouts) == (winner, 2, {})
    return winner


async def test_an_event_and_its_timeout_handled_at_once_end_the_instance_one_way_only(
    wired: Wired, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock(T0)
    processes = wired.processes([PaymentHold()], {}, clock=clock)
    await processes.setup()
    contention = Contention(monkeypatch, store, delay=0.002)
    winners: list[str] = []
    for run in range(20):
        order = f"o{run}"
        await processes.handle(OrderPlaced(order), trigger=f"placed-{order}")
        clock.advance(HOLD + timedelta(seconds=1))
        _, fired = await asyncio.gather(
            processes.handle(PaymentReceived(order), trigger=f"paid-{order}"),
            processes.fire_due(),
        )
        winners.append(await _one_way_only(store, processes, order))
        assert fired == (1 if winners[-1] == "cancelled" else 0)
    assert contention.conflicts >= 1, "the race never happened"
    assert await processes.index.read_models.find("process_index", "timeouts") == []


async def test_an_event_appended_as_its_timeout_fires_ends_the_running_instance_one_way_only(
    wired: Wired, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock(T0)
    processes = wired.processes(
        [PaymentHold()],
        {CancelOrder: cancel_order_by_appending(store)},
        clock=clock,
        idle_wait=0.05,
        timer_wait=0.01,  # the timer loop races as well
    )
    Contention(monkeypatch, store, delay=0.002)
    async with running(processes):
        for run in range(8):
            order = f"o{run}"
            await store.append(order_stream(order), [OrderPlaced(order)])
            await settle(processes)
            clock.advance(HOLD + timedelta(seconds=1))
            await asyncio.gather(
                store.append(order_stream(order), [PaymentReceived(order)]),
                processes.fire_due(),
            )

            async def finished(o: str = order) -> bool:
                view = await processes.instance(PaymentHold.name, o)
                return view is not None and view.finished

            await wait_until(finished)
            await settle(processes)
            winner = await _one_way_only(store, processes, order)
            effects = await stream_events(store, order_stream(order))
            cancellations = [e for e in effects if isinstance(e, OrderCancelled)]
            assert len(cancellations) == (1 if winner == "cancelled" else 0)


# -- many triggers for one instance ------------------------------------------------------------


def _check_count(taken: list[Any], expected_items: set[int]) -> None:
    assert len(taken) == len(expected_items) + 1, "one step per item, plus the start"
    assert len({s.trigger for s in taken}) == len(taken), "a trigger stepped twice"
    last = taken[-1]
    assert last.data["count"] == len(expected_items)
    assert sorted(last.data["items"]) == sorted(expected_items)
    assert len(last.data["items"]) == len(set(last.data["items"]))


async def test_fifty_items_handled_at_once_are_each_counted_once_through_the_retries(
    wired: Wired, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = wired.processes([BasketCount()], {}, clock=VirtualClock(T0))
    await processes.setup()
    await processes.handle(BasketOpened("b"), trigger="opened")
    contention = Contention(monkeypatch, store)
    await asyncio.gather(
        *(processes.handle(ItemAdded("b", i), trigger=f"item-{i}") for i in range(50))
    )
    _check_count(await steps(store, BasketCount(), "b"), set(range(50)))
    assert contention.conflicts > 0, "no step was retried"
    view = await processes.instance(BasketCount.name, "b")
    assert view is not None
    assert (view.steps, view.data["count"]) == (51, 50)


async def test_fifty_items_appended_at_once_while_the_follower_runs_are_each_counted_once(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    processes = wired.processes([BasketCount()], {}, clock=VirtualClock(T0), idle_wait=0.05)
    async with running(processes):
        await store.append("basket-b", [BasketOpened("b")])
        await settle(processes)
        await asyncio.gather(*(store.append(f"item-{i}", [ItemAdded("b", i)]) for i in range(50)))
        await settle(processes)
    _check_count(await steps(store, BasketCount(), "b"), set(range(50)))


async def test_items_appended_and_items_handled_directly_at_once_are_each_counted_once(
    wired: Wired, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = wired.processes([BasketCount()], {}, clock=VirtualClock(T0), idle_wait=0.01)
    contention = Contention(monkeypatch, store)
    async with running(processes):
        await store.append("basket-b", [BasketOpened("b")])
        await settle(processes)
        # The follower steps for the appended half while a consumer handles the other.
        await asyncio.gather(
            *(store.append(f"item-{i}", [ItemAdded("b", i)]) for i in range(0, 50, 2)),
            *(processes.handle(ItemAdded("b", i), trigger=f"msg-{i}") for i in range(1, 50, 2)),
        )
        await settle(processes)
    _check_count(await steps(store, BasketCount(), "b"), set(range(50)))
    assert contention.conflicts > 0, "the follower and the direct steps never met"


async def test_the_same_trigger_handled_twice_at_once_takes_one_step(
    wired: Wired, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = wired.processes([BasketCount()], {}, clock=VirtualClock(T0))
    await processes.setup()
    await processes.handle(BasketOpened("b"), trigger="opened")
    contention = Contention(monkeypatch, store)
    for i in range(10):
        event = ItemAdded("b", i)
        await asyncio.gather(*(processes.handle(event, trigger=f"item-{i}") for _ in range(3)))
    _check_count(await steps(store, BasketCount(), "b"), set(range(10)))
    assert contention.conflicts > 0


async def test_a_trigger_that_gives_up_under_contention_raises_and_counts_once_when_handled_again(
    wired: Wired, store: BaseEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = wired.processes([BasketCount()], {}, clock=VirtualClock(T0), retries_on_conflict=3)
    await processes.setup()
    await processes.handle(BasketOpened("b"), trigger="opened")
    Contention(monkeypatch, store)
    outcomes = await asyncio.gather(
        *(processes.handle(ItemAdded("b", i), trigger=f"item-{i}") for i in range(12)),
        return_exceptions=True,
    )
    gave_up = [i for i, outcome in enumerate(outcomes) if outcome is not None]
    assert gave_up, "with 3 tries, 12 triggers at once cannot all get through"
    assert all(isinstance(outcomes[i], ConcurrencyError) for i in gave_up)
    counted = set(range(12)) - set(gave_up)
    _check_count(await steps(store, BasketCount(), "b"), counted)
    for i in gave_up:  # the caller (a consumer) handles the message again
        await processes.handle(ItemAdded("b", i), trigger=f"item-{i}")
    _check_count(await steps(store, BasketCount(), "b"), set(range(12)))
