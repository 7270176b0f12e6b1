"""What the processes integration tests share: three processes, their handlers, the waits.

- ``CampaignLaunch``, a three-step saga: reserve a budget, book an ad slot, notify the
  partner. ``CampaignDesk`` handles its commands by appending events to the campaign's
  stream; told to fail a step, it appends the refusal, which makes the saga compensate.
- ``PaymentHold``, a process manager waiting on a timeout: an order placed is held for
  thirty minutes; a payment confirms it, the timeout cancels it (``CancelOrder``).
- ``BasketCount``, a process that counts the items added to a basket (one step each).

This module does not import pytest: the timeout worker process imports it too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chronik.adapters import Database, open_database
from chronik.domain import command, event
from chronik.eventstore import BaseEventStore, EventTypes
from chronik.processes import (
    CommandHandler,
    FailurePolicy,
    Processes,
    ProcessManager,
    ProcessStepped,
    Step,
    on_timeout,
    process_index,
    starts,
    when,
)
from chronik.projections import InlineProjections

#: the virtual time every test starts at
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# -- the campaign saga -------------------------------------------------------------------


@event("processes_test.campaign_launched")
@dataclass(frozen=True)
class CampaignLaunched:
    campaign_id: str
    budget: int


@event("processes_test.budget_reserved")
@dataclass(frozen=True)
class BudgetReserved:
    campaign_id: str
    amount: int


@event("processes_test.budget_refused")
@dataclass(frozen=True)
class BudgetRefused:
    campaign_id: str
    reason: str


@event("processes_test.ad_slot_booked")
@dataclass(frozen=True)
class AdSlotBooked:
    campaign_id: str
    slot: str


@event("processes_test.ad_slot_refused")
@dataclass(frozen=True)
class AdSlotRefused:
    campaign_id: str
    reason: str


@event("processes_test.partner_notified")
@dataclass(frozen=True)
class PartnerNotified:
    campaign_id: str


@event("processes_test.partner_unreachable")
@dataclass(frozen=True)
class PartnerUnreachable:
    campaign_id: str
    reason: str


@event("processes_test.budget_released")
@dataclass(frozen=True)
class BudgetReleased:
    campaign_id: str
    amount: int


@event("processes_test.ad_slot_cancelled")
@dataclass(frozen=True)
class AdSlotCancelled:
    campaign_id: str
    slot: str


@command("processes_test.reserve_budget")
@dataclass(frozen=True)
class ReserveBudget:
    campaign_id: str
    amount: int


@command("processes_test.book_ad_slot")
@dataclass(frozen=True)
class BookAdSlot:
    campaign_id: str


@command("processes_test.notify_partner")
@dataclass(frozen=True)
class NotifyPartner:
    campaign_id: str


@command("processes_test.release_budget")
@dataclass(frozen=True)
class ReleaseBudget:
    campaign_id: str
    amount: int


@command("processes_test.cancel_ad_slot")
@dataclass(frozen=True)
class CancelAdSlot:
    campaign_id: str
    slot: str


STEPS = ("budget", "slot", "partner")


class CampaignLaunch(ProcessManager):
    """Reserve the budget, book the slot, notify the partner; undo what was done if one fails."""

    name = "campaign_launch"
    correlation_key = "campaign_id"

    @starts(CampaignLaunched)
    def launched(self, e: CampaignLaunched, p: Step) -> None:
        p.send(ReserveBudget(e.campaign_id, e.budget))
        p.goto("reserving_budget")

    @when("reserving_budget", BudgetReserved)
    def budget_reserved(self, e: BudgetReserved, p: Step) -> None:
        p.on_failure(ReleaseBudget(e.campaign_id, e.amount))
        p.send(BookAdSlot(e.campaign_id))
        p.goto("booking_slot")

    @when("booking_slot", AdSlotBooked)
    def slot_booked(self, e: AdSlotBooked, p: Step) -> None:
        p.on_failure(CancelAdSlot(e.campaign_id, e.slot))
        p.send(NotifyPartner(e.campaign_id))
        p.goto("notifying_partner")

    @when("notifying_partner", PartnerNotified)
    def partner_notified(self, e: PartnerNotified, p: Step) -> None:
        p.goto("live")
        p.finish()

    @when(
        ("reserving_budget", "booking_slot", "notifying_partner"),
        BudgetRefused,
        AdSlotRefused,
        PartnerUnreachable,
    )
    def step_failed(self, e: BudgetRefused | AdSlotRefused | PartnerUnreachable, p: Step) -> None:
        p.compensate()
        p.goto("failed")
        p.finish()


def campaign_stream(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


@dataclass
class CampaignDesk:
    """The saga's command handlers: each appends what it did to the campaign's stream.

    ``failing`` maps a campaign to the step ("budget", "slot" or "partner") that fails
    for it: that handler appends a refusal instead of a success. ``calls`` records every
    handler call, by command type name.
    """

    store: BaseEventStore
    failing: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def _record(self, campaign_id: str, done: object) -> None:
        self.calls.append((type(done).__name__, campaign_id))
        await self.store.append(campaign_stream(campaign_id), [done])

    async def reserve_budget(self, c: ReserveBudget) -> None:
        if self.failing.get(c.campaign_id) == "budget":
            await self._record(c.campaign_id, BudgetRefused(c.campaign_id, "no budget left"))
        else:
            await self._record(c.campaign_id, BudgetReserved(c.campaign_id, c.amount))

    async def book_ad_slot(self, c: BookAdSlot) -> None:
        if self.failing.get(c.campaign_id) == "slot":
            await self._record(c.campaign_id, AdSlotRefused(c.campaign_id, "sold out"))
        else:
            await self._record(c.campaign_id, AdSlotBooked(c.campaign_id, f"slot-{c.campaign_id}"))

    async def notify_partner(self, c: NotifyPartner) -> None:
        if self.failing.get(c.campaign_id) == "partner":
            await self._record(c.campaign_id, PartnerUnreachable(c.campaign_id, "timed out"))
        else:
            await self._record(c.campaign_id, PartnerNotified(c.campaign_id))

    async def release_budget(self, c: ReleaseBudget) -> None:
        await self._record(c.campaign_id, BudgetReleased(c.campaign_id, c.amount))

    async def cancel_ad_slot(self, c: CancelAdSlot) -> None:
        await self._record(c.campaign_id, AdSlotCancelled(c.campaign_id, c.slot))

    def handlers(self) -> dict[type, CommandHandler | tuple[CommandHandler, FailurePolicy]]:
        return {
            ReserveBudget: self.reserve_budget,
            BookAdSlot: self.book_ad_slot,
            NotifyPartner: self.notify_partner,
            ReleaseBudget: self.release_budget,
            CancelAdSlot: self.cancel_ad_slot,
        }


# -- the payment hold --------------------------------------------------------------------


@event("processes_test.order_placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@event("processes_test.payment_received")
@dataclass(frozen=True)
class PaymentReceived:
    order_id: str


@event("processes_test.order_cancelled")
@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    reason: str


@command("processes_test.cancel_order")
@dataclass(frozen=True)
class CancelOrder:
    order_id: str


HOLD = timedelta(minutes=30)


class PaymentHold(ProcessManager):
    """An order waits thirty minutes for its payment, then is cancelled."""

    name = "payment_hold"
    correlation_key = "order_id"

    @starts(OrderPlaced)
    def placed(self, e: OrderPlaced, p: Step) -> None:
        p.schedule("payment", after=HOLD)
        p.goto("awaiting_payment")

    @when("awaiting_payment", PaymentReceived)
    def paid(self, e: PaymentReceived, p: Step) -> None:
        p.cancel("payment")
        p.goto("confirmed")
        p.finish()

    @on_timeout("payment")
    def expired(self, p: Step) -> None:
        p.send(CancelOrder(p.instance))
        p.goto("cancelled")
        p.finish()


def order_stream(order_id: str) -> str:
    return f"order-{order_id}"


def cancel_order_by_appending(store: BaseEventStore) -> CommandHandler:
    async def cancel_order(c: CancelOrder) -> None:
        await store.append(order_stream(c.order_id), [OrderCancelled(c.order_id, "unpaid")])

    return cancel_order


# -- the basket count --------------------------------------------------------------------


@event("processes_test.basket_opened")
@dataclass(frozen=True)
class BasketOpened:
    basket_id: str


@event("processes_test.item_added")
@dataclass(frozen=True)
class ItemAdded:
    basket_id: str
    item: int


class BasketCount(ProcessManager):
    """Counts a basket's items, and remembers which were counted."""

    name = "basket_count"
    correlation_key = "basket_id"

    @starts(BasketOpened)
    def opened(self, e: BasketOpened, p: Step) -> None:
        p.data.update(count=0, items=[])
        p.goto("counting")

    @when("counting", ItemAdded)
    def added(self, e: ItemAdded, p: Step) -> None:
        p.data["count"] += 1
        p.data["items"] = [*p.data["items"], e.item]


TYPES = EventTypes(
    [
        CampaignLaunched,
        BudgetReserved,
        BudgetRefused,
        AdSlotBooked,
        AdSlotRefused,
        PartnerNotified,
        PartnerUnreachable,
        BudgetReleased,
        AdSlotCancelled,
        OrderPlaced,
        PaymentReceived,
        OrderCancelled,
        BasketOpened,
        ItemAdded,
    ]
)

# -- opening stores, running processes, waiting --------------------------------------------


def store_url(kind: str, tmp_path: Path, postgres: str | None = None) -> str:
    """The URL of a fresh store of ``kind``: "memory", "sqlite" or "postgres"."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/processes.db"
    assert postgres is not None, "a PostgreSQL URL with its schema"
    return postgres


class Wired:
    """A test's database wired as the runtime wires it: its event store, and the one
    process index that every ``Processes`` on the store shares."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.store = database.event_store(TYPES)
        self.index: InlineProjections = process_index(self.store, database.projections())

    def processes(
        self,
        managers: list[ProcessManager],
        commands: dict[type, Any],
        **options: Any,
    ) -> Processes:
        """Processes on the store, with the database's backend and the shared index."""
        return Processes(
            self.store,
            managers,
            commands,
            backend=self.database.projections(),
            index=self.index,
            **options,
        )


async def open_wired(url: str) -> Wired:
    """The database at ``url``, wired; close ``wired.database`` when done."""
    return Wired(await open_database(url))


@contextlib.asynccontextmanager
async def running(processes: Processes) -> AsyncIterator[asyncio.Task[None]]:
    """``processes`` set up and running in a task, stopped (and awaited) on the way out."""
    await processes.setup()
    stop = asyncio.Event()
    task = asyncio.create_task(processes.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def wait_until(
    check: Callable[[], Awaitable[bool]], seconds: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds; AssertionError after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {seconds} s")
        await asyncio.sleep(0.01)


async def checkpoints(processes: Processes) -> tuple[int, int]:
    """Where the follower and the dispatcher are."""
    events = await processes.backend.load(f"{processes.name}_events")
    commands = await processes.backend.load(f"{processes.name}_commands")
    assert events is not None and commands is not None
    return events.checkpoint, commands.checkpoint


async def settle(processes: Processes, seconds: float = 15.0) -> None:
    """Wait until the follower and the dispatcher have both caught up with the head.

    Each advances its checkpoint only after the appends its page caused, so both at the
    head means no step and no command is in flight (timers aside). The head is read
    after the checkpoints: read before, it may miss what a loop appended in between.
    """

    async def caught_up() -> bool:
        at = await checkpoints(processes)
        head = await processes.store.head_position()
        return at == (head, head)

    await wait_until(caught_up, seconds, "follower and dispatcher at the head")


async def steps(
    store: BaseEventStore, process: ProcessManager, instance: str
) -> list[ProcessStepped]:
    """The stored steps of one instance, in order."""
    records = await store.read_stream(process.stream_id(instance))
    out = []
    for r in records:
        assert isinstance(r.event, ProcessStepped), r.event
        out.append(r.event)
    return out


async def stream_events(store: BaseEventStore, stream_id: str) -> list[object]:
    return [r.event for r in await store.read_stream(stream_id)]
