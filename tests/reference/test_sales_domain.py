"""Sales' Lead aggregate and its value objects, given past events, when a command, then events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import get_type_hints

import pytest

from chronik.domain import DomainError, Personal, event_spec
from chronik.errors import InvalidValueError
from chronik.testing.scenario import Scenario
from sales.domain import (
    FOLLOW_UP_HORIZON,
    ContactDetails,
    ContactDetailsChanged,
    Contacted,
    FollowUpOutOfRange,
    FollowUpSet,
    Lead,
    LeadAnonymized,
    LeadClosed,
    LeadInitialized,
    Money,
    OrderSubmitted,
    PaymentConfirmed,
)

LEAD = "L1"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
LATER = T0 + timedelta(days=3)
ADA = ContactDetails("Ada Lovelace", "+44 20 7946 0958")
EUR_120 = Money(12_000, "EUR")

INITIALIZED = LeadInitialized(LEAD, ADA.name, ADA.phone, T0)
CONTACTED = Contacted(LEAD, "called, interested", T0)
ORDERED = OrderSubmitted(LEAD, "order-1", 12_000, "EUR", T0)
CLOSED = LeadClosed(LEAD, "not interested", T0)


def lead(*history: object) -> Scenario[Lead]:
    """A lead with this history (initialized first)."""
    return Scenario(Lead, LEAD).given(INITIALIZED, *history)


# -- value objects -----------------------------------------------------------------------


class TestContactDetails:
    @pytest.mark.parametrize(
        "phone",
        ["12345", "+44 20 7946 0958", "(0)1-23-45-67", "+1 (555) 010-9999", "1" * 20],
    )
    def test_a_phone_of_5_to_20_digits_spaces_dashes_and_brackets_is_accepted(
        self, phone: str
    ) -> None:
        assert ContactDetails("Ada", phone).phone == phone

    @pytest.mark.parametrize(
        "phone",
        ["1234", "1" * 21, "+44 20 7946 095x", "0044.20.7946", "++4420794609", "", "12 34\n"],
    )
    def test_a_malformed_phone_is_refused_naming_the_phone_field(self, phone: str) -> None:
        with pytest.raises(InvalidValueError) as refused:
            ContactDetails("Ada", phone)
        assert (refused.value.owner, refused.value.field) == ("ContactDetails", "phone")

    @pytest.mark.parametrize("name", ["", "   ", "\t\n", "x" * 201])
    def test_a_blank_or_overlong_name_is_refused_naming_the_name_field(self, name: str) -> None:
        with pytest.raises(InvalidValueError) as refused:
            ContactDetails(name, "12345")
        assert (refused.value.owner, refused.value.field) == ("ContactDetails", "name")

    @pytest.mark.parametrize("name", ["\x1e", "\x85", "\ufeff", "\u3000 \u2028", "\xa0"])
    def test_a_name_of_white_space_alone_is_refused_here_and_by_the_http_schema_alike(
        self, name: str
    ) -> None:
        from pydantic import ValidationError

        from sales.http import NewLead

        with pytest.raises(InvalidValueError):
            ContactDetails(name, "12345")
        with pytest.raises(ValidationError):
            NewLead(name=name, phone="12345")
        # With one visible character both accept it.
        assert ContactDetails(f"A{name}", "12345").name == f"A{name}"
        assert NewLead(name=f"A{name}", phone="12345").name == f"A{name}"

    def test_a_name_of_200_characters_is_accepted(self) -> None:
        assert len(ContactDetails("x" * 200, "12345").name) == 200

    def test_the_refusal_never_repeats_the_personal_value(self) -> None:
        with pytest.raises(InvalidValueError) as refused:
            ContactDetails("Ada", "call-me-at-home")
        assert "call-me-at-home" not in str(refused.value)

    def test_a_value_of_the_wrong_type_is_refused_naming_the_field(self) -> None:
        with pytest.raises(InvalidValueError) as refused:
            ContactDetails("Ada", 4420794609)  # type: ignore[arg-type]
        assert refused.value.field == "phone"
        assert "expected str" in refused.value.reason

    def test_an_invalid_value_is_a_domain_error(self) -> None:
        with pytest.raises(DomainError):
            ContactDetails("", "12345")


class TestMoney:
    def test_positive_cents_of_a_three_letter_currency_are_accepted(self) -> None:
        assert Money(1, "EUR") == Money(1, "EUR")

    def test_the_largest_amount_the_published_language_allows_is_accepted(self) -> None:
        assert Money(10**12, "JPY").cents == 10**12

    @pytest.mark.parametrize("cents", [0, -1, -12_000, 10**12 + 1])
    def test_cents_that_are_not_positive_or_too_many_are_refused_naming_the_cents_field(
        self, cents: int
    ) -> None:
        with pytest.raises(InvalidValueError) as refused:
            Money(cents, "EUR")
        assert (refused.value.owner, refused.value.field) == ("Money", "cents")

    @pytest.mark.parametrize("currency", ["eur", "EU", "EURO", "E1R", "", "EUR\n"])
    def test_a_currency_that_is_not_three_capitals_is_refused_naming_the_currency_field(
        self, currency: str
    ) -> None:
        with pytest.raises(InvalidValueError) as refused:
            Money(100, currency)
        assert (refused.value.owner, refused.value.field) == ("Money", "currency")

    @pytest.mark.parametrize("cents", [True, 1.5, "100"])
    def test_cents_that_are_not_an_int_are_refused_naming_the_cents_field(
        self, cents: object
    ) -> None:
        with pytest.raises(InvalidValueError) as refused:
            Money(cents, "EUR")  # type: ignore[arg-type]
        assert refused.value.field == "cents"


# -- the lead ----------------------------------------------------------------------------


class TestInitialize:
    def test_a_new_lead_records_who_to_call(self) -> None:
        Scenario(Lead, LEAD).when_created(lambda: Lead.initialize(LEAD, ADA, T0)).then(
            INITIALIZED
        ).then_state(
            name="Ada Lovelace",
            phone="+44 20 7946 0958",
            status="new",
            contacts=0,
            follow_ups=0,
            order_id=None,
        )


class TestChangeContactDetails:
    def test_new_details_are_recorded(self) -> None:
        grace = ContactDetails("Grace Hopper", "+1 555 0100")
        lead().when(lambda x: x.change_contact_details(grace, T1)).then(
            ContactDetailsChanged(LEAD, "Grace Hopper", "+1 555 0100", T1)
        ).then_state(name="Grace Hopper", phone="+1 555 0100")

    def test_the_same_details_change_nothing(self) -> None:
        lead().when(lambda x: x.change_contact_details(ADA, T1)).then_nothing()


class TestContact:
    def test_the_first_contact_moves_a_new_lead_to_contacted(self) -> None:
        lead().when(lambda x: x.contact("called", T1)).then(
            Contacted(LEAD, "called", T1)
        ).then_state(status="contacted", contacts=1)

    def test_contacting_again_counts_the_contact_and_keeps_the_status(self) -> None:
        lead(CONTACTED).when(lambda x: x.contact("again", T1)).then(
            Contacted(LEAD, "again", T1)
        ).then_state(status="contacted", contacts=2)

    def test_contacting_a_lead_with_a_follow_up_does_not_move_it_back(self) -> None:
        follow_up = FollowUpSet(LEAD, LATER, False, "", T0)
        lead(follow_up).when(lambda x: x.contact("again", T1)).then_state(status="follow_up")

    def test_contacting_an_ordered_lead_does_not_move_it_back(self) -> None:
        lead(ORDERED).when(lambda x: x.contact("how is it?", T1)).then_state(
            status="ordered", contacts=1
        )


class TestFollowUp:
    def test_a_follow_up_in_the_future_is_recorded_and_moves_the_lead_on(self) -> None:
        lead(CONTACTED).when(lambda x: x.set_follow_up(LATER, True, "Lyon", T1)).then(
            FollowUpSet(LEAD, LATER, True, "Lyon", T1)
        ).then_state(status="follow_up", follow_ups=1)

    def test_a_follow_up_without_a_visit_needs_no_city(self) -> None:
        lead().when(lambda x: x.set_follow_up(LATER, False, "", T1)).then(
            FollowUpSet(LEAD, LATER, False, "", T1)
        ).then_state(status="follow_up")

    @pytest.mark.parametrize(
        "on", [T1, T1 - timedelta(microseconds=1), T0 - timedelta(days=365)], ids=str
    )
    def test_a_follow_up_now_or_in_the_past_is_refused(self, on: datetime) -> None:
        lead().when(lambda x: x.set_follow_up(on, False, "", T1)).then_raises(
            DomainError, match="must be in the future"
        )

    def test_a_follow_up_at_the_horizon_is_recorded(self) -> None:
        on = T1 + FOLLOW_UP_HORIZON
        lead().when(lambda x: x.set_follow_up(on, True, "Lyon", T1)).then(
            FollowUpSet(LEAD, on, True, "Lyon", T1)
        )

    @pytest.mark.parametrize(
        "on",
        [
            T1 + FOLLOW_UP_HORIZON + timedelta(microseconds=1),
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-10))),
            datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=10))),
            datetime(2026, 5, 6, 9, 0),  # no timezone: no instant to compare
        ],
        ids=str,
    )
    def test_a_follow_up_beyond_the_horizon_or_without_a_timezone_is_refused_by_name(
        self, on: datetime
    ) -> None:
        lead().when(lambda x: x.set_follow_up(on, True, "Lyon", T1)).then_raises(
            FollowUpOutOfRange, match="at most 730 days ahead"
        )

    @pytest.mark.parametrize("city", ["", "   "])
    def test_a_visit_without_a_city_is_refused(self, city: str) -> None:
        lead().when(lambda x: x.set_follow_up(LATER, True, city, T1)).then_raises(
            DomainError, match="needs a city"
        )

    def test_follow_ups_are_counted(self) -> None:
        first = FollowUpSet(LEAD, LATER, False, "", T0)
        lead(first).when(lambda x: x.set_follow_up(LATER, False, "", T1)).then_state(follow_ups=2)

    def test_a_follow_up_on_an_ordered_lead_keeps_it_ordered(self) -> None:
        lead(ORDERED).when(lambda x: x.set_follow_up(LATER, False, "", T1)).then_state(
            status="ordered", follow_ups=1
        )


class TestSubmitOrder:
    def test_an_order_is_recorded_with_its_amount(self) -> None:
        lead(CONTACTED).when(lambda x: x.submit_order("order-1", EUR_120, T1)).then(
            OrderSubmitted(LEAD, "order-1", 12_000, "EUR", T1)
        ).then_state(status="ordered", order_id="order-1", order_cents=12_000)

    def test_a_second_order_is_refused(self) -> None:
        lead(ORDERED).when(lambda x: x.submit_order("order-2", EUR_120, T1)).then_raises(
            DomainError, match="already has order order-1"
        )

    def test_a_paid_lead_cannot_order_again(self) -> None:
        paid = PaymentConfirmed(LEAD, "order-1", T0)
        lead(ORDERED, paid).when(lambda x: x.submit_order("order-2", EUR_120, T1)).then_raises(
            DomainError, match="already has order"
        )


class TestConfirmPayment:
    def test_the_payment_of_the_lead_s_order_is_recorded(self) -> None:
        lead(ORDERED).when(lambda x: x.confirm_payment("order-1", T1)).then(
            PaymentConfirmed(LEAD, "order-1", T1)
        ).then_state(status="paid")

    def test_a_payment_before_any_order_is_refused(self) -> None:
        lead(CONTACTED).when(lambda x: x.confirm_payment("order-1", T1)).then_raises(
            DomainError, match="has no order to pay"
        )

    def test_a_payment_for_another_order_is_refused(self) -> None:
        lead(ORDERED).when(lambda x: x.confirm_payment("order-9", T1)).then_raises(
            DomainError, match=r"order order-9 is not this lead's order \(order-1\)"
        )

    def test_paying_twice_is_refused(self) -> None:
        paid = PaymentConfirmed(LEAD, "order-1", T0)
        lead(ORDERED, paid).when(lambda x: x.confirm_payment("order-1", T1)).then_raises(
            DomainError, match="paid already"
        )


class TestClose:
    def test_closing_records_the_reason(self) -> None:
        lead(CONTACTED).when(lambda x: x.close("moved abroad", T1)).then(
            LeadClosed(LEAD, "moved abroad", T1)
        ).then_state(status="closed")

    def test_a_paid_lead_can_be_closed(self) -> None:
        paid = PaymentConfirmed(LEAD, "order-1", T0)
        lead(ORDERED, paid).when(lambda x: x.close("done", T1)).then_state(status="closed")

    @pytest.mark.parametrize(
        "command",
        [
            lambda x: x.contact("hello?", T1),
            lambda x: x.change_contact_details(ContactDetails("Grace", "12345"), T1),
            lambda x: x.change_contact_details(ADA, T1),
            lambda x: x.set_follow_up(LATER, False, "", T1),
            lambda x: x.submit_order("order-2", EUR_120, T1),
            lambda x: x.close("again", T1),
        ],
        ids=["contact", "change details", "same details", "follow up", "order", "close"],
    )
    def test_nothing_happens_to_a_closed_lead(self, command: Callable[[Lead], object]) -> None:
        lead(CLOSED).when(command).then_raises(DomainError, match="lead L1 is closed")

    def test_no_payment_is_confirmed_on_a_closed_lead_even_for_its_order(self) -> None:
        lead(ORDERED, CLOSED).when(lambda x: x.confirm_payment("order-1", T1)).then_raises(
            DomainError, match="closed"
        )

    def test_no_order_is_submitted_on_a_closed_lead_that_never_ordered(self) -> None:
        lead(CONTACTED, CLOSED).when(lambda x: x.submit_order("order-1", EUR_120, T1)).then_raises(
            DomainError, match="closed"
        )


class TestAnonymize:
    def test_anonymizing_forgets_the_name_and_phone_and_keeps_the_rest(self) -> None:
        lead(CONTACTED, ORDERED).when(lambda x: x.anonymize(T1)).then(
            LeadAnonymized(LEAD, T1)
        ).then_state(name="", phone="", status="ordered", contacts=1, order_id="order-1")

    def test_a_closed_lead_can_still_be_anonymized(self) -> None:
        lead(CLOSED).when(lambda x: x.anonymize(T1)).then(LeadAnonymized(LEAD, T1)).then_state(
            name="", phone="", status="closed"
        )

    def test_an_anonymized_lead_takes_no_contact_details_again(self) -> None:
        renamed = ContactDetails("Ada King", "12345")
        lead(LeadAnonymized(LEAD, T0)).when(
            lambda x: x.change_contact_details(renamed, T1)
        ).then_raises(DomainError, match="lead L1 was anonymized at their request")

    def test_anonymizing_forgets_the_lead_as_its_data_subject(self) -> None:
        spec = event_spec(LeadAnonymized)
        assert (spec.subject, spec.forgets) == ("lead_id", True)
        assert event_spec(LeadInitialized).subject == "lead_id"

    def test_the_personal_fields_of_the_events_are_marked_personal(self) -> None:
        for event in (LeadInitialized, ContactDetailsChanged):
            hints = get_type_hints(event, include_extras=True)
            for field in ("name", "phone"):
                marks = getattr(hints[field], "__metadata__", ())
                assert any(isinstance(m, Personal) for m in marks), (event, field)
