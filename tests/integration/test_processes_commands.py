"""The command dispatcher: each command's effect once, and a failing handler's FailurePolicy.

Commands are dispatched at least once; a handler runs inside an idempotency scope keyed
by the command id, so the events it appends get ids derived from that id and a second
run of the same command appends nothing. A handler that keeps failing is retried, then
its policy decides: "skip" moves on, "park" keeps the step with the projections' parked
events (under "<processes name>_commands"), "stop" stops the dispatcher at that command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from processes_domain import (
    HOLD,
    T0,
    CampaignDesk,
    CampaignLaunch,
    CampaignLaunched,
    CancelAdSlot,
    CancelOrder,
    OrderCancelled,
    OrderPlaced,
    PaymentHold,
    ReleaseBudget,
    Wired,
    campaign_stream,
    checkpoints,
    open_wired,
    order_stream,
    running,
    settle,
    steps,
    store_url,
    stream_events,
    wait_until,
)

from chronik.eventstore import BaseEventStore
from chronik.processes import FailurePolicy, Processes, VirtualClock


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


async def _rewind_dispatcher(processes: Processes) -> None:
    """Move the dispatcher's checkpoint back to the start: every command goes again."""
    name = f"{processes.name}_commands"
    _, at = await checkpoints(processes)
    async with processes.backend.transaction() as btx:
        await btx.advance(name, 1, False, at, 0)


# -- a command sent twice ------------------------------------------------------------------


async def test_commands_dispatched_again_from_a_rewound_checkpoint_append_nothing_new(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    desk = CampaignDesk(store, failing={"b": "slot", "c": "partner"})
    processes = wired.processes([CampaignLaunch()], desk.handlers(), idle_wait=0.05)
    async with running(processes):
        for campaign in ("a", "b", "c"):
            await store.append(campaign_stream(campaign), [CampaignLaunched(campaign, 9)])
        await settle(processes)
    before = {c: await stream_events(store, campaign_stream(c)) for c in ("a", "b", "c")}
    head = await store.head_position()
    first_calls = list(desk.calls)
    assert processes.dispatched == len(first_calls) == 3 + 3 + 5

    await _rewind_dispatcher(processes)
    again = wired.processes([CampaignLaunch()], desk.handlers(), idle_wait=0.05)
    async with running(again):
        await settle(again)

    assert desk.calls == first_calls + first_calls, "every command was sent a second time"
    assert again.dispatched == 0, "each second run found its effect already stored"
    assert await store.head_position() == head
    for campaign, events in before.items():
        assert await stream_events(store, campaign_stream(campaign)) == events


async def test_a_command_dispatched_twice_by_hand_appends_its_event_once(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    clock = VirtualClock(T0)
    processes = wired.processes([PaymentHold()], {CancelOrder: _cancel_order(store)}, clock=clock)
    await processes.setup()
    await processes.handle(OrderPlaced("o"), trigger="placed")
    clock.advance(HOLD)
    assert await processes.fire_due() == 1
    recorded = (await store.read_stream(PaymentHold().stream_id("o")))[-1]
    for _ in range(2):
        await processes._on_step(recorded)
    cancelled = await store.read_stream(order_stream("o"))
    assert [r.event for r in cancelled] == [OrderCancelled("o", "unpaid")]
    assert processes.dispatched == 1
    # The effect says what caused it: the step that sent the command.
    assert cancelled[0].metadata.causation_id == str(recorded.id)


def _cancel_order(store: BaseEventStore) -> Callable[[CancelOrder], Awaitable[None]]:
    async def cancel_order(c: CancelOrder) -> None:
        await store.append(order_stream(c.order_id), [OrderCancelled(c.order_id, "unpaid")])

    return cancel_order


async def test_a_handler_retried_after_failing_midway_completes_the_rest_of_its_work(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    calls: list[CancelOrder] = []

    async def cancel_and_notify(c: CancelOrder) -> None:
        calls.append(c)
        await store.append(order_stream(c.order_id), [OrderCancelled(c.order_id, "unpaid")])
        if len(calls) == 1:
            raise ConnectionError("the mail relay is down")  # after the first effect
        await store.append(f"mail-{c.order_id}", [OrderCancelled(c.order_id, "mailed")])

    clock = VirtualClock(T0)
    processes = wired.processes(
        [PaymentHold()],
        {CancelOrder: (cancel_and_notify, FailurePolicy(retries=2, backoff=0.01))},
        clock=clock,
    )
    await processes.setup()
    await processes.handle(OrderPlaced("o"), trigger="placed")
    clock.advance(HOLD)
    await processes.fire_due()
    recorded = (await store.read_stream(PaymentHold().stream_id("o")))[-1]
    await processes._on_step(recorded)

    assert len(calls) == 2, "retried once"
    assert len(await store.read_stream(order_stream("o"))) == 1
    assert [r.event for r in await store.read_stream("mail-o")] == [OrderCancelled("o", "mailed")]


# -- a handler that keeps failing -------------------------------------------------------------


class Failing:
    """Cancels orders by appending, except the one it is told to fail on: that one raises."""

    def __init__(self, store: BaseEventStore, failing: str | None) -> None:
        self.store = store
        self.failing = failing
        self.calls: list[str] = []

    async def __call__(self, c: CancelOrder) -> None:
        self.calls.append(c.order_id)
        if c.order_id == self.failing:
            raise RuntimeError(f"cannot cancel {c.order_id}")
        await self.store.append(order_stream(c.order_id), [OrderCancelled(c.order_id, "unpaid")])


async def _two_expired_orders(
    wired: Wired, then: Literal["skip", "park", "stop"]
) -> tuple[Processes, Failing, asyncio.Task[None], asyncio.Event]:
    """Orders x then y expire; the handler fails on x, with ``then`` as its policy."""
    clock = VirtualClock(T0)
    handler = Failing(wired.store, "x")
    processes = wired.processes(
        [PaymentHold()],
        {CancelOrder: (handler, FailurePolicy(retries=2, backoff=0.01, then=then))},
        clock=clock,
        idle_wait=0.05,
        timer_wait=0.05,
    )
    await processes.setup()
    await processes.handle(OrderPlaced("x"), trigger="placed-x")
    clock.advance(timedelta(minutes=1))
    await processes.handle(OrderPlaced("y"), trigger="placed-y")
    clock.advance(HOLD)
    assert await processes.fire_due() == 2  # x's step, then y's
    stop = asyncio.Event()
    task = asyncio.create_task(processes.run(stop))
    return processes, handler, task, stop


async def test_a_command_whose_handler_keeps_failing_is_skipped_under_skip(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    processes, handler, task, stop = await _two_expired_orders(wired, "skip")
    try:
        await settle(processes)
    finally:
        stop.set()
        await task
    assert handler.calls == ["x", "x", "x", "y"], "tried three times, then moved on"
    assert await stream_events(store, order_stream("y")) == [OrderCancelled("y", "unpaid")]
    assert await processes.backend.parked(f"{processes.name}_commands") == []


async def test_a_command_whose_handler_keeps_failing_is_parked_under_park(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    processes, handler, task, stop = await _two_expired_orders(wired, "park")
    try:
        await settle(processes)
    finally:
        stop.set()
        await task
    assert handler.calls == ["x", "x", "x", "y"]
    assert await stream_events(store, order_stream("y")) == [OrderCancelled("y", "unpaid")]
    parked = await processes.backend.parked(f"{processes.name}_commands")
    assert len(parked) == 1
    step_x = (await store.read_stream(PaymentHold().stream_id("x")))[-1]
    assert (parked[0].position, parked[0].stream_id, parked[0].type) == (
        step_x.position,
        "process-payment_hold-x",
        "chronik.process_stepped",
    )
    assert parked[0].attempts == 3
    assert "command processes_test.cancel_order" in parked[0].error
    assert "RuntimeError: cannot cancel x" in parked[0].error
    assert await processes.backend.parked(f"{processes.name}_events") == []


@pytest.mark.parametrize("request_", ["replay-parked", "skip-parked"])
async def test_a_parked_step_is_replayed_or_skipped_on_request(
    wired: Wired, store: BaseEventStore, request_: str
) -> None:
    processes, handler, task, stop = await _two_expired_orders(wired, "park")
    name = f"{processes.name}_commands"
    try:
        await wait_until(lambda: _parked(processes, name, 1))
        handler.failing = None  # the handler is fixed
        await processes.backend.request(name, request_)
        await wait_until(lambda: _parked(processes, name, 0))
        await wait_until(lambda: _no_request(processes, name))
    finally:
        stop.set()
        await task
    cancelled = await stream_events(store, order_stream("x"))
    if request_ == "replay-parked":
        assert cancelled == [OrderCancelled("x", "unpaid")]
        assert handler.calls == ["x", "x", "x", "y", "x"]
    else:
        assert cancelled == []
        assert handler.calls == ["x", "x", "x", "y"]


async def _parked(processes: Processes, name: str, count: int) -> bool:
    return len(await processes.backend.parked(name)) == count


async def _no_request(processes: Processes, name: str) -> bool:
    row = await processes.backend.load(name)
    return row is not None and row.request is None


async def test_a_command_whose_handler_keeps_failing_stops_the_dispatcher_under_stop(
    wired: Wired, store: BaseEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "chronik.processes")
    processes, handler, task, stop = await _two_expired_orders(wired, "stop")
    try:
        await wait_until(lambda: _logged(caplog, "policy: stop"))
        await asyncio.sleep(0.5)  # ten idle waits: the dispatcher would have moved on by now
        assert handler.calls == ["x", "x", "x"], "y waits behind x"
        assert await stream_events(store, order_stream("y")) == []
        step_x = (await store.read_stream(PaymentHold().stream_id("x")))[-1]
        _, dispatched_to = await checkpoints(processes)
        assert dispatched_to < step_x.position, "x's step is not passed over"
        assert await processes.backend.parked(f"{processes.name}_commands") == []
        assert not task.done(), "the worker stays up, to start the loop again later"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    # The error is a field of the log line, beside its message.
    return any(text in f"{r.getMessage()} {getattr(r, 'error', '')}" for r in caplog.records)


async def test_two_commands_of_one_step_that_keep_failing_are_both_on_record_under_park(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    async def unavailable(c: ReleaseBudget | CancelAdSlot) -> None:
        raise RuntimeError(f"{type(c).__name__} is unavailable")

    desk = CampaignDesk(store, failing={"c": "partner"})
    policy = FailurePolicy(retries=0, then="park")
    handlers = {
        **desk.handlers(),
        ReleaseBudget: (unavailable, policy),
        CancelAdSlot: (unavailable, policy),
    }
    processes = wired.processes([CampaignLaunch()], handlers, idle_wait=0.05)
    async with running(processes):
        await store.append(campaign_stream("c"), [CampaignLaunched("c", 9)])
        await settle(processes)
    last = (await steps(store, CampaignLaunch(), "c"))[-1]
    assert [c["type"] for c in last.commands] == [
        "processes_test.cancel_ad_slot",
        "processes_test.release_budget",
    ]
    parked = await processes.backend.parked(f"{processes.name}_commands")
    errors = " | ".join(p.error for p in parked)
    assert "CancelAdSlot is unavailable" in errors
    assert "ReleaseBudget is unavailable" in errors


def _loops() -> list[str]:
    """The follower, dispatcher and timer loops running in this event loop."""
    names = []
    for task in asyncio.all_tasks():
        name = getattr(task.get_coro(), "__qualname__", "")
        if name in ("Processes._follow", "Processes._timers") and not task.done():
            names.append(name)
    return sorted(names)


async def test_when_the_stop_policy_stops_the_worker_none_of_its_loops_keeps_running(
    wired: Wired, store: BaseEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "chronik.processes")
    _, _, task, stop = await _two_expired_orders(wired, "stop")
    try:
        await wait_until(lambda: _logged(caplog, "policy: stop"))
        await asyncio.sleep(0.3)
        assert _loops() == [], "loops of the stopped worker"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
