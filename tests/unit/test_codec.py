"""EventTypes: registration, encoding and decoding, personal fields, upcasting."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest

from chronik.domain import Personal, event
from chronik.errors import ConfigurationError, CorruptEventError, UnknownEventTypeError
from chronik.eventstore import EventTypes, Upcaster
from chronik.eventstore.codec import new_subject_key

STREAM = "order-1"
WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=2)))


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    added_at: datetime


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    line: Line


@event("unit.order_shipped")
@dataclass(frozen=True, slots=True)
class Shipped:
    order_id: str
    at: datetime
    lines: tuple[Line, ...]
    address: Address


@event("unit.customer_registered", subject="customer_id")
@dataclass(frozen=True, slots=True)
class Registered:
    customer_id: str
    name: Annotated[str, Personal()]
    born: Annotated[int, Personal(placeholder=0)]
    at: datetime
    address: Address


@event("unit.order_placed")
@dataclass(frozen=True, slots=True)
class Placed:
    amount: int


@event("unit.order_taken", aliases=("unit.order_placed",))
@dataclass(frozen=True, slots=True)
class Taken:
    amount: int


@event("unit.moved")
@dataclass(frozen=True, slots=True)
class MovedV1:
    city: str


@event("unit.moved", version=2)
@dataclass(frozen=True, slots=True)
class MovedV2:
    city: str
    country: str


@event("unit.moved", version=3)
@dataclass(frozen=True, slots=True)
class MovedV3:
    city: str
    country: str
    label: str


@event("unit.secret_age")
@dataclass(frozen=True, slots=True)
class SecretAge:
    age: Annotated[int, Personal()]


class NotAnEvent:
    pass


def shipped() -> Shipped:
    line = Line("sku-1", 2, WHEN)
    return Shipped(
        "o-1", WHEN, (line, Line("sku-2", 1, WHEN + timedelta(days=1))), Address("Main", line)
    )


def registered() -> Registered:
    return Registered(
        "cust-7",
        "Ada Lovelace",
        1815,
        datetime(2026, 1, 1, tzinfo=UTC),
        Address("Main", Line("x", 1, WHEN)),
    )


def read_back(
    types: EventTypes, stored: tuple[str, int, bytes], keys: Mapping[str, bytes], version: int = 1
) -> Any:
    """Decode stored bytes through the path a store takes for events that need keys or upcasting."""
    type_name, schema, data = stored
    obj = types.parse(STREAM, version, data)
    return types.decode_slow(STREAM, version, type_name, schema, obj, keys)


def moved_up_to(version: int, *extra: Upcaster) -> EventTypes:
    cls = {1: MovedV1, 2: MovedV2, 3: MovedV3}[version]
    return EventTypes([cls], upcasters=extra)


ADD_COUNTRY = Upcaster("unit.moved", 1, lambda d: {**d, "country": "DE"})
ADD_LABEL = Upcaster("unit.moved", 2, lambda d: {**d, "label": f"{d['city']}, {d['country']}"})


class TestRegistration:
    def test_a_registry_knows_its_classes_and_their_names(self) -> None:
        types = EventTypes([Shipped, Placed, Shipped])
        assert types.classes == (Shipped, Placed)
        assert Placed in types and Taken not in types
        assert types.name_of(Shipped) == "unit.order_shipped"

    def test_two_classes_with_the_same_name_are_refused_naming_both(self) -> None:
        @event("unit.order_placed")
        @dataclass(frozen=True, slots=True)
        class PlacedAgain:
            amount: int

        with pytest.raises(ConfigurationError, match=r"'unit\.order_placed'") as caught:
            EventTypes([Placed, PlacedAgain])
        assert "Placed " in str(caught.value) and "PlacedAgain" in str(caught.value)

    def test_an_alias_that_is_another_class_name_is_refused_naming_both(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            EventTypes([Placed, Taken])
        message = str(caught.value)
        assert "'unit.order_placed'" in message
        assert "Placed" in message and "Taken" in message

    def test_an_undecorated_class_is_refused_at_registration(self) -> None:
        with pytest.raises(ConfigurationError, match="NotAnEvent is not a registered event"):
            EventTypes([NotAnEvent])

    def test_a_class_outside_the_registry_is_a_configuration_error(self) -> None:
        types = EventTypes([Placed])
        with pytest.raises(ConfigurationError, match="Shipped is not in this store's EventTypes"):
            types.name_of(Shipped)
        with pytest.raises(ConfigurationError, match="Shipped"):
            types.encode(shipped(), STREAM, {})

    def test_an_event_that_forgets_its_subject_cannot_carry_personal_fields(self) -> None:
        @event("unit.erased", subject="customer_id", forgets=True)
        @dataclass(frozen=True, slots=True)
        class Erased:
            customer_id: str
            reason: Annotated[str, Personal()]

        with pytest.raises(ConfigurationError, match=r"Erased forgets .* \(reason\)"):
            EventTypes([Erased])

    def test_the_forgetting_types_are_known_by_every_stored_name(self) -> None:
        @event("unit.erased", subject="customer_id", forgets=True, aliases=["unit.wiped"])
        @dataclass(frozen=True, slots=True)
        class Erased:
            customer_id: str

        types = EventTypes([Placed, Erased])
        assert types.forgetting_names == {"unit.erased", "unit.wiped"}
        assert types.forgotten_by(Erased("c-1"), STREAM) == "c-1"
        assert types.forgotten_by(Placed(3), STREAM) is None

    def test_an_upcaster_for_an_unregistered_type_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match=r"unregistered event types: unit\.nowhere"):
            EventTypes([Placed], upcasters=[Upcaster("unit.nowhere", 1, dict)])

    def test_two_upcasters_for_the_same_step_are_refused(self) -> None:
        with pytest.raises(
            ConfigurationError, match=r"two upcasters for 'unit\.moved' from version 1"
        ):
            moved_up_to(3, ADD_COUNTRY, Upcaster("unit.moved", 1, dict), ADD_LABEL)

    @pytest.mark.parametrize("step", [0, -1, 3, 4])
    def test_an_upcaster_step_outside_the_class_versions_is_refused(self, step: int) -> None:
        with pytest.raises(ConfigurationError, match=f"from version {step}.*1 to 2"):
            moved_up_to(3, Upcaster("unit.moved", step, dict))

    def test_a_personal_placeholder_that_does_not_fit_the_field_is_refused(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            EventTypes([SecretAge])
        assert "SecretAge.age" in str(caught.value)
        assert "placeholder" in str(caught.value)

    def test_a_personal_placeholder_that_fits_the_field_is_accepted(self) -> None:
        assert Registered in EventTypes([Registered])


class TestRoundTrip:
    def test_an_event_is_stored_under_its_name_and_version(self) -> None:
        type_name, schema, data = EventTypes([MovedV2]).encode(MovedV2("Oslo", "NO"), STREAM, {})
        assert (type_name, schema) == ("unit.moved", 2)
        assert json.loads(data) == {"city": "Oslo", "country": "NO"}

    def test_an_event_at_its_current_version_decodes_straight_from_the_bytes(self) -> None:
        types = EventTypes([Shipped])
        original = shipped()
        type_name, schema, data = types.encode(original, STREAM, {})
        decoded = types.decode_fast(STREAM, 1, type_name, schema, data)
        assert decoded == original
        assert decoded.at.utcoffset() == timedelta(hours=2)
        assert decoded.address.line.added_at == WHEN

    def test_the_slow_path_gives_the_same_event(self) -> None:
        types = EventTypes([Shipped])
        original = shipped()
        assert read_back(types, types.encode(original, STREAM, {}), {}) == original

    def test_a_type_name_the_registry_does_not_know_raises_unknown_event_type(self) -> None:
        with pytest.raises(UnknownEventTypeError) as caught:
            EventTypes([Placed]).decode_fast(STREAM, 4, "unit.mystery", 1, b"{}")
        assert (caught.value.stream_id, caught.value.version) == (STREAM, 4)
        assert caught.value.type_name == "unit.mystery"

    def test_an_alias_decodes_into_the_class_that_carries_it(self) -> None:
        stored = EventTypes([Placed]).encode(Placed(5), STREAM, {})
        assert EventTypes([Taken]).decode_fast(STREAM, 1, *stored) == Taken(5)


class TestPersonalFields:
    def test_personal_fields_are_encrypted_and_read_back_with_the_key(self) -> None:
        types = EventTypes([Registered])
        keys = {"cust-7": new_subject_key()}
        original = registered()
        assert types.subject_of(original, STREAM) == "cust-7"
        stored = types.encode(original, STREAM, keys)
        assert b"Lovelace" not in stored[2]
        assert b"1815" not in stored[2]
        assert types.subjects_in(types.parse(STREAM, 1, stored[2])) == {"cust-7"}
        assert read_back(types, stored, keys) == original

    def test_an_event_without_personal_fields_has_no_subject(self) -> None:
        assert EventTypes([Placed]).subject_of(Placed(1), STREAM) is None

    def test_each_encryption_uses_a_fresh_nonce(self) -> None:
        types = EventTypes([Registered])
        keys = {"cust-7": new_subject_key()}
        assert types.encode(registered(), STREAM, keys) != types.encode(registered(), STREAM, keys)

    def test_a_tampered_ciphertext_is_a_corrupt_event_naming_the_field(self) -> None:
        types = EventTypes([Registered])
        keys = {"cust-7": new_subject_key()}
        type_name, schema, data = types.encode(registered(), STREAM, keys)
        obj = json.loads(data)
        sealed = bytearray(base64.b64decode(obj["name"]["$enc"][1]))
        sealed[-1] ^= 0x01
        obj["name"]["$enc"][1] = base64.b64encode(bytes(sealed)).decode()
        with pytest.raises(CorruptEventError) as caught:
            read_back(types, (type_name, schema, json.dumps(obj).encode()), keys, version=3)
        assert "'name'" in str(caught.value)
        assert (caught.value.stream_id, caught.value.version) == (STREAM, 3)

    def test_a_ciphertext_moved_to_another_field_does_not_decrypt(self) -> None:
        types = EventTypes([Registered])
        keys = {"cust-7": new_subject_key()}
        type_name, schema, data = types.encode(registered(), STREAM, keys)
        obj = json.loads(data)
        obj["born"] = obj["name"]
        with pytest.raises(CorruptEventError, match="'born'"):
            read_back(types, (type_name, schema, json.dumps(obj).encode()), keys)

    def test_another_subjects_key_does_not_decrypt(self) -> None:
        types = EventTypes([Registered])
        stored = types.encode(registered(), STREAM, {"cust-7": new_subject_key()})
        with pytest.raises(CorruptEventError, match="does not decrypt"):
            read_back(types, stored, {"cust-7": new_subject_key()})

    @pytest.mark.parametrize("blob", ["AAAA", "not*base64!"])
    def test_a_damaged_ciphertext_blob_is_a_corrupt_event(self, blob: str) -> None:
        types = EventTypes([Registered])
        keys = {"cust-7": new_subject_key()}
        type_name, schema, data = types.encode(registered(), STREAM, keys)
        obj = json.loads(data)
        obj["name"]["$enc"][1] = blob
        with pytest.raises(CorruptEventError, match="'name'"):
            read_back(types, (type_name, schema, json.dumps(obj).encode()), keys)

    def test_without_the_key_personal_fields_read_as_their_placeholders(self) -> None:
        types = EventTypes([Registered])
        original = registered()
        stored = types.encode(original, STREAM, {"cust-7": new_subject_key()})
        forgotten = read_back(types, stored, {})
        assert (forgotten.name, forgotten.born) == ("[forgotten]", 0)
        assert (forgotten.customer_id, forgotten.at) == (original.customer_id, original.at)


class TestUpcasting:
    def test_upcasters_lift_a_stored_event_over_two_steps_in_order(self) -> None:
        stored = moved_up_to(1).encode(MovedV1("Berlin"), STREAM, {})
        assert stored[1] == 1
        types = moved_up_to(3, ADD_LABEL, ADD_COUNTRY)
        assert read_back(types, stored, {}) == MovedV3("Berlin", "DE", "Berlin, DE")

    def test_an_event_that_needs_upcasting_is_not_decoded_straight_from_the_bytes(
        self,
    ) -> None:
        stored = moved_up_to(1).encode(MovedV1("Berlin"), STREAM, {})
        fast = moved_up_to(3, ADD_COUNTRY, ADD_LABEL).decode_fast(STREAM, 1, *stored)
        assert not isinstance(fast, MovedV3)

    def test_an_event_stored_at_its_current_version_is_not_upcast(self) -> None:
        stored = moved_up_to(3).encode(MovedV3("Paris", "FR", "as stored"), STREAM, {})
        types = moved_up_to(3, ADD_COUNTRY, ADD_LABEL)
        assert read_back(types, stored, {}) == MovedV3("Paris", "FR", "as stored")

    def test_a_missing_step_is_a_corrupt_event_naming_the_step(self) -> None:
        stored = moved_up_to(1).encode(MovedV1("Berlin"), STREAM, {})
        with pytest.raises(CorruptEventError, match="no upcaster lifts it from version 1 to 2"):
            read_back(moved_up_to(3, ADD_LABEL), stored, {})

    def test_a_schema_newer_than_the_code_is_a_corrupt_event_saying_so(self) -> None:
        stored = moved_up_to(3).encode(MovedV3("Rome", "IT", "x"), STREAM, {})
        with pytest.raises(CorruptEventError) as caught:
            read_back(moved_up_to(2, ADD_COUNTRY), stored, {}, version=9)
        message = str(caught.value)
        assert "schema version 3" in message and "only up to version 2" in message
        assert caught.value.version == 9

    def test_an_upcaster_that_raises_is_a_corrupt_event_carrying_the_cause(self) -> None:
        def broken(data: dict[str, Any]) -> dict[str, Any]:
            raise KeyError("postcode")

        stored = moved_up_to(1).encode(MovedV1("Berlin"), STREAM, {})
        types = moved_up_to(2, Upcaster("unit.moved", 1, broken))
        with pytest.raises(
            CorruptEventError, match=r"upcaster of 'unit\.moved' from version 1"
        ) as caught:
            read_back(types, stored, {})
        assert isinstance(caught.value.__cause__, KeyError)
        assert "postcode" in str(caught.value)
