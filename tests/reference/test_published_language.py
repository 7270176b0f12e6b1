"""Sales' published language as another team reads it: the AsyncAPI document and its promises.

What the document states is what the consumers may rely on: each constraint is in the
event's JSON Schema, the domain keeps it, and a message that breaks it is refused when
it is decoded (a producer's bug), never half-handled.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import pytest

from chronik.eventstore import Metadata, RecordedEvent
from chronik.messaging.asyncapi import asyncapi_document, languages
from chronik.messaging.contracts import public_spec
from sales import contracts, domain, handlers

ASYNCAPI_SCHEMA = Path(__file__).parents[1] / "data" / "asyncapi-3.0.0.json"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def document() -> dict[str, Any]:
    return asyncapi_document(contracts.LANGUAGE, title="sales")


def data_schema(type_name: str) -> dict[str, Any]:
    """The JSON Schema of a public event's data, with its components resolvable."""
    doc = document()
    key = type_name.replace(".", "_")
    payload = doc["components"]["messages"][key]["payload"]
    return {**payload["properties"]["data"], "components": doc["components"]}


def properties(type_name: str) -> dict[str, Any]:
    doc = document()
    key = type_name.replace(".", "_")
    [schema] = [s for k, s in doc["components"]["schemas"].items() if k.startswith(key)]
    props: dict[str, Any] = schema["properties"]
    return props


def recorded(event: object) -> RecordedEvent:
    return RecordedEvent(
        id=uuid.uuid4(),
        stream_id="lead-L1",
        version=1,
        position=1,
        type="test",
        schema_version=1,
        recorded_at=T0,
        event=event,
        metadata=Metadata(),
    )


def test_the_document_is_valid_asyncapi_3() -> None:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document())


def test_the_visit_s_date_states_its_timezone_and_the_follow_up_window() -> None:
    on = properties("sales.visit_needed.v1")["on"]
    assert on["format"] == "date-time"
    assert "730 days" in on["description"] and "timezone" in on["description"]
    assert contracts.VISIT_HORIZON == domain.FOLLOW_UP_HORIZON


def test_a_visit_sales_publishes_fits_its_schema() -> None:
    set_at = T0
    lead = domain.Lead.blank("L1")
    lead.replay([domain.LeadInitialized("L1", "Ada", "12345", T0)], 1)
    lead.set_follow_up(set_at + domain.FOLLOW_UP_HORIZON, True, "Lyon", set_at)
    visit = handlers.publish(recorded(lead.pending_events[-1]))
    data = contracts.LANGUAGE.data_of(visit)
    jsonschema.validate(data, data_schema("sales.visit_needed.v1"))
    assert contracts.LANGUAGE.decode("sales.visit_needed.v1", data) == visit


@pytest.mark.parametrize(
    "on",
    ["2026-05-06T09:00:00", "not a date"],
    ids=["no timezone", "no date"],
)
def test_a_visit_whose_date_breaks_the_contract_is_refused_when_decoded(on: str) -> None:
    data = {"lead_id": "L1", "city": "Lyon", "on": on}
    with pytest.raises(ValueError, match=r"sales.visit_needed.v1: .*\$\.on"):
        contracts.LANGUAGE.decode("sales.visit_needed.v1", data)


def test_an_order_states_its_amount_in_minor_units_within_what_sales_takes() -> None:
    fields = properties("sales.order_submitted.v1")
    amount, currency = fields["amount_cents"], fields["currency"]
    assert (amount["type"], amount["exclusiveMinimum"], amount["maximum"]) == (
        "integer",
        0,
        domain.MAX_CENTS,
    )
    assert "minor unit" in amount["description"] and "ISO 4217" in amount["description"]
    assert currency["pattern"] == "^[A-Z]{3}$"
    assert contracts.MAX_AMOUNT == domain.MAX_CENTS


def test_an_order_sales_publishes_fits_its_schema() -> None:
    lead = domain.Lead.blank("L1")
    lead.replay([domain.LeadInitialized("L1", "Ada", "12345", T0)], 1)
    lead.submit_order("order-1", domain.Money(domain.MAX_CENTS, "JPY"), T0)
    order = handlers.publish(recorded(lead.pending_events[-1]))
    data = contracts.LANGUAGE.data_of(order)
    jsonschema.validate(data, data_schema("sales.order_submitted.v1"))
    assert contracts.LANGUAGE.decode("sales.order_submitted.v1", data) == order


@pytest.mark.parametrize(
    ("amount", "currency", "where"),
    [(0, "EUR", "amount_cents"), (10**12 + 1, "EUR", "amount_cents"), (5, "eur", "currency")],
)
def test_an_order_that_breaks_the_contract_is_refused_when_decoded(
    amount: int, currency: str, where: str
) -> None:
    data = {
        "lead_id": "L1",
        "order_id": "order-1",
        "amount_cents": amount,
        "currency": currency,
        "submitted_at": T0.isoformat(),
    }
    with pytest.raises(ValueError, match=rf"sales.order_submitted.v1: .*\$\.{where}"):
        contracts.LANGUAGE.decode("sales.order_submitted.v1", data)


def system_document() -> dict[str, Any]:
    """The document of every public event of the reference system, as ``chronik asyncapi``
    writes it for ``--language sales.contracts --language campaigns.contracts
    --language travel.contracts``."""
    from campaigns import contracts as campaigns
    from travel import contracts as travel

    return asyncapi_document(languages(contracts.LANGUAGE, campaigns.LANGUAGE, travel.LANGUAGE))


def test_the_system_s_document_is_valid_asyncapi_3_with_a_channel_per_public_event() -> None:
    doc = system_document()
    jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text())).validate(doc)
    assert len(doc["channels"]) == 5
    addresses = sorted(channel["address"] for channel in doc["channels"].values())
    assert addresses == [
        "chronik.campaigns.campaign_live.v1",
        "chronik.sales.order_submitted.v1",
        "chronik.sales.visit_needed.v1",
        "chronik.travel.visit_trip_cancelled.v1",
        "chronik.travel.visit_trip_confirmed.v1",
    ]


def test_what_travel_and_campaigns_publish_fits_their_schemas() -> None:
    from campaigns import contracts as campaigns
    from travel import contracts as travel

    doc = system_document()
    for language, event in [
        (travel.LANGUAGE, travel.VisitTripConfirmed("L1", "t1", T0)),
        (travel.LANGUAGE, travel.VisitTripCancelled("L1", "t1", "no hotel", T0)),
        (campaigns.LANGUAGE, campaigns.CampaignLive("c1", "Spring sale", T0)),
    ]:
        key = public_spec(type(event)).type.replace(".", "_")
        payload = doc["components"]["messages"][key]["payload"]
        schema = {**payload["properties"]["data"], "components": doc["components"]}
        jsonschema.validate(language.data_of(event), schema)
