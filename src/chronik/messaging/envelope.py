"""The message envelope between contexts: CloudEvents 1.0, structured JSON.

    {"specversion": "1.0", "id": <event id>, "source": "sales",
     "type": "sales.order_submitted.v1", "subject": <stream id>, "time": ...,
     "datacontenttype": "application/json", "data": {...},
     "correlationid": ..., "causationid": ..., "traceparent": ..., "tracestate": ...}

Envelopes are written by msgspec (an envelope is built for every public event in the
append's transaction, so it must be cheap); the tests parse every one with the
CloudEvents SDK (the ``cloudevents`` package) to prove they are valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "CONTENT_TYPE",
    "Envelope",
    "decode_envelope",
    "encode_envelope",
    "envelope",
    "trace_of",
    "with_trace",
]

CONTENT_TYPE = "application/cloudevents+json"


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A CloudEvent as chronik sends it. Extension names follow the spec: lowercase.

    ``specversion`` and ``datacontenttype`` have no defaults on purpose: with
    ``omit_defaults`` a field equal to its default is not written, and CloudEvents
    requires ``specversion`` in every event. Build one with ``envelope(...)``.
    """

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: str
    data: Any
    correlationid: str | None = None
    causationid: str | None = None
    #: the CloudEvents distributed tracing extension: W3C trace context
    traceparent: str | None = None
    tracestate: str | None = None


def envelope(
    *,
    id: str,
    source: str,
    type: str,
    subject: str,
    time: datetime,
    data: Any,
    correlationid: str | None = None,
    causationid: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    """A CloudEvents 1.0 envelope with JSON data."""
    return Envelope(
        specversion="1.0",
        id=id,
        source=source,
        type=type,
        subject=subject,
        time=time,
        datacontenttype="application/json",
        data=data,
        correlationid=correlationid,
        causationid=causationid,
        traceparent=traceparent,
        tracestate=tracestate,
    )


_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    return _encode(envelope)


def decode_envelope(body: bytes) -> Envelope:
    """Parse a message body; ValueError saying what is wrong if it is not our envelope."""
    try:
        envelope = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a CloudEvents 1.0 structured JSON envelope: {exc}") from None
    if envelope.specversion != "1.0":
        raise ValueError(f"CloudEvents specversion {envelope.specversion!r} is not 1.0")
    return envelope


class _Trace(msgspec.Struct):
    traceparent: str | None = None
    tracestate: str | None = None


_trace_decoder = msgspec.json.Decoder(_Trace)


def trace_of(body: bytes) -> tuple[str | None, str | None]:
    """The traceparent and tracestate of an encoded envelope (None, None if it has none)."""
    try:
        found = _trace_decoder.decode(body)
    except msgspec.DecodeError:
        return None, None
    return found.traceparent, found.tracestate


def with_trace(body: bytes, traceparent: str, tracestate: str | None) -> bytes:
    """The encoded envelope with this trace context in place of the one it carried."""
    try:
        found = _decoder.decode(body)
    except msgspec.DecodeError:
        return body  # not ours: sent as it is (the consumer dead-letters it)
    return _encode(msgspec.structs.replace(found, traceparent=traceparent, tracestate=tracestate))
