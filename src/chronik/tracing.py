"""OpenTelemetry spans for chronik's work, and the W3C trace context its events carry.

chronik uses only the OpenTelemetry API (``pip install 'chronik[otel]'``), never the SDK:
the application that wants traces sets up a ``TracerProvider`` and its exporter (the
SDK reads the standard ``OTEL_*`` variables), and chronik's spans go there. Until one is
set, and when the API is not installed at all, every function here does nothing and
chronik carries the caller's ``traceparent`` as it always did (``http.app``'s parser).

The spans, and how one trace crosses contexts (the server span is FastAPI's own where
FastAPI makes one; chronik starts one only where nothing did):

    HTTP server span  "POST /sales/leads/{lead_id}/orders"
      append          "append lead-…"          event metadata: this span's traceparent
        relay publish "send sales.order_submitted.v1"   (producer; the outbox message
                                                       carries the append's context)
          consumer    "process sales.order_submitted.v1"  (the CloudEvent carries the
                                                         producer's context)
            append    "append budget-main"

The append span's context goes into the events' metadata (``traceparent``,
``tracestate``), the outbox copies it into the CloudEvent, and the relay's producer
span, a child of it, replaces it with its own before the message leaves; the
consumer's span is a child of that remote context. A projection batch is a trace of
its own, linked to the contexts of the events it applied.

Everything here imports nothing of chronik: it lives below every layer, like
``chronik.instruments``, and the OpenTelemetry API is imported on first use.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, NamedTuple, Protocol, TypeVar

__all__ = [
    "HttpSpan",
    "Publishing",
    "active",
    "appending",
    "carried",
    "consuming",
    "http_server",
    "projecting",
    "publishing",
    "system_of",
    "traceparent_of",
]

#: the instrumentation scope chronik's spans are reported under
SCOPE = "chronik"

#: the OpenTelemetry ``db.system`` / ``messaging.system`` of chronik's adapter packages
_SYSTEMS = {
    "postgres": "postgresql",
    "sqlite": "sqlite",
    "nats": "nats",
    "rabbitmq": "rabbitmq",
    "memory": "chronik_memory",
}


class _Api(NamedTuple):
    trace: ModuleType
    context: ModuleType
    propagate: ModuleType
    tracecontext: Any  # the W3C propagator (an instance)


_api: _Api | None = None
_looked_up = False
_tracer_of: tuple[object, Any] | None = None


def _load() -> _Api | None:
    """The OpenTelemetry API, imported once; None when it is not installed."""
    global _api, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            trace = importlib.import_module("opentelemetry.trace")
            context = importlib.import_module("opentelemetry.context")
            propagate = importlib.import_module("opentelemetry.propagate")
            w3c = importlib.import_module("opentelemetry.trace.propagation.tracecontext")
        except ImportError:
            return None
        _api = _Api(trace, context, propagate, w3c.TraceContextTextMapPropagator())
    return _api


def _tracer() -> tuple[_Api, Any] | None:
    """The API and chronik's tracer, if the application set a TracerProvider.

    Without one the global provider is the API's proxy, whose spans are no-ops: nothing
    is done at all then, and chronik's own traceparent handling stays in charge.
    """
    global _tracer_of
    api = _load()
    if api is None:
        return None
    provider = api.trace.get_tracer_provider()
    if isinstance(provider, api.trace.ProxyTracerProvider):
        return None
    if _tracer_of is None or _tracer_of[0] is not provider:
        _tracer_of = (provider, provider.get_tracer(SCOPE, _version()))
    return api, _tracer_of[1]


def _version() -> str | None:
    """chronik's version as installed (the package's, not imported: this is below it)."""
    try:
        return importlib.metadata.version("chronik")
    except importlib.metadata.PackageNotFoundError:
        return None


def active() -> bool:
    """Whether chronik's spans go anywhere (the API is there and a provider is set)."""
    return _tracer() is not None


def system_of(adapter: object) -> str | None:
    """The ``db.system`` / ``messaging.system`` of one of chronik's adapters, or None."""
    parts = type(adapter).__module__.split(".")
    if len(parts) >= 3 and parts[:2] == ["chronik", "adapters"]:
        return _SYSTEMS.get(parts[2])
    return None


def traceparent_of(span_context: Any) -> str:
    """A span context as a W3C traceparent (version 00)."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def _current(api: _Api) -> tuple[str, str | None] | None:
    """The current span's traceparent and tracestate, if there is a valid span."""
    found = api.trace.get_current_span().get_span_context()
    if not found.is_valid:
        return None
    state = found.trace_state.to_header() if found.trace_state else None
    return traceparent_of(found), state or None


class _Metadata(Protocol):
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str] | None: ...


M = TypeVar("M", bound=_Metadata)


def carried(metadata: M | None, make: Callable[..., M]) -> M | None:
    """``metadata`` with the current span's context as its traceparent and tracestate.

    What an append stores, so that whatever its events cause later (a relayed message,
    a consumer's append) continues the trace. Unchanged without an active span.
    """
    traced = _tracer()
    if traced is None:
        return metadata
    current = _current(traced[0])
    if current is None:
        return metadata
    traceparent, tracestate = current
    headers = dict(metadata.headers or {}) if metadata is not None else {}
    headers["traceparent"] = traceparent
    if tracestate:
        headers["tracestate"] = tracestate
    else:
        headers.pop("tracestate", None)
    if metadata is None:
        return make(None, None, headers)
    return make(metadata.correlation_id, metadata.causation_id, headers)


def _remote(api: _Api, traceparent: str | None, tracestate: str | None) -> Any:
    """The context of a W3C traceparent/tracestate pair (an empty one if it is invalid)."""
    carrier = {"traceparent": traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier["tracestate"] = tracestate
    return api.tracecontext.extract(carrier, context=api.context.Context())


# -- HTTP ---------------------------------------------------------------------------------


class HttpSpan:
    """The server span of one request: started by ``http_server``, ended by ``end``.

    When the request has a server span already (FastAPI's own telemetry, an ASGI
    instrumentation around the app, the user's app that mounts chronik's), that one is
    the request's span: chronik neither starts a second one nor ends that one.
    """

    def __init__(
        self, api: _Api | None = None, span: Any = None, method: str = "", *, own: bool = True
    ) -> None:
        self._api = api if own else None
        self._span = span
        self._method = method
        #: chronik's own span as the response's traceparent (None: no tracing)
        self.traceparent: str | None = None
        self.tracestate: str | None = None
        if span is not None:
            found = span.get_span_context()
            if found.is_valid:
                self.traceparent = traceparent_of(found)
                self.tracestate = found.trace_state.to_header() or None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The span is the current one in this block (what the app does is its child)."""
        if self._api is None:
            yield
            return
        with self._api.trace.use_span(self._span, end_on_exit=False):
            yield

    def end(self, route: str | None, status: int) -> None:
        """Name the span after the route template and end it (5xx: an error)."""
        if self._api is None:
            return
        span = self._span
        if route:
            span.update_name(f"{self._method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(self._api.trace.Status(self._api.trace.StatusCode.ERROR))
        span.end()


def http_server(method: str, scheme: str, path: str, headers: Mapping[str, str]) -> HttpSpan:
    """Start the server span of a request whose context is in ``headers`` (if any),
    unless a server span of the request is the current span already.

    The incoming context is read by the globally configured propagator (W3C trace
    context unless ``OTEL_PROPAGATORS`` says otherwise).
    """
    traced = _tracer()
    if traced is None:
        return HttpSpan()
    api, tracer = traced
    outer = api.trace.get_current_span()
    if outer.is_recording() and outer.get_span_context().is_valid:
        return HttpSpan(api, outer, method, own=False)
    parent = api.propagate.extract(headers, context=api.context.Context())
    span = tracer.start_span(
        method,
        context=parent,
        kind=api.trace.SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.path": path,
            "url.scheme": scheme,
        },
    )
    return HttpSpan(api, span, method)


# -- the event store ----------------------------------------------------------------------


class _Landed(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def position(self) -> int: ...


class _Appending:
    def __init__(self, span: Any = None) -> None:
        self._span = span

    def landed(self, result: _Landed) -> None:
        if self._span is not None:
            self._span.set_attribute("chronik.stream.version", result.version)
            self._span.set_attribute("chronik.position", result.position)


_NOT_APPENDING = _Appending()


@contextlib.contextmanager
def appending(store: object, stream_id: str, events: int) -> Iterator[_Appending]:
    """The span of an append to ``stream_id`` (a client span for a database's store).

    Its context is what the appended events carry (``carried``).
    """
    traced = _tracer()
    if traced is None:
        yield _NOT_APPENDING
        return
    api, tracer = traced
    system = system_of(store)
    attributes: dict[str, Any] = {
        "db.operation.name": "append",
        "chronik.stream.id": stream_id,
        "chronik.events": events,
    }
    kind = api.trace.SpanKind.INTERNAL
    if system is not None and system != "chronik_memory":
        attributes["db.system"] = attributes["db.system.name"] = system
        kind = api.trace.SpanKind.CLIENT
    with tracer.start_as_current_span(
        f"append {stream_id}", kind=kind, attributes=attributes
    ) as span:
        yield _Appending(span)


# -- projections --------------------------------------------------------------------------


class _Recorded(Protocol):
    @property
    def position(self) -> int: ...
    @property
    def metadata(self) -> _Metadata: ...


#: at most this many links from a projection batch to the contexts of its events
MAX_LINKS = 32


@contextlib.contextmanager
def projecting(projection: str, events: Sequence[_Recorded]) -> Iterator[None]:
    """The span of a projection's batch: a trace of its own, linked to its events'.

    Not a child of any request: the batch applies events of many of them, later.
    """
    traced = _tracer()
    if traced is None or not events:
        yield
        return
    api, tracer = traced
    links: list[Any] = []
    seen: set[str] = set()
    for recorded in events:
        traceparent = (recorded.metadata.headers or {}).get("traceparent")
        if traceparent and traceparent not in seen and len(links) < MAX_LINKS:
            seen.add(traceparent)
            found = api.trace.get_current_span(_remote(api, traceparent, None))
            if found.get_span_context().is_valid:
                links.append(api.trace.Link(found.get_span_context()))
    with tracer.start_as_current_span(
        f"project {projection}",
        context=api.context.Context(),
        kind=api.trace.SpanKind.INTERNAL,
        links=links,
        attributes={
            "chronik.projection": projection,
            "chronik.events": len(events),
            "chronik.position": events[-1].position,
        },
    ):
        yield


# -- messaging ----------------------------------------------------------------------------


class _Message(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def body(self) -> bytes: ...


TraceOf = Callable[[bytes], tuple[str | None, str | None]]
WithTrace = Callable[[bytes, str, str | None], bytes]


class Publishing:
    """The producer spans of one relayed batch, one per message, until ``end``."""

    def __init__(self, bodies: list[bytes] | None, spans: list[Any], api: _Api | None) -> None:
        #: the bodies to send, each with its producer span's context (None: as they are)
        self.bodies = bodies
        self._spans = spans
        self._api = api

    def end(self, outcomes: Sequence[BaseException | None] | BaseException) -> None:
        """End each span: ``outcomes`` per message, or one error for the whole batch."""
        if self._api is None:
            return
        for index, span in enumerate(self._spans):
            failure = outcomes if isinstance(outcomes, BaseException) else outcomes[index]
            if failure is not None:
                span.record_exception(failure)
                span.set_attribute("error.type", type(failure).__qualname__)
                span.set_status(self._api.trace.Status(self._api.trace.StatusCode.ERROR))
            span.end()


def publishing(
    broker: object, messages: Sequence[_Message], trace_of: TraceOf, with_trace: WithTrace
) -> Publishing:
    """Start a producer span per message, each a child of the context the message carries.

    ``trace_of`` reads a body's traceparent and tracestate, ``with_trace`` writes the
    producer span's in their place: the consumer's span becomes the producer's child.
    """
    traced = _tracer()
    if traced is None:
        return Publishing(None, [], None)
    api, tracer = traced
    system = system_of(broker) or "other"
    batch = len(messages)
    bodies: list[bytes] = []
    spans: list[Any] = []
    for message in messages:
        traceparent, tracestate = trace_of(message.body)
        attributes: dict[str, Any] = {
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": message.type,
            "messaging.message.id": message.id,
            "messaging.message.body.size": len(message.body),
            "cloudevents.event_id": message.id,
            "cloudevents.event_type": message.type,
        }
        if batch > 1:
            attributes["messaging.batch.message_count"] = batch
        span = tracer.start_span(
            f"send {message.type}",
            context=_remote(api, traceparent, tracestate),
            kind=api.trace.SpanKind.PRODUCER,
            attributes=attributes,
        )
        found = span.get_span_context()
        spans.append(span)
        if found.is_valid:
            state = found.trace_state.to_header() or None
            bodies.append(with_trace(message.body, traceparent_of(found), state))
        else:
            bodies.append(message.body)
    return Publishing(bodies, spans, api)


class _Consuming:
    def __init__(self, api: _Api | None = None, span: Any = None) -> None:
        self._api = api
        self._span = span

    def failed(self, error: str) -> None:
        """The message was not handled (dead-lettered): the span is an error."""
        if self._api is not None:
            self._span.set_attribute("error.type", error)
            self._span.set_status(self._api.trace.Status(self._api.trace.StatusCode.ERROR))


_NOT_CONSUMING = _Consuming()


@contextlib.contextmanager
def consuming(
    broker: object,
    consumer: str,
    message_id: str,
    type: str,
    source: str,
    traceparent: str | None,
    tracestate: str | None,
) -> Iterator[_Consuming]:
    """The consumer span of handling one message: a child of the context it carries."""
    traced = _tracer()
    if traced is None:
        yield _NOT_CONSUMING
        return
    api, tracer = traced
    with tracer.start_as_current_span(
        f"process {type}",
        context=_remote(api, traceparent, tracestate),
        kind=api.trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": system_of(broker) or "other",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": type,
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": message_id,
            "cloudevents.event_id": message_id,
            "cloudevents.event_type": type,
            "cloudevents.event_source": source,
        },
    ) as span:
        yield _Consuming(api, span)
