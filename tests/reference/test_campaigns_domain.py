"""Campaigns' Budget and Campaign aggregates, given past events, when a command, then events."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.domain import (
    EVENTS,
    ActivationRequested,
    Budget,
    BudgetIncreased,
    BudgetRefused,
    BudgetReleased,
    BudgetReserved,
    Campaign,
    CampaignCancelled,
    CampaignCreated,
    CampaignStatus,
    CostNotPositive,
    OrderNotCredited,
    PublicationConfirmed,
    PublicationRejected,
)
from chronik.domain import DomainError
from chronik.testing.scenario import Scenario

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
C1, C2 = "c1", "c2"

FUNDED = BudgetIncreased(10_000, "order-1", T0)
HELD_C2 = BudgetReserved(C2, 3_000, T0)


def budget(*history: object) -> Scenario[Budget]:
    return Scenario(Budget, "main").given(*history)


class TestBudgetIncrease:
    def test_an_order_grows_the_budget(self) -> None:
        budget().when(lambda b: b.increase(1_200, "order-7", T1)).then(
            BudgetIncreased(1_200, "order-7", T1)
        ).then_state(total_cents=1_200, available_cents=1_200)

    @pytest.mark.parametrize("amount", [0, -1])
    def test_a_budget_grows_only_by_a_positive_amount(self, amount: int) -> None:
        budget(FUNDED).when(lambda b: b.increase(amount, "top-up", T1)).then_raises(
            DomainError, match="positive"
        )


class TestOrderNotCredited:
    def test_an_order_not_credited_is_recorded_and_adds_nothing(self) -> None:
        reason = "an order of 1000 JPY is not credited"
        budget(FUNDED).when(lambda b: b.not_credited("order-2", 1_000, "JPY", reason, T1)).then(
            OrderNotCredited("order-2", 1_000, "JPY", reason, T1)
        ).then_state(total_cents=10_000, available_cents=10_000)


class TestBudgetReserve:
    def test_a_reservation_within_what_is_available_holds_the_money(self) -> None:
        budget(FUNDED).when(lambda b: b.reserve(C1, 4_000, T1)).then(
            BudgetReserved(C1, 4_000, T1)
        ).then_state(total_cents=10_000, held={C1: 4_000}, available_cents=6_000)

    def test_all_that_is_available_can_be_reserved(self) -> None:
        budget(FUNDED, HELD_C2).when(lambda b: b.reserve(C1, 7_000, T1)).then(
            BudgetReserved(C1, 7_000, T1)
        ).then_state(available_cents=0)

    def test_a_reservation_above_what_is_available_is_refused_with_what_there_is(self) -> None:
        budget(FUNDED, HELD_C2).when(lambda b: b.reserve(C1, 7_001, T1)).then(
            BudgetRefused(C1, 7_001, 7_000, T1)
        ).then_state(held={C2: 3_000}, available_cents=7_000)

    def test_an_empty_budget_refuses_any_reservation(self) -> None:
        budget().when(lambda b: b.reserve(C1, 1, T1)).then(BudgetRefused(C1, 1, 0, T1))

    def test_reserving_twice_for_a_campaign_changes_nothing(self) -> None:
        budget(FUNDED, BudgetReserved(C1, 4_000, T0)).when(
            lambda b: b.reserve(C1, 4_000, T1)
        ).then_nothing().then_state(held={C1: 4_000}, available_cents=6_000)

    def test_reserving_twice_with_another_amount_changes_nothing_either(self) -> None:
        budget(FUNDED, BudgetReserved(C1, 4_000, T0)).when(
            lambda b: b.reserve(C1, 9_000, T1)
        ).then_nothing()

    def test_a_refused_campaign_may_be_reserved_once_the_budget_grew(self) -> None:
        refused = BudgetRefused(C1, 12_000, 10_000, T0)
        budget(FUNDED, refused, BudgetIncreased(5_000, "top-up", T0)).when(
            lambda b: b.reserve(C1, 12_000, T1)
        ).then(BudgetReserved(C1, 12_000, T1))


class TestBudgetRelease:
    def test_releasing_a_held_reservation_frees_its_amount(self) -> None:
        budget(FUNDED, HELD_C2).when(lambda b: b.release(C2, T1)).then(
            BudgetReleased(C2, 3_000, T1)
        ).then_state(held={}, available_cents=10_000)

    def test_releasing_what_is_not_held_changes_nothing(self) -> None:
        budget(FUNDED, HELD_C2).when(lambda b: b.release(C1, T1)).then_nothing()

    def test_releasing_twice_releases_once(self) -> None:
        released = BudgetReleased(C2, 3_000, T0)
        budget(FUNDED, HELD_C2, released).when(lambda b: b.release(C2, T1)).then_nothing()

    def test_a_refused_reservation_has_nothing_to_release(self) -> None:
        refused = BudgetRefused(C1, 12_000, 10_000, T0)
        budget(FUNDED, refused).when(lambda b: b.release(C1, T1)).then_nothing()


# -- the campaign ------------------------------------------------------------------------

CREATED = CampaignCreated(C1, "Spring sale", 5_000, T0)
ACTIVATING = ActivationRequested(C1, 5_000, T0)
PUBLISHED = PublicationConfirmed(C1, "AD-1000", T0)
REJECTED = PublicationRejected(C1, "the partner declined (CONTENT_POLICY)", T0)
CANCELLED = CampaignCancelled(C1, "the partner did not answer in time", T0)

#: every status a campaign reaches, by the events after its creation
HISTORIES: dict[str, tuple[object, ...]] = {
    "draft": (),
    "activating": (ACTIVATING,),
    "published": (ACTIVATING, PUBLISHED),
    "rejected": (ACTIVATING, REJECTED),
    "cancelled": (ACTIVATING, CANCELLED),
    "cancelled as a draft": (CampaignCancelled(C1, "changed our mind", T0),),
}


def campaign(status: str) -> Scenario[Campaign]:
    return Scenario(Campaign, C1).given(CREATED, *HISTORIES[status])


class TestCampaignCreate:
    def test_a_new_campaign_is_a_draft(self) -> None:
        Scenario(Campaign, C1).when_created(
            lambda: Campaign.create(C1, "Spring sale", 5_000, T0)
        ).then(CREATED).then_state(
            name="Spring sale", cost_cents=5_000, status=CampaignStatus.DRAFT
        )

    def test_no_campaign_event_carries_the_demos_partner_behaviour(self) -> None:
        for cls in EVENTS:
            assert "partner_behaviour" not in {f.name for f in dataclasses.fields(cls)}, cls

    @pytest.mark.parametrize("cost", [0, -500])
    def test_a_campaign_costs_a_positive_amount(self, cost: int) -> None:
        Scenario(Campaign, C1).when_created(
            lambda: Campaign.create(C1, "Ad", cost, T0)
        ).then_raises(CostNotPositive, match="positive")


class TestCampaignActivate:
    def test_a_draft_is_activated_for_its_cost(self) -> None:
        campaign("draft").when(lambda c: c.activate(T1)).then(
            ActivationRequested(C1, 5_000, T1)
        ).then_state(status="activating")

    @pytest.mark.parametrize(
        ("status", "shown"),
        [
            ("activating", "activating"),
            ("published", "published"),
            ("rejected", "rejected"),
            ("cancelled", "cancelled"),
            ("cancelled as a draft", "cancelled"),
        ],
    )
    def test_only_a_draft_can_be_activated(self, status: str, shown: str) -> None:
        campaign(status).when(lambda c: c.activate(T1)).then_raises(
            DomainError, match=f"campaign c1 is {shown}: only a draft can be activated"
        )


class TestCampaignPartnerAnswers:
    def test_a_confirmation_while_activating_publishes_it(self) -> None:
        campaign("activating").when(lambda c: c.confirm("AD-1001", T1)).then(
            PublicationConfirmed(C1, "AD-1001", T1, "Spring sale")
        ).then_state(status="published", partner_reference="AD-1001")

    def test_a_rejection_while_activating_rejects_it_with_the_reason(self) -> None:
        campaign("activating").when(lambda c: c.reject("declined", T1)).then(
            PublicationRejected(C1, "declined", T1)
        ).then_state(status="rejected", reason="declined")

    @pytest.mark.parametrize(
        "status", ["draft", "published", "rejected", "cancelled", "cancelled as a draft"]
    )
    @pytest.mark.parametrize(
        "answer",
        [lambda c: c.confirm("AD-1002", T1), lambda c: c.reject("late", T1)],
        ids=["confirm", "reject"],
    )
    def test_an_answer_is_ignored_unless_the_campaign_is_activating(
        self, status: str, answer: Callable[[Campaign], object]
    ) -> None:
        campaign(status).when(answer).then_nothing()

    def test_a_late_confirmation_does_not_revive_a_cancelled_campaign(self) -> None:
        campaign("cancelled").when(lambda c: c.confirm("AD-1002", T1)).then_state(
            status="cancelled", partner_reference=None
        )


class TestCampaignCancel:
    @pytest.mark.parametrize("status", ["draft", "activating"])
    def test_a_draft_or_activating_campaign_can_be_cancelled(self, status: str) -> None:
        campaign(status).when(lambda c: c.cancel("no answer", T1)).then(
            CampaignCancelled(C1, "no answer", T1)
        ).then_state(status="cancelled", reason="no answer")

    @pytest.mark.parametrize("status", ["published", "rejected", "cancelled"])
    def test_a_campaign_that_is_over_is_not_cancelled(self, status: str) -> None:
        campaign(status).when(lambda c: c.cancel("no answer", T1)).then_nothing()
