"""``ProcessesAdmin``: typed views of process instances and their steps, on every database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from processes_domain import (
    HOLD,
    T0,
    BasketCount,
    BasketOpened,
    CancelOrder,
    ItemAdded,
    OrderPlaced,
    PaymentHold,
    PaymentReceived,
    Wired,
    cancel_order_by_appending,
    order_stream,
    running,
    settle,
    wait_until,
)

from chronik.adapters import Database
from chronik.processes import InstanceView, ProcessesAdmin, ProcessStep, VirtualClock


@pytest.fixture
async def admin(any_database: Database) -> ProcessesAdmin:
    """Processes that ran on the database: two orders (one expired), one basket."""
    wired = Wired(any_database)
    store = wired.store
    clock = VirtualClock(T0)
    processes = wired.processes(
        [PaymentHold(), BasketCount()],
        {CancelOrder: cancel_order_by_appending(store)},
        clock=clock,
        idle_wait=0.05,
        timer_wait=0.02,
    )
    async with running(processes):
        await store.append(order_stream("expired"), [OrderPlaced("expired")])
        await settle(processes)
        clock.advance(HOLD + timedelta(minutes=1))

        async def expired() -> bool:
            view = await processes.instance(PaymentHold.name, "expired")
            return view is not None and view.finished

        await wait_until(expired)
        await store.append(order_stream("paid"), [OrderPlaced("paid"), PaymentReceived("paid")])
        await store.append("basket-b", [BasketOpened("b"), ItemAdded("b", 7)])
        await settle(processes)
    return ProcessesAdmin(any_database.projections(), any_database.event_store(wired.store.types))


async def test_instances_are_typed_views_filtered_by_process_and_status(
    admin: ProcessesAdmin,
) -> None:
    assert await admin.indexed()
    every = {(v.process, v.instance): v for v in await admin.instances()}
    assert set(every) == {
        ("payment_hold", "expired"),
        ("payment_hold", "paid"),
        ("basket_count", "b"),
    }
    assert all(isinstance(v, InstanceView) for v in every.values())
    basket = every[("basket_count", "b")]
    assert (basket.status, basket.finished, basket.steps) == ("counting", False, 2)
    assert (basket.last_trigger, basket.data) == ("ItemAdded", {"count": 1, "items": [7]})
    holds = await admin.instances(process="payment_hold")
    assert sorted(v.instance for v in holds) == ["expired", "paid"]
    cancelled = await admin.instances(status="cancelled")
    assert [(v.process, v.instance) for v in cancelled] == [("payment_hold", "expired")]
    assert await admin.instances(process="payment_hold", status="counting") == []
    assert len(await admin.instances(limit=1)) == 1


async def test_one_instance_is_its_view_and_an_unknown_one_is_none(admin: ProcessesAdmin) -> None:
    paid = await admin.instance("payment_hold", "paid")
    assert paid is not None
    assert (paid.status, paid.finished, paid.steps, paid.timeouts) == ("confirmed", True, 2, {})
    assert await admin.instance("payment_hold", "nope") is None
    assert await admin.instance("nope", "paid") is None


async def test_steps_are_each_step_an_instance_took_with_the_commands_it_sent(
    admin: ProcessesAdmin,
) -> None:
    steps = await admin.steps("payment_hold", "expired")
    assert all(isinstance(s, ProcessStep) for s in steps)
    shown = [(s.version, s.trigger_type, s.status, s.finished, s.commands) for s in steps]
    assert shown == [
        (1, "OrderPlaced", "awaiting_payment", False, ()),
        (2, "timeout:payment", "cancelled", True, ("processes_test.cancel_order",)),
    ]
    assert steps[0].recorded_at <= steps[1].recorded_at
    assert await admin.steps("payment_hold", "nope") == []


async def test_a_database_where_no_process_ran_has_no_index_and_no_instances(
    any_database: Database,
) -> None:
    backend = any_database.projections()
    await backend.setup()
    admin = ProcessesAdmin(backend, any_database.event_store(Wired(any_database).store.types))
    assert not await admin.indexed()
    assert await admin.instances() == []
    assert await admin.instance("payment_hold", "expired") is None
    assert await admin.steps("payment_hold", "expired") == []
