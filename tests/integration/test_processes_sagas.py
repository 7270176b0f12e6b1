"""A three-step saga failing at each step in turn: what was done is undone, latest first, once.

``CampaignLaunch`` reserves a budget, books an ad slot and notifies a partner, each
through a command whose handler (``CampaignDesk``) appends what it did to the
campaign's stream. A step told to fail appends a refusal instead, and the saga sends
the compensations of the steps done before it. The campaign's stream then shows every
effect in the order the dispatcher ran the commands.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from processes_domain import (
    T0,
    AdSlotBooked,
    AdSlotCancelled,
    AdSlotRefused,
    BudgetRefused,
    BudgetReleased,
    BudgetReserved,
    CampaignDesk,
    CampaignLaunch,
    CampaignLaunched,
    PartnerNotified,
    PartnerUnreachable,
    Wired,
    campaign_stream,
    open_wired,
    running,
    settle,
    steps,
    store_url,
    stream_events,
)

from chronik.eventstore import BaseEventStore
from chronik.processes import VirtualClock


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


def outcome(failing: str | None, c: str = "c") -> tuple[list[object], list[object], str]:
    """For a failing step: the effects up to the failure, the compensations, the status."""
    launched, reserved, booked = (
        CampaignLaunched(c, 500),
        BudgetReserved(c, 500),
        AdSlotBooked(c, f"slot-{c}"),
    )
    if failing is None:
        return [launched, reserved, booked, PartnerNotified(c)], [], "live"
    if failing == "budget":
        return [launched, BudgetRefused(c, "no budget left")], [], "failed"
    if failing == "slot":
        return (
            [launched, reserved, AdSlotRefused(c, "sold out")],
            [BudgetReleased(c, 500)],
            "failed",
        )
    assert failing == "partner"
    done = [launched, reserved, booked, PartnerUnreachable(c, "timed out")]
    return done, [AdSlotCancelled(c, f"slot-{c}"), BudgetReleased(c, 500)], "failed"


@pytest.mark.parametrize("failing", [None, "budget", "slot", "partner"])
async def test_a_failing_step_compensates_every_step_done_before_it_latest_first_once_each(
    wired: Wired, store: BaseEventStore, failing: str | None
) -> None:
    desk = CampaignDesk(store, failing={} if failing is None else {"c": failing})
    processes = wired.processes(
        [CampaignLaunch()], desk.handlers(), clock=VirtualClock(T0), idle_wait=0.05
    )
    async with running(processes):
        await store.append(campaign_stream("c"), [CampaignLaunched("c", 500)])
        await settle(processes)
        # Nothing more comes later: no compensation arrives late, none goes twice.
        await asyncio.sleep(0.15)
        await settle(processes)

    done, compensations, status = outcome(failing)
    assert await stream_events(store, campaign_stream("c")) == done + compensations
    handled = [name for name, _ in desk.calls]
    assert handled == [type(e).__name__ for e in (done + compensations)[1:]]
    assert max(Counter(handled).values()) == 1, "each handler ran once"
    instance = await processes.instance(CampaignLaunch.name, "c")
    assert instance is not None
    assert (instance.status, instance.finished) == (status, True)
    assert instance.steps == len(done), "one step per event of the saga, none for the undoing"
    assert instance.timeouts == {}


async def test_the_compensations_are_sent_by_the_failing_step_latest_first_with_their_own_ids(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    desk = CampaignDesk(store, failing={"c": "partner"})
    processes = wired.processes([CampaignLaunch()], desk.handlers(), idle_wait=0.05)
    async with running(processes):
        await store.append(campaign_stream("c"), [CampaignLaunched("c", 500)])
        await settle(processes)

    taken = await steps(store, CampaignLaunch(), "c")
    assert [s.trigger_type for s in taken] == [
        "CampaignLaunched",
        "BudgetReserved",
        "AdSlotBooked",
        "PartnerUnreachable",
    ]
    last = taken[-1]
    assert [c["type"] for c in last.commands] == [
        "processes_test.cancel_ad_slot",
        "processes_test.release_budget",
    ]
    assert [c["data"] for c in last.commands] == [
        {"campaign_id": "c", "slot": "slot-c"},
        {"campaign_id": "c", "amount": 500},
    ]
    ids = [c["id"] for s in taken for c in s.commands]
    assert len(set(ids)) == len(ids) == 5 and all(ids)
    assert last.data["_compensations"] == [], "a compensation is sent once, then forgotten"
    assert last.finished


async def test_sagas_of_several_campaigns_failing_at_different_steps_compensate_independently(
    wired: Wired,
    store: BaseEventStore,
) -> None:
    failing = {"a": "budget", "b": "slot", "c": "partner"}
    desk = CampaignDesk(store, failing=failing)
    processes = wired.processes([CampaignLaunch()], desk.handlers(), idle_wait=0.05)
    async with running(processes):
        for campaign in ("a", "b", "c", "d"):
            await store.append(campaign_stream(campaign), [CampaignLaunched(campaign, 500)])
        await settle(processes)

    for campaign in ("a", "b", "c", "d"):
        done, compensations, status = outcome(failing.get(campaign), campaign)
        effects = await stream_events(store, campaign_stream(campaign))
        assert effects == done + compensations, campaign
        instance = await processes.instance(CampaignLaunch.name, campaign)
        assert instance is not None and instance.status == status
