"""The @event decorator: stable type names, schema versions, subjects and aliases."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from chronik.domain import EventSpec, event, event_spec


def frozen_class() -> type[Any]:
    """A new frozen dataclass each call, so that no test sees another's registration."""
    return dataclasses.make_dataclass("Frozen", [("order_id", str), ("amount", int)], frozen=True)


@dataclass
class Loose:
    order_id: str


class Plain:
    order_id: str = ""


@event("unit.order_placed")
@dataclass(frozen=True, slots=True)
class OrderPlaced:
    order_id: str


class TestTypeNames:
    @pytest.mark.parametrize(
        "name",
        ["sales.order_submitted.v1", "_private", "a", "urn:x-y:z", "A" * 200],
    )
    def test_a_valid_name_registers_the_class(self, name: str) -> None:
        @event(name)
        @dataclass(frozen=True)
        class Happened:
            n: int

        assert event_spec(Happened) == EventSpec(name=name, version=1, subject=None, aliases=())

    @pytest.mark.parametrize(
        "name",
        ["", "1st", ".hidden", "-dash", "has space", "ümlaut", "a/b", "a" * 201, "ok\n"],
    )
    def test_an_invalid_name_is_refused_before_any_class_is_seen(self, name: str) -> None:
        with pytest.raises(ValueError, match="is not valid") as caught:
            event(name)
        assert repr(name) in str(caught.value)

    def test_a_name_that_is_not_a_str_is_refused(self) -> None:
        with pytest.raises(ValueError, match="is not valid"):
            event(42)  # type: ignore[arg-type]  # the wrong type is the point of the test


class TestVersions:
    def test_the_version_defaults_to_one_and_can_be_raised(self) -> None:
        assert event_spec(OrderPlaced).version == 1
        assert event_spec(event("unit.v3", version=3)(frozen_class())).version == 3

    @pytest.mark.parametrize("version", [0, -1, True, 1.0, "2"])
    def test_a_version_that_is_not_an_int_of_at_least_one_is_refused(self, version: object) -> None:
        with pytest.raises(ValueError, match="version must be an int >= 1") as caught:
            event("unit.versioned", version=version)  # type: ignore[arg-type]  # bad on purpose
        assert "unit.versioned" in str(caught.value)


class TestTheClass:
    def test_a_plain_dataclass_is_refused_with_the_fix_in_the_message(self) -> None:
        with pytest.raises(TypeError, match=r"needs a frozen dataclass.*Loose"):
            event("unit.loose")(Loose)

    def test_a_class_that_is_not_a_dataclass_is_refused(self) -> None:
        with pytest.raises(TypeError, match="needs a frozen dataclass"):
            event("unit.plain")(Plain)

    def test_the_decorator_returns_the_class_itself(self) -> None:
        @dataclass(frozen=True)
        class Kept:
            n: int

        assert event("unit.kept")(Kept) is Kept

    def test_the_subject_must_name_a_field(self) -> None:
        decorated = event("unit.with_subject", subject="order_id")(frozen_class())
        assert event_spec(decorated).subject == "order_id"

    def test_a_subject_that_is_not_a_field_is_refused(self) -> None:
        with pytest.raises(TypeError, match="subject 'customer_id' is not a field"):
            event("unit.bad_subject", subject="customer_id")(frozen_class())


class TestForgetting:
    def test_an_event_forgets_nobody_unless_declared(self) -> None:
        assert event_spec(OrderPlaced).forgets is False
        declared = event("unit.forget_me", subject="order_id", forgets=True)(frozen_class())
        assert event_spec(declared).forgets is True

    def test_forgets_must_be_a_bool(self) -> None:
        with pytest.raises(ValueError, match="forgets must be True or False"):
            event("unit.forget_me", forgets="yes")  # type: ignore[arg-type]


class TestAliases:
    def test_aliases_are_kept_in_order(self) -> None:
        decorated = event("unit.paid", aliases=["unit.paid_in", "legacy:payment"])(frozen_class())
        assert event_spec(decorated).aliases == ("unit.paid_in", "legacy:payment")

    def test_an_invalid_alias_is_refused_like_a_name(self) -> None:
        with pytest.raises(ValueError, match="'old name' is not valid"):
            event("unit.paid", aliases=["old name"])

    def test_a_single_alias_given_as_a_bare_str_is_not_split_into_letters(self) -> None:
        try:
            decorated = event("unit.renamed", aliases="old")(frozen_class())
        except (TypeError, ValueError):
            return  # refusing it is as good as taking it whole
        assert event_spec(decorated).aliases == ("old",)


class TestEventSpec:
    def test_an_undecorated_class_is_not_a_registered_event(self) -> None:
        with pytest.raises(TypeError, match="Plain is not a registered event: decorate it"):
            event_spec(Plain)

    def test_a_subclass_of_an_event_does_not_inherit_its_registration(self) -> None:
        @dataclass(frozen=True, slots=True)
        class Derived(OrderPlaced):
            note: str = ""

        with pytest.raises(TypeError, match="Derived is not a registered event"):
            event_spec(Derived)


def test_an_event_list_registers_each_class_it_declares_in_order() -> None:
    from chronik.domain import EventList

    events = EventList()

    @events.event("test.first")
    @dataclass(frozen=True)
    class First:
        n: int

    @events.event("test.second", version=2, aliases=["test.old_second"])
    @dataclass(frozen=True)
    class Second:
        n: int

    assert events == [First, Second]
    assert event_spec(Second).version == 2
    assert event_spec(Second).aliases == ("test.old_second",)
    with pytest.raises(TypeError, match="frozen dataclass"):
        events.event("test.third")(type("Third", (), {}))
    assert events == [First, Second]  # a refused class is not listed
