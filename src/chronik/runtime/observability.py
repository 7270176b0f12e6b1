"""Structured logs (structlog, JSON lines) and Prometheus metrics of a runtime.

Logs: every line is an event with fields, never a sentence with values pasted in
(``{"event": "projection parks an event", "projection": "lead_search", "position": 17}``):
the service's name, the logger's module path, the level, the time, the request's
correlation and trace ids (bound per request), and what the caller passed as
``extra``. docs/operations.md lists the fields.

Metrics follow Prometheus' conventions: counters end in ``_total``, every name carries
its unit, histograms have buckets chosen for the latencies they measure, no
``_created`` series, and the standard process and platform collectors are registered.
They live in a registry of the runtime's own (no global state at import). Gauges and
the counters the runtime keeps as plain integers are read when ``/metrics`` is scraped;
the parts report timings through ``chronik.instruments.Instruments``, which this class
implements. docs/operations.md lists every series.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import prometheus_client
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from chronik.errors import ChronikError

if TYPE_CHECKING:
    from chronik.runtime.service import Runtime

__all__ = ["Metrics", "configure_logging"]

log = logging.getLogger(__name__)

#: the longest a scrape waits for the stored state (readiness waits as long for the store)
STORED_WAIT = 2.0

# Buckets by what is measured (seconds). An append is a transaction of a millisecond or
# so, a group commit a few; a request adds JSON and a read; a projection page holds up to
# a thousand events; a relay batch waits for the broker's acks; a consumer's handling is
# a load and an append, retries included.
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HANDLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    *,
    service: str = "chronik",
    stream: IO[str] | None = None,
) -> None:
    """Route structlog and the standard library's logging to ``stream`` (stderr), as JSON
    lines or for people, each line with the ``service`` field."""

    def add_service(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        event.setdefault("service", service)
        return event

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # The standard library's records: their ``extra`` become fields.
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _extra_fields],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # chronik logs one line per request itself; uvicorn's would be a second one.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


_extra_adder = structlog.stdlib.ExtraAdder()


def _extra_fields(logger: Any, name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """A record's ``extra`` as fields; but uvicorn's ``color_message``, the same text again
    with terminal colours."""
    fields = _extra_adder(logger, name, event)
    fields.pop("color_message", None)
    return fields


class _Counted:
    """Counters the runtime keeps as plain integers, read at scrape time.

    Reading the integers costs the hot paths nothing; the values only grow while the
    process lives, so they are counters, and a restart resets them as Prometheus expects.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        self.families: dict[str, tuple[str, tuple[str, ...]]] = {
            "chronik_events_appended": ("Events appended by this process", ()),
            "chronik_relay_messages_published": (
                "Outbox messages the relay of this process published",
                (),
            ),
            "chronik_process_timeouts_fired": ("Durable timeouts fired by this process", ()),
            "chronik_consumer_messages_handled": (
                "Messages a consumer of this process handled",
                ("consumer",),
            ),
        }

    def describe(self) -> Iterable[Metric]:
        for name, (documentation, labels) in self.families.items():
            yield CounterMetricFamily(name, documentation, labels=labels)

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, labels) in self.families.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            for label_values, value in self.values.get(name, []):
                family.add_metric(label_values, value)
            yield family

    def set(self, name: str, samples: Iterable[tuple[tuple[str, ...], float]]) -> None:
        self.values[name] = list(samples)


class Metrics:
    """The Prometheus metrics of one runtime; also its ``chronik.instruments.Instruments``."""

    def __init__(self, service: str = "chronik") -> None:
        # ``_created`` series (one per counter and histogram child) double the series
        # count for a value nobody queries. The switch is the library's, process-wide.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        prometheus_client.ProcessCollector(registry=r)
        prometheus_client.PlatformCollector(registry=r)
        prometheus_client.GCCollector(registry=r)
        from chronik import __version__

        build = Gauge(
            "chronik_build_info",
            "The chronik version and Python this process runs, and its service's name",
            ["version", "python_version", "service"],
            registry=r,
        )
        build.labels(__version__, platform.python_version(), service).set(1)
        self.request_seconds = Histogram(
            "chronik_http_request_duration_seconds",
            "HTTP requests by route template, from the first byte in to the last byte out",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.append_seconds = Histogram(
            "chronik_append_duration_seconds",
            "A repository's append of an aggregate's new events (the transaction)",
            buckets=APPEND_BUCKETS,
            registry=r,
        )
        self.concurrency_retries = Counter(
            "chronik_append_concurrency_retries",
            "Commands run again after another writer changed their stream first",
            registry=r,
        )
        self.projection_batch_seconds = Histogram(
            "chronik_projection_batch_duration_seconds",
            "A projection's page of events applied and its checkpoint stored",
            ["projection"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.projection_events = Counter(
            "chronik_projection_events_applied",
            "Events read and applied by a projection runner of this process",
            ["projection"],
            registry=r,
        )
        self.relay_publish_seconds = Histogram(
            "chronik_relay_publish_duration_seconds",
            "The relay's publish of a batch of outbox messages, until the broker acked",
            buckets=PUBLISH_BUCKETS,
            registry=r,
        )
        self.consumer_seconds = Histogram(
            "chronik_consumer_handle_duration_seconds",
            "A consumer's handling of a delivery, retries included",
            ["consumer", "outcome"],
            buckets=HANDLE_BUCKETS,
            registry=r,
        )
        self.projection_lag = Gauge(
            "chronik_projection_lag_events",
            "Events a projection is behind the store's head",
            ["projection"],
            registry=r,
        )
        self.projection_lag_seconds = Gauge(
            "chronik_projection_lag_seconds",
            "Age of the oldest event a projection has not applied",
            ["projection"],
            registry=r,
        )
        self.projection_parked = Gauge(
            "chronik_projection_parked_events",
            "Events a projection parked (poison events waiting for a fix)",
            ["projection"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "chronik_outbox_pending_messages", "Messages waiting in the outbox", registry=r
        )
        self.outbox_age = Gauge(
            "chronik_outbox_oldest_pending_age_seconds",
            "Age of the oldest message waiting in the outbox (0 when none waits)",
            registry=r,
        )
        self.dead_letters = Gauge(
            "chronik_dead_letter_messages",
            "Messages a consumer gave up on, waiting in its dead letters",
            ["consumer"],
            registry=r,
        )
        self.ready = Gauge("chronik_ready", "1 when /readyz answers ready, else 0", registry=r)
        self._counted = _Counted()
        r.register(self._counted)

    # -- chronik.instruments.Instruments -----------------------------------------------

    def appended(self, seconds: float, events: int) -> None:
        self.append_seconds.observe(seconds)

    def concurrency_retry(self) -> None:
        self.concurrency_retries.inc()

    def projection_batch(self, projection: str, seconds: float, events: int) -> None:
        self.projection_batch_seconds.labels(projection).observe(seconds)
        self.projection_events.labels(projection).inc(events)

    def relay_publish(self, seconds: float, messages: int) -> None:
        self.relay_publish_seconds.observe(seconds)

    def consumer_handled(self, consumer: str, seconds: float, outcome: str) -> None:
        self.consumer_seconds.labels(consumer, outcome).observe(seconds)

    # -- at scrape time ----------------------------------------------------------------

    async def refresh(self, runtime: Runtime) -> None:
        """Read the runtime's state into the gauges and counters (called at scrape time)."""
        counted = self._counted
        counted.set("chronik_events_appended", [((), runtime.store.appended_events)])
        relayed = runtime.relay.status().relayed if runtime.relay is not None else 0
        counted.set("chronik_relay_messages_published", [((), relayed)])
        fired = sum(getattr(w, "fired", 0) for w in runtime.workers)
        counted.set("chronik_process_timeouts_fired", [((), fired)])
        counted.set(
            "chronik_consumer_messages_handled",
            [((c.name,), c.handled) for c in runtime.consumers],
        )
        self.ready.set(0 if await runtime.readiness() else 1)
        try:
            await asyncio.wait_for(self._read_stored(runtime), STORED_WAIT)
        except (ChronikError, OSError, TimeoutError) as exc:
            # The scrape still answers (chronik_ready says 0): an alert needs the series.
            # The stored gauges keep their last values meanwhile.
            log.warning(
                "metrics: stored state not read", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    async def _read_stored(self, runtime: Runtime) -> None:
        """The gauges whose values are in the database: lag, parked, outbox, dead letters."""
        for status in await runtime.projection_statuses():
            self.projection_lag.labels(status.name).set(status.lag_events)
            self.projection_lag_seconds.labels(status.name).set(status.lag_seconds)
            self.projection_parked.labels(status.name).set(status.parked)
        if runtime.outboxes:
            outbox = await runtime.messages.outbox_status()
            self.outbox_pending.set(outbox.pending)
            oldest = outbox.oldest_pending
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
            self.outbox_age.set(max(age, 0.0))
        for consumer in runtime.consumers:
            letters = await consumer.storage.dead_letters(consumer.name)
            self.dead_letters.labels(consumer.name).set(len(letters))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
