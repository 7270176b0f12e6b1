"""The message envelope between contexts: CloudEvents 1.0, structured JSON.

    {"specversion": "1.0", "id": <event id>, "source": "sales",
     "type": "sales.order_submitted.v1", "subject": <stream id>, "time": ...,
     "datacontenttype": "application/json", "data": {...},
     "correlationid": ..., "causationid": ..., "traceparent": ...}

Envelopes are written by msgspec (an envelope is built for every public event in the
append's transaction, so it must be cheap); the tests parse every one with the
CloudEvents SDK (the ``cloudevents`` package) to prove they are valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = ["CONTENT_TYPE", "Envelope", "decode_envelope", "encode_envelope", "envelope"]

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
    traceparent: str | None = None


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
