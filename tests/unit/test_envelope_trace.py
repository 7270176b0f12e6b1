"""The relay's view of an envelope's trace context: read it, write another in its place."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from cloudevents.core.formats.json import JSONFormat

from chronik.messaging.envelope import (
    decode_envelope,
    encode_envelope,
    envelope,
    trace_of,
    with_trace,
)

STORED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PRODUCER = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"


def body(traceparent: str | None = STORED, tracestate: str | None = "ada=1") -> bytes:
    return encode_envelope(
        envelope(
            id="e-1",
            source="sales",
            type="sales.order_submitted.v1",
            subject="lead-1",
            time=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
            data={"order_id": "o-1"},
            correlationid="corr-1",
            causationid="cause-1",
            traceparent=traceparent,
            tracestate=tracestate,
        )
    )


def test_the_trace_context_of_an_envelope_is_read_without_its_data() -> None:
    assert trace_of(body()) == (STORED, "ada=1")
    assert trace_of(body(None, None)) == (None, None)
    assert trace_of(b"not json") == (None, None)


def test_another_trace_context_replaces_the_one_carried_and_nothing_else() -> None:
    before = msgspec.structs.asdict(decode_envelope(body()))
    after = msgspec.structs.asdict(decode_envelope(with_trace(body(), PRODUCER, None)))
    assert after == {**before, "traceparent": PRODUCER, "tracestate": None}


def test_the_rewritten_envelope_is_a_cloudevent_with_both_tracing_extensions() -> None:
    event = JSONFormat().read(None, with_trace(body(), PRODUCER, "ada=2"))
    assert event.get_extension("traceparent") == PRODUCER
    assert event.get_extension("tracestate") == "ada=2"
    assert event.get_id() == "e-1"


def test_a_body_that_is_no_envelope_is_sent_as_it_is() -> None:
    assert with_trace(b"\x00 not ours", PRODUCER, None) == b"\x00 not ours"
