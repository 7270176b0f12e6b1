"""Structured logs (structlog, JSON lines) and Prometheus metrics of a runtime.

Logs carry the request's correlation id and trace id, bound per request. Metrics live
in a registry of the runtime's own (no global state at import); gauges are refreshed
from the runtime when ``/metrics`` is scraped, so nothing is counted on hot paths
beyond an integer.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from chronik.runtime.service import Runtime

__all__ = ["Metrics", "configure_logging"]


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Route structlog and the standard library's logging to stderr, as JSON or for people."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
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
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Metrics:
    """The Prometheus metrics of one runtime."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "chronik_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=r,
        )
        self.appended = Gauge(
            "chronik_events_appended", "Events appended by this process", registry=r
        )
        self.projection_lag = Gauge(
            "chronik_projection_lag_events",
            "Events a projection is behind",
            ["projection"],
            registry=r,
        )
        self.projection_lag_seconds = Gauge(
            "chronik_projection_lag_seconds",
            "Age of the oldest unapplied event",
            ["projection"],
            registry=r,
        )
        self.projection_parked = Gauge(
            "chronik_projection_parked", "Parked (poison) events", ["projection"], registry=r
        )
        self.outbox_pending = Gauge(
            "chronik_outbox_pending", "Messages waiting in the outbox", registry=r
        )
        self.relayed = Gauge(
            "chronik_relay_published", "Messages the relay of this process published", registry=r
        )
        self.relay_rate = Gauge(
            "chronik_relay_rate", "Messages per second the relay published lately", registry=r
        )
        self.dead_letters = Gauge(
            "chronik_dead_letters", "Messages a consumer gave up on", ["consumer"], registry=r
        )
        self.process_timeouts = Gauge(
            "chronik_process_timeouts_fired", "Durable timeouts fired by this process", registry=r
        )

    async def refresh(self, runtime: Runtime) -> None:
        """Read the runtime's state into the gauges (called at scrape time)."""
        self.appended.set(runtime.store.appended_events)
        for status in await runtime.projection_statuses():
            self.projection_lag.labels(status.name).set(status.lag_events)
            self.projection_lag_seconds.labels(status.name).set(status.lag_seconds)
            self.projection_parked.labels(status.name).set(status.parked)
        if runtime.outboxes or runtime.relay is not None:
            outbox = await runtime.messages.outbox_status()
            self.outbox_pending.set(outbox.pending)
        if runtime.relay is not None:
            relay = runtime.relay.status()
            self.relayed.set(relay.relayed)
            self.relay_rate.set(relay.rate)
        self.process_timeouts.set(sum(getattr(w, "fired", 0) for w in runtime.workers))
        for consumer in runtime.consumers:
            letters = await consumer.storage.dead_letters(consumer.name)
            self.dead_letters.labels(consumer.name).set(len(letters))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
