"""The composition root: a service assembled from its settings and its contexts' parts.

A bounded context declares a ``ServiceSpec``: its event types, projections, published
language and translation, consumers and HTTP routes. ``Runtime`` opens the database
(``chronik.adapters.open_database``) and the broker, wires the event store, the
projection engine, the outbox and relay, the consumers and the processes to the roles
of that one database, and runs the roles ``CHRONIK_RUN`` names. Embedded mode
runs every context in one process on one store; the split mode runs one context per
process, and HTTP, relay and projection runners in separate processes if wanted.
Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chronik.adapters import Database, open_broker, open_database
from chronik.adapters.url import redact
from chronik.domain import Aggregate
from chronik.errors import ChronikError, ConfigurationError
from chronik.eventstore import BaseEventStore, EventTypes, Upcaster
from chronik.messaging.consumer import Consumer, Handler
from chronik.messaging.contracts import PublishedLanguage
from chronik.messaging.outbox import Outbox, Translate
from chronik.messaging.port import Broker, MessageStorage
from chronik.messaging.relay import Relay
from chronik.processes.clock import Clock, SystemClock, TurnableClock
from chronik.processes.index import process_index
from chronik.projections import InlineProjections, Projection, ProjectionEngine
from chronik.projections.health import (
    HEARTBEAT,
    NOT_READY,
    STALE_AFTER,
    WORKER_ROW,
    ProjectionStatus,
    StatusReporter,
    heartbeat_for,
)
from chronik.runtime.migrations import plan, refuse_pending
from chronik.runtime.observability import Metrics
from chronik.runtime.settings import Settings, opened_from
from chronik.worker import Supervised, WorkerStatus, reason
from chronik.worker import Worker as SupervisedWorker

__all__ = ["ConsumerSpec", "Runtime", "ServiceSpec", "Worker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer of another context's public events; handlers are built from the runtime."""

    name: str
    language: PublishedLanguage
    handlers: Callable[[Runtime], Mapping[type, Handler]]


class Worker(Protocol):
    """A long-running part of a service (a process manager, a timer) the runtime starts.

    Subclass it for the defaults below, or have the same members
    (``chronik.processes.Processes`` does).
    """

    name: str = "worker"
    #: how often it writes its heartbeat, and when a silent one shows as stale: the
    #: runtime sets both from ``CHRONIK_STALE_AFTER`` before ``setup``
    heartbeat: float = HEARTBEAT
    stale_after: float = STALE_AFTER

    async def setup(self) -> None:
        """Create what it needs before anything runs."""

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        await stop.wait()

    async def readiness(self) -> list[str]:
        """Reasons it is not ready (empty when ready)."""
        return []

    async def statuses(self) -> list[ProjectionStatus]:
        """The runners it keeps a row for (``chronik projections status`` shows them)."""
        return []


@dataclass(frozen=True)
class ServiceSpec:
    """What one bounded context brings to a service."""

    name: str
    event_types: Sequence[type]
    upcasters: Sequence[Upcaster] = ()
    projections: Sequence[Projection] = ()
    inline_projections: Sequence[Projection] = ()
    language: PublishedLanguage | None = None
    translate: Translate | None = None
    consumers: Sequence[ConsumerSpec] = ()
    workers: Callable[[Runtime], Sequence[Worker]] | None = None
    #: builds the context's FastAPI APIRouter (kept untyped here: the runtime is not HTTP)
    routes: Callable[[Runtime], Any] | None = None
    #: aggregate classes by stream prefix, for tools (``chronik streams show --at``)
    aggregates: Mapping[str, type[Aggregate]] = field(default_factory=dict)
    #: runs once the store is open, before anything else (seed data, checks)
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Runtime:
    """A running service: one database and its store, one broker, the engine, outboxes,
    consumers, workers. The composition root: every part gets the roles it needs from the
    one database opened here."""

    def __init__(
        self, settings: Settings, specs: Sequence[ServiceSpec], *, relay_all: bool = False
    ) -> None:
        """``relay_all``: the relay role relays the store's whole outbox, though none of
        ``specs`` publishes (``chronik relay``: whoever wrote the outbox)."""
        names = [s.name for s in specs]
        self.relay_all = relay_all
        if not specs or len(set(names)) != len(names):
            raise ConfigurationError(f"a service needs contexts with distinct names, got {names}")
        self.settings = settings
        self.specs = list(specs)
        self.roles = settings.roles
        self.database: Database
        self.store: BaseEventStore
        #: the outbox, inbox and dead letters of the database
        self.messages: MessageStorage
        #: the index of every process on the store (``chronik.processes.process_index``)
        self.process_index: InlineProjections
        self.broker: Broker | None = None
        self.engine: ProjectionEngine
        self.inline: InlineProjections
        self.outboxes: list[Outbox] = []
        self.relay: Relay | None = None
        self.consumers: list[Consumer] = []
        self.workers: list[Worker] = []
        #: its Prometheus metrics, which its parts report to (``/metrics`` shows them)
        self.metrics = Metrics(settings.service)
        #: the clock processes read (``CHRONIK_CLOCK``): a context passes it to its
        #: ``Processes``; ``virtual`` is a ``TurnableClock`` kept in the data directory
        self.clock: Clock = SystemClock()
        self.started_at = time.monotonic()
        self.ready_once = False
        self.shutting_down = False
        self.migrated = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._supervised: list[Supervised] = []
        #: the workers whose task ended before the service stopped, and why
        self._ended: dict[str, str] = {}

    @property
    def types(self) -> EventTypes:
        return self.store.types

    async def start(self) -> None:
        """Open everything, migrate (or check), and start the roles this process runs.

        The broker first: a process that cannot reach it (``CHRONIK_BROKER_CONNECT_TIMEOUT``)
        exits having changed nothing. An error names the setting that was wrong. With
        ``CHRONIK_AUTO_MIGRATE=false`` no DDL runs: a store whose tables are missing or
        behind is MigrationsPendingError, one line naming ``chronik migrate``.
        """
        settings = self.settings
        if settings.clock == "virtual":
            self.clock = _turnable_clock(settings.data_dir)
        publishes = self.relay_all or any(
            s.language is not None and s.translate is not None for s in self.specs
        )
        consumes = any(s.consumers for s in self.specs)
        if ("relay" in self.roles and publishes) or ("consumers" in self.roles and consumes):
            self.broker = await opened_from(
                "CHRONIK_BROKER_URL",
                open_broker(settings.broker_url, connect_timeout=settings.broker_connect_timeout),
            )
        setting = "CHRONIK_EVENT_STORE_URL" if settings.event_store_url else "CHRONIK_DATA_DIR"
        try:
            database = await opened_from(
                setting, open_database(settings.store_url, migrate=settings.auto_migrate)
            )
        except BaseException:
            if self.broker is not None:
                await self.broker.close()
            raise
        try:
            await self.prepare(database)
        except BaseException:
            if self.broker is not None:
                await self.broker.close()
            await database.close()
            raise
        for spec in self.specs:
            if spec.on_start is not None:
                await spec.on_start(self)
        # Consumers subscribe before the relay publishes: the memory broker delivers
        # only to subscribers present.
        if "consumers" in self.roles and self.broker is not None:
            for consumer in self.consumers:
                await self._keeps_a_row(consumer, f"{WORKER_ROW}consumer.{consumer.name}")
                await consumer.start(self.broker)
        if "projections" in self.roles:
            await self.engine.start()
        if "relay" in self.roles and self.broker is not None and (self.outboxes or self.relay_all):
            if self.relay_all:  # the outbox's tables, which no outbox here set up
                await self.messages.setup()
            self.relay = Relay(
                self.store, self.broker, storage=self.messages, instruments=self.metrics
            )
            await self._keeps_a_row(self.relay, f"{WORKER_ROW}relay")
            self._supervised.append(Supervised(self.relay, self._stop))
        if "processes" in self.roles:
            for worker in self.workers:
                if isinstance(worker, SupervisedWorker):
                    self._supervised.append(Supervised(worker, self._stop))
                else:  # a worker of the user's own making: its task, its end noted
                    self._spawn(worker.run(self._stop), worker.name)

    async def _keeps_a_row(self, worker: Any, name: str) -> None:
        """Have ``worker`` write its state to a row of its own, for the status commands."""
        if await self._backend.load(name) is None:
            await self._backend.create(name, 1, [], {})
        worker.sink = StatusReporter(self._backend, name, self._beat)

    async def prepare(self, database: Database) -> None:
        """Wire every part to ``database`` and make its tables; start nothing.

        Opened with ``migrate=False`` the database runs no DDL: the tables are checked
        first (``chronik.runtime.migrations``) and anything pending is refused, before
        a part so much as looks. ``chronik migrate`` calls this with a database that may
        migrate, and also begins the rebuilds of projections whose version changed.
        """
        self.wire(database)
        if not database.auto_migrate:
            steps = await plan(database, self.store, self.specs)
            refuse_pending(steps, redact(self.settings.store_url))
        settings = self.settings
        beat = heartbeat_for(settings.stale_after)
        await self.engine.setup()
        await self.inline.setup()
        for outbox in self.outboxes:
            await outbox.setup()
        for consumer in self.consumers:
            await consumer.setup()
        for worker in self.workers:
            worker.heartbeat, worker.stale_after = beat, settings.stale_after
            await worker.setup()
        self.migrated = True

    def wire(self, database: Database) -> None:
        """Make the parts on ``database``: no I/O yet."""
        settings = self.settings
        types = EventTypes(
            [t for s in self.specs for t in s.event_types],
            upcasters=[u for s in self.specs for u in s.upcasters],
        )
        self.database = database
        self.store = self.database.event_store(types)
        self.store.instruments = self.metrics
        self.messages = self.database.messages()
        backend = self.database.projections()
        self.process_index = process_index(self.store, backend)
        projections = [p for s in self.specs for p in s.projections]
        self._backend = backend
        self._beat = heartbeat_for(settings.stale_after)
        self.engine = ProjectionEngine(
            self.store,
            projections,
            backend=backend,
            heartbeat=self._beat,
            stale_after=settings.stale_after,
            instruments=self.metrics,
        )
        self.inline = InlineProjections(
            self.store, [p for s in self.specs for p in s.inline_projections], backend=backend
        )
        for spec in self.specs:
            if spec.language is not None and spec.translate is not None:
                self.outboxes.append(
                    Outbox(
                        self.store,
                        spec.translate,
                        spec.language,
                        source=spec.name,
                        storage=self.messages,
                    )
                )
        for spec in self.specs:
            for consumer_spec in spec.consumers:
                self.consumers.append(
                    Consumer(
                        consumer_spec.name,
                        self.store,
                        consumer_spec.language,
                        consumer_spec.handlers(self),
                        storage=self.messages,
                        lanes=self.settings.consumer_lanes,
                        batch=self.settings.consumer_batch,
                        instruments=self.metrics,
                    )
                )
            if spec.workers is not None:
                self.workers.extend(spec.workers(self))

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                # It ended: readiness says so, with the reason, until the process restarts.
                self._ended[name] = reason(exc)
                log.exception("worker stopped with an error", extra={"worker": name})
            else:
                if not self._stop.is_set():
                    self._ended[name] = "it returned before the service stopped"

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def stop(self) -> None:
        """Let workers finish their batch and store their checkpoints; close everything."""
        self._stop.set()
        await self.engine.stop()
        for consumer in self.consumers:
            await consumer.stop()
        tasks = [*self._tasks, *(s.task for s in self._supervised)]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.broker is not None:
            await self.broker.close()
        await self.database.close()

    @property
    def turnable_clock(self) -> TurnableClock | None:
        """The clock a person may move forward (``CHRONIK_CLOCK=virtual``), or None."""
        return self.clock if isinstance(self.clock, TurnableClock) else None

    def spec(self, name: str) -> ServiceSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    async def projection_statuses(self) -> list[ProjectionStatus]:
        """Every runner this process runs (and its inline read models), as shown."""
        statuses = await self.inline.statuses()
        if "projections" in self.roles:
            statuses += await self.engine.statuses()
        if "processes" in self.roles:
            for worker in self.workers:
                statuses += await worker.statuses()
        return statuses

    def worker_statuses(self) -> list[WorkerStatus]:
        """The relay and every consumer this process runs: state, reason, leadership."""
        found: list[WorkerStatus] = []
        if self.relay is not None:
            found.append(self.relay.worker_status())
        if "consumers" in self.roles and self.broker is not None:
            found.extend(c.worker_status() for c in self.consumers)
        return found

    async def shown_states(self) -> dict[str, str]:
        """Each runner's state as shown (the same as ``chronik projections status``).

        Empty while shutting down or when the store cannot be read (readiness says why).
        """
        if self.shutting_down:
            return {}
        try:
            statuses = await asyncio.wait_for(self.projection_statuses(), 2.0)
        except (TimeoutError, ChronikError, OSError):
            return {}
        return {status.name: status.state for status in statuses}

    async def readiness(self) -> list[str]:
        """Why this process must not get traffic; empty when it is ready."""
        reasons: list[str] = []
        if self.shutting_down:
            return ["shutting down"]
        if not self.migrated:
            reasons.append("migrations not applied yet")
        try:
            await asyncio.wait_for(self.store.head_position(), 2.0)
        except (TimeoutError, ChronikError, OSError) as exc:
            reasons.append(f"event store unreachable: {type(exc).__name__}: {exc}")
            return reasons
        problem = self.broker.problem if self.broker is not None else None
        if problem is not None:
            reasons.append(f"broker {redact(self.settings.broker_url)} unreachable: {problem}")
        if "projections" in self.roles:
            # The states /readyz and `chronik projections status` show: one computation.
            for status in await self.engine.statuses():
                if status.state == "standby":
                    continue
                if status.state in NOT_READY:
                    reasons.append(f"projection {status.name} is {status.state}")
                elif (
                    status.lag_events > self.settings.ready_max_lag
                    or status.lag_seconds > self.settings.ready_max_lag_seconds
                ):
                    reasons.append(
                        f"projection {status.name} lags {status.lag_events} events "
                        f"({status.lag_seconds:.1f} s)"
                    )
        for worker_status in self.worker_statuses():
            why = worker_status.why_not_ready()
            if why is not None:
                reasons.append(why)
        for name, why in self._ended.items():
            reasons.append(f"worker {name} stopped: {why}")
        for supervised in self._supervised:
            # A process manager retries on its own (and serves no reads); one whose task
            # ended with an error does not come back.
            ended = supervised.worker
            if ended is not self.relay and ended.state == "failed":
                reasons.append(ended.worker_status().why_not_ready() or "")
        for worker in self.workers:
            reasons.extend(await worker.readiness())
        if not reasons:
            self.ready_once = True
        return reasons


#: the file in the data directory that keeps the virtual clock's offset
CLOCK_FILE = "virtual-clock"


def _turnable_clock(data_dir: Path) -> TurnableClock:
    """The demo's virtual clock, its offset kept in ``data_dir`` across restarts."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return TurnableClock(data_dir / CLOCK_FILE)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"CHRONIK_CLOCK=virtual: {exc}") from None
