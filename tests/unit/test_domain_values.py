"""ValueObject: fields checked against their annotations, domain rules, frozen instances."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest

from chronik.domain import DomainError, ValueObject
from chronik.errors import InvalidValueError


@dataclass(frozen=True)
class Name(ValueObject):
    text: str


@dataclass(frozen=True)
class Quantity(ValueObject):
    count: int


@dataclass(frozen=True)
class Price(ValueObject):
    amount: float


@dataclass(frozen=True)
class Nickname(ValueObject):
    nick: str | None


@dataclass(frozen=True)
class Tagged(ValueObject):
    label: Annotated[str, "a marker that is not a type"]


@dataclass(frozen=True)
class Status(ValueObject):
    state: Literal["open", "closed"]


@dataclass(frozen=True)
class Basket(ValueObject):
    items: list[str]


@dataclass(frozen=True)
class Email(ValueObject):
    address: str

    def validate(self) -> None:
        if "@" not in self.address:
            self.refuse("address", "must contain an @")


class TestFieldTypes:
    def test_a_str_field_accepts_a_str(self) -> None:
        assert Name("Ada").text == "Ada"

    def test_a_str_field_refuses_an_int_naming_class_field_and_types(self) -> None:
        with pytest.raises(InvalidValueError) as caught:
            Name(42)  # type: ignore[arg-type]  # the wrong type is the point of the test
        assert (caught.value.owner, caught.value.field) == ("Name", "text")
        assert str(caught.value) == "Name.text: expected str, got int"

    def test_an_int_field_refuses_a_bool(self) -> None:
        with pytest.raises(InvalidValueError, match="expected int, got bool"):
            Quantity(True)

    def test_an_int_field_refuses_a_float(self) -> None:
        with pytest.raises(InvalidValueError, match=r"Quantity\.count"):
            Quantity(1.5)  # type: ignore[arg-type]  # the wrong type is the point of the test

    @pytest.mark.parametrize("amount", [2, 2.5])
    def test_a_float_field_accepts_an_int_or_a_float(self, amount: float) -> None:
        assert Price(amount).amount == amount

    def test_a_float_field_refuses_a_bool(self) -> None:
        with pytest.raises(InvalidValueError, match=r"Price\.amount"):
            Price(True)

    @pytest.mark.parametrize("nick", ["ada", None])
    def test_an_optional_field_accepts_its_type_or_none(self, nick: str | None) -> None:
        assert Nickname(nick).nick == nick

    def test_an_optional_field_refuses_another_type_and_says_none_was_allowed(self) -> None:
        with pytest.raises(InvalidValueError, match="expected str or None, got int"):
            Nickname(3)  # type: ignore[arg-type]  # the wrong type is the point of the test

    def test_an_annotated_field_is_checked_against_its_underlying_type(self) -> None:
        assert Tagged("x").label == "x"
        with pytest.raises(InvalidValueError, match=r"Tagged\.label: expected str"):
            Tagged(b"x")  # type: ignore[arg-type]  # the wrong type is the point of the test

    def test_a_literal_field_accepts_one_of_its_values(self) -> None:
        assert Status("open").state == "open"

    def test_a_literal_field_refuses_a_value_of_another_type(self) -> None:
        with pytest.raises(InvalidValueError, match=r"Status\.state: expected str, got int"):
            Status(1)  # type: ignore[arg-type]  # the wrong type is the point of the test

    def test_a_literal_field_refuses_a_value_outside_the_literal(self) -> None:
        with pytest.raises(InvalidValueError, match=r"Status\.state"):
            Status("banana")  # type: ignore[arg-type]  # the wrong value is the point of the test

    def test_a_generic_field_is_checked_by_its_container_type(self) -> None:
        assert Basket(["apple"]).items == ["apple"]
        with pytest.raises(InvalidValueError, match=r"Basket\.items: expected list, got tuple"):
            Basket(("apple",))  # type: ignore[arg-type]  # the wrong type is the point of the test

    def test_a_generic_field_does_not_check_the_items_of_the_container(self) -> None:
        # Documented: only the container type is checked, the items are not.
        wrong_items: list[Any] = [1]
        assert Basket(wrong_items).items is wrong_items


class TestDomainRules:
    def test_validate_runs_after_the_type_checks_and_may_accept(self) -> None:
        assert Email("ada@example.org").address == "ada@example.org"

    def test_refuse_raises_an_invalid_value_error_naming_class_and_field(self) -> None:
        with pytest.raises(InvalidValueError) as caught:
            Email("ada.example.org")
        assert caught.value.owner == "Email"
        assert caught.value.field == "address"
        assert caught.value.reason == "must contain an @"
        assert str(caught.value) == "Email.address: must contain an @"

    def test_a_refusal_is_a_domain_error_and_a_value_error(self) -> None:
        with pytest.raises(InvalidValueError) as caught:
            Email("nobody")
        assert isinstance(caught.value, DomainError)
        assert isinstance(caught.value, ValueError)

    def test_a_refused_value_never_appears_in_the_error(self) -> None:
        secret = "ada-lovelace-private-address"
        with pytest.raises(InvalidValueError) as caught:
            Email(secret)
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
        assert all(secret not in str(arg) for arg in caught.value.args)

    def test_a_value_refused_for_its_type_never_appears_in_the_error(self) -> None:
        ssn = 123456789
        with pytest.raises(InvalidValueError) as caught:
            Name(ssn)  # type: ignore[arg-type]  # the wrong type is the point of the test
        assert str(ssn) not in str(caught.value)
        assert str(ssn) not in repr(caught.value)


class TestFrozen:
    def test_a_value_object_cannot_be_changed_after_it_is_built(self) -> None:
        email = Email("ada@example.org")
        with pytest.raises(dataclasses.FrozenInstanceError):
            email.address = "not-an-address"  # type: ignore[misc]  # assigning is the test
        assert email.address == "ada@example.org"

    def test_equal_fields_make_equal_and_hashable_values(self) -> None:
        assert Name("Ada") == Name("Ada")
        assert len({Name("Ada"), Name("Ada"), Name("Grace")}) == 2
