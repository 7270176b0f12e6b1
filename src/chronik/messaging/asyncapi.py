"""The AsyncAPI 3 document of the published language: what another team codes against.

One channel per public event type (its NATS subject, which is also its AMQP routing
key), one ``send`` operation per channel (the owning context sends it), and one
message whose payload is the CloudEvents envelope with the event's JSON Schema,
generated from its class, as ``data``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from chronik.messaging.contracts import PublishedLanguage, public_spec
from chronik.messaging.envelope import CONTENT_TYPE
from chronik.messaging.port import subject_of

__all__ = ["asyncapi_document", "languages"]


def _ident(type_name: str) -> str:
    """A component key for a public type: ``a.b_c.v1`` -> ``a_b_c_v1``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", type_name)


def asyncapi_document(
    language: PublishedLanguage,
    *,
    title: str = "chronik published language",
    version: str = "1.0.0",
    servers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document (as a dict) of every public event in ``language``."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for type_name in language.types:
        cls = language.class_of(type_name)
        assert cls is not None
        spec = public_spec(cls)
        key = _ident(type_name)
        template = f"#/components/schemas/{key}__{{name}}"
        (data,), components = msgspec.json.schema_components([cls], ref_template=template)
        for name, schema in components.items():
            schemas[f"{key}__{name}"] = schema
        messages[key] = {
            "name": type_name,
            "title": f"{cls.__name__} ({type_name})",
            "summary": (cls.__doc__ or "").strip().split("\n")[0] or type_name,
            "contentType": CONTENT_TYPE,
            "payload": _envelope(spec.source, type_name, data),
        }
        channels[key] = {
            "address": subject_of(type_name),
            "description": f"Routing key / subject of {type_name}",
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"send_{key}"] = {
            "action": "send",
            "summary": f"{spec.source} publishes {type_name}",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
        }
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Public events between bounded contexts, as CloudEvents 1.0 (structured "
                "JSON). The message id is the event id; consumers must expect duplicates."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    if servers:
        document["servers"] = {name: _server(url) for name, url in sorted(servers.items())}
    return document


def _envelope(source: str, type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "data",
        ],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "The event id: the deduplication key."},
            "source": {"const": source},
            "type": {"const": type_name},
            "subject": {"type": "string", "description": "The source stream id."},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "data": data,
            "correlationid": text,
            "causationid": text,
            "traceparent": {**text, "description": "W3C trace context"},
            "tracestate": {**text, "description": "W3C trace context: vendor-specific state"},
        },
    }


def _server(url: str) -> dict[str, Any]:
    protocol, _, rest = url.partition("://")
    return {"host": rest.rstrip("/"), "protocol": protocol}


def languages(*items: PublishedLanguage) -> PublishedLanguage:
    """One language of several contexts' public events."""
    merged = PublishedLanguage([])
    for item in items:
        merged = merged + item
    return merged
