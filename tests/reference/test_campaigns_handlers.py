"""Campaigns' use cases and the saga's commands, through their handlers on the memory store.

The demo's partner behaviour is the fake's setting, read from the header of the append
that created the campaign: no domain event carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from campaigns import commands, contracts, domain
from campaigns.handlers import BUDGET, BUDGET_SNAPSHOT_EVERY, CampaignHandlers, publish
from campaigns.partner import BEHAVIOUR_HEADER, FakePartner, behaviour_from_headers
from campaigns.upcasting import UPCASTERS
from chronik.adapters.memory.database import MemoryDatabase
from chronik.eventstore import BaseEventStore, EventTypes, Metadata
from chronik.messaging import MessageContext
from chronik.processes import VirtualClock
from sales import contracts as sales

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def message() -> MessageContext:
    return MessageContext("m1", "sales.order_submitted.v1", "sales", "lead-L1", T0, None, None, 1)


@pytest.fixture
def store() -> BaseEventStore:
    return MemoryDatabase().event_store(EventTypes(domain.EVENTS, upcasters=UPCASTERS))


@pytest.fixture
def handlers(store: BaseEventStore) -> CampaignHandlers:
    ids: Iterator[str] = iter(f"c{n}" for n in range(1, 100))
    partner = FakePartner(behaviour_of=behaviour_from_headers(store, "campaign-"))
    return CampaignHandlers(store, partner, clock=VirtualClock(T0), new_id=lambda: next(ids))


async def created(handlers: CampaignHandlers, cost: int, behaviour: str = "confirm") -> str:
    demo = Metadata(headers={BEHAVIOUR_HEADER: behaviour})
    done = await handlers.create_campaign(
        commands.CreateCampaign("Spring sale", cost), metadata=demo
    )
    return done.id


class TestCreateCampaign:
    async def test_a_campaign_is_a_draft_under_the_next_id(
        self, handlers: CampaignHandlers
    ) -> None:
        campaign_id = await created(handlers, 5_000)
        campaign = await handlers.campaigns.load(campaign_id)
        assert (campaign_id, campaign.status, campaign.cost_cents) == (
            "c1",
            domain.CampaignStatus.DRAFT,
            5_000,
        )

    async def test_a_campaign_of_no_cost_is_refused_by_name(
        self, handlers: CampaignHandlers
    ) -> None:
        with pytest.raises(domain.CostNotPositive):
            await handlers.create_campaign(commands.CreateCampaign("Free", 0))


class TestActivate:
    async def test_only_a_draft_is_activated(self, handlers: CampaignHandlers) -> None:
        campaign_id = await created(handlers, 5_000)
        done = await handlers.activate(commands.ActivateCampaign(campaign_id))
        assert done.result.version == 2
        with pytest.raises(domain.CampaignNotDraft, match="is activating"):
            await handlers.activate(commands.ActivateCampaign(campaign_id))


class TestTopUp:
    async def test_a_top_up_grows_the_one_budget(self, handlers: CampaignHandlers) -> None:
        done = await handlers.top_up(commands.TopUpBudget(5_000))
        assert (done.id, done.result.stream_id) == (BUDGET, "budget-main")
        assert (await handlers.budgets.load(BUDGET)).total_cents == 5_000


class TestTheSagasCommands:
    async def test_the_partner_answers_as_the_demo_asked_for_each_campaign(
        self, handlers: CampaignHandlers
    ) -> None:
        await handlers.top_up(commands.TopUpBudget(10_000))
        yes = await created(handlers, 1_000, "confirm")
        no = await created(handlers, 1_000, "reject")
        for campaign_id in (yes, no):
            await handlers.activate(commands.ActivateCampaign(campaign_id))
            await handlers.reserve_budget(domain.ReserveBudget(campaign_id, 1_000))
            await handlers.publish_with_partner(domain.PublishWithPartner(campaign_id))
        published = await handlers.campaigns.load(yes)
        rejected = await handlers.campaigns.load(no)
        assert published.status == domain.CampaignStatus.PUBLISHED
        assert published.partner_reference is not None
        assert (rejected.status, rejected.reason) == (
            domain.CampaignStatus.REJECTED,
            "the partner declined (CONTENT_POLICY)",
        )

    async def test_an_unreachable_partner_rejects_the_campaign(
        self, handlers: CampaignHandlers
    ) -> None:
        campaign_id = await created(handlers, 1_000, "fail")
        await handlers.activate(commands.ActivateCampaign(campaign_id))
        await handlers.publish_with_partner(domain.PublishWithPartner(campaign_id))
        campaign = await handlers.campaigns.load(campaign_id)
        assert campaign.status == domain.CampaignStatus.REJECTED
        assert campaign.reason is not None and "UNAVAILABLE" in campaign.reason

    async def test_a_campaign_created_without_the_header_is_confirmed(
        self, handlers: CampaignHandlers
    ) -> None:
        done = await handlers.create_campaign(commands.CreateCampaign("Plain", 1_000))
        await handlers.activate(commands.ActivateCampaign(done.id))
        await handlers.publish_with_partner(domain.PublishWithPartner(done.id))
        assert (await handlers.campaigns.load(done.id)).status == domain.CampaignStatus.PUBLISHED


class TestCreditOrder:
    async def test_an_order_in_euros_credits_its_share(self, handlers: CampaignHandlers) -> None:
        order = sales.OrderSubmitted("L1", "order-1", 12_345, "EUR", T0)
        await handlers.on_order_submitted(order, message())
        assert (await handlers.budgets.load(BUDGET)).total_cents == 1_235

    async def test_an_order_not_credited_is_recorded_with_the_reason(
        self, handlers: CampaignHandlers, store: BaseEventStore
    ) -> None:
        await handlers.credit_order(commands.CreditOrder("order-2", 500, "JPY", None, "no yen"))
        [record] = await store.read_stream("budget-main")
        assert record.event == domain.OrderNotCredited("order-2", 500, "JPY", "no yen", T0)


class TestPublishes:
    async def test_a_published_campaign_leaves_as_campaign_live(
        self, handlers: CampaignHandlers, store: BaseEventStore
    ) -> None:
        campaign_id = await created(handlers, 1_000)
        await handlers.activate(commands.ActivateCampaign(campaign_id))
        await handlers.publish_with_partner(domain.PublishWithPartner(campaign_id))
        last = (await store.read_stream(f"campaign-{campaign_id}"))[-1]
        assert publish(last) == contracts.CampaignLive(campaign_id, "Spring sale", T0)

    async def test_nothing_else_leaves(self, store: BaseEventStore) -> None:
        await store.append("campaign-c9", [domain.CampaignCreated("c9", "Ad", 1, T0)])
        [record] = await store.read_stream("campaign-c9")
        assert publish(record) is None


class TestStoredEventsOfTheOldShape:
    async def test_a_campaign_created_with_a_behaviour_in_the_event_still_reads(
        self, store: BaseEventStore
    ) -> None:
        # As version 1 was stored, read the way a store reads an event of an older version.
        stored = {"campaign_id": "c0", "name": "Old", "cost_cents": 900}
        raw = msgspec.json.encode({**stored, "partner_behaviour": "reject", "at": T0.isoformat()})
        obj = store.types.parse("campaign-c0", 1, raw)
        event = store.types.decode_slow("campaign-c0", 1, "campaigns.campaign_created", 1, obj, {})
        assert event == domain.CampaignCreated("c0", "Old", 900, T0)


class TestTheSagasCompensations:
    async def test_a_released_reservation_gives_the_money_back_once(
        self, handlers: CampaignHandlers
    ) -> None:
        await handlers.top_up(commands.TopUpBudget(5_000))
        await handlers.reserve_budget(domain.ReserveBudget("c1", 3_000))
        assert (await handlers.budgets.load(BUDGET)).available_cents == 2_000
        await handlers.release_budget(domain.ReleaseBudget("c1", 3_000))
        await handlers.release_budget(domain.ReleaseBudget("c1", 3_000))
        assert (await handlers.budgets.load(BUDGET)).available_cents == 5_000

    async def test_a_reservation_beyond_the_budget_is_refused_not_raised(
        self, handlers: CampaignHandlers, store: BaseEventStore
    ) -> None:
        await handlers.top_up(commands.TopUpBudget(1_000))
        await handlers.reserve_budget(domain.ReserveBudget("c1", 3_000))
        last = (await store.read_stream("budget-main"))[-1]
        assert last.event == domain.BudgetRefused("c1", 3_000, 1_000, T0)

    async def test_the_saga_rejects_or_cancels_an_activating_campaign(
        self, handlers: CampaignHandlers
    ) -> None:
        rejected, cancelled = await created(handlers, 1_000), await created(handlers, 1_000)
        for campaign_id in (rejected, cancelled):
            await handlers.activate(commands.ActivateCampaign(campaign_id))
        await handlers.reject_campaign(domain.RejectCampaign(rejected, "budget"))
        await handlers.cancel_campaign(domain.CancelCampaign(cancelled, "no answer"))
        assert (await handlers.campaigns.load(rejected)).status == domain.CampaignStatus.REJECTED
        assert (await handlers.campaigns.load(cancelled)).reason == "no answer"


class TestTheHotBudget:
    async def test_loading_the_budget_after_many_orders_reads_a_bounded_number_of_events(
        self, store: BaseEventStore, handlers: CampaignHandlers
    ) -> None:
        # Every order appends to the one budget stream; the snapshots keep a load short.
        read: list[int] = []
        load_events = store.load_events

        async def counted(*args: Any, **kwargs: Any) -> Any:
            events, last = await load_events(*args, **kwargs)
            read.append(len(events))
            return events, last

        store.load_events = counted  # type: ignore[method-assign]
        for n in range(1, 301):
            await handlers.credit_order(commands.CreditOrder(f"o{n}", 100, "EUR", 100))
            if n in (5, 150, 299, 300):
                read.clear()
                budget = await handlers.budgets.load(BUDGET)
                assert (budget.version, budget.total_cents) == (n, n * 100)
                # At most the events since the last snapshot: O(1), not O(orders).
                assert read == [n % BUDGET_SNAPSHOT_EVERY], (n, read)
