"""The projection engine: runs each projection from its checkpoint, exactly once per event.

One runner per projection follows "all events" (only the types it handles), applies a
page of events to the read model and moves the checkpoint in the same transaction: a
crash at any moment leaves every event applied exactly once. Caught up, it waits to be
woken by new events. A handler that keeps failing on one event is retried with backoff,
then the event is parked with its error and the others flow on (state "degraded"). An
event that cannot even be decoded (CorruptEventError) is parked at once the same way:
pages are read tolerantly, so one bad event never stops the runner or a rebuild.
A rebuild fills the next generation of the tables from position 0 while the serving
generation keeps up, then switches in one transaction.

    catching_up -> live <-> degraded          rebuilding (beside either)

Each runner writes its state to its row when it changes, and a heartbeat while it
runs; ``chronik.projections.health`` turns that into the state everyone shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chronik import tracing
from chronik.errors import LostLeadershipError
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.port import RecordedEvent, Undecodable
from chronik.eventstore.signal import HeadSignal
from chronik.instruments import NO_INSTRUMENTS, Instruments
from chronik.projections.health import (
    HEARTBEAT,
    STALE_AFTER,
    ProjectionStatus,
    RebuildProgress,
    StatusReporter,
    describe,
)
from chronik.projections.port import Parked, ProjectionBackend, ProjectionRow, physical
from chronik.projections.projection import Projection
from chronik.projections.readmodel import ReadModels, ReadModelTx
from chronik.worker import Worker, error_text

__all__ = [
    "ProjectionEngine",
    "ProjectionRunner",
    "ProjectionStatus",
    "RebuildProgress",
]

log = logging.getLogger(__name__)

#: How long a checkpoint moved past events of other types alone may stay unwritten.
SKIP_WRITE_EVERY = 1.0

#: the longest a failed runner waits before trying again: short enough that readiness
#: comes back soon after the database does
MAX_BACKOFF = 5.0
#: how often a reader waiting for another process's progress reads the stored checkpoint
FOLLOW_POLL = 0.02


class _HandlerFailed(Exception):
    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


class ProjectionRunner(Worker):
    """Runs one projection: leadership, catch-up, live tail, poison events, rebuilds.

    A ``chronik.worker.Worker`` under the lease ``projection:NAME``.
    """

    kind = "projection"
    logger = log
    running_state = "live"
    backing_off_state = "error"

    def __init__(
        self,
        projection: Projection,
        store: BaseEventStore,
        backend: ProjectionBackend,
        *,
        page_size: int = 1000,
        retries: int = 3,
        retry_backoff: float = 0.1,
        idle_wait: float = 1.0,
        standby_wait: float = 2.0,
        heartbeat: float = HEARTBEAT,
        stale_after: float = STALE_AFTER,
        instruments: Instruments = NO_INSTRUMENTS,
    ) -> None:
        type(projection).check()
        super().__init__(
            projection.name,
            lease=lambda: backend.lease(f"projection:{projection.name}"),
            backoff=retry_backoff,
            max_backoff=MAX_BACKOFF,
            standby_wait=standby_wait,
            idle_wait=idle_wait,
            heartbeat=heartbeat,
        )
        self.projection = projection
        self.store = store
        self.backend = backend
        self.page_size = page_size
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.stale_after = stale_after
        self.instruments = instruments
        self.type_names = sorted(
            {name for cls in projection.event_types for name in store.types.names_of(cls)}
        )
        #: the stored names among them of events that forget a data subject
        self.forgetting = set(self.type_names) & store.types.forgetting_names
        self.checkpoint = 0
        self.head = 0
        self.parked_count = 0
        self._row: ProjectionRow | None = None
        self._progress = HeadSignal()
        self._reporter = StatusReporter(backend, self.name, heartbeat)
        self._rebuild_started: tuple[float, int] | None = None
        self._last_requests = 0.0
        #: when the checkpoint was last written (a page with none of the projection's
        #: events moves it in memory only, written within SKIP_WRITE_EVERY: see _skip)
        self._written_at = 0.0

    # -- the worker's hooks (``chronik.worker.Worker.run`` is the loop) ----------------
    #
    # Any failure (the database gone, leadership lost, a bug) puts the runner in state
    # "error" and it tries again with growing backoff: a runner that ended would leave
    # its projection, and so readiness, stuck until the process restarts.

    async def begin(self) -> None:
        self._last_requests = 0.0
        await self._ensure()

    async def step(self) -> bool:
        now = time.monotonic()
        if now - self._last_requests >= min(1.0, self.idle_wait):
            await self._handle_requests()
            self._last_requests = now
        worked = await self._live_step()
        if self._rebuilding:
            worked = await self._rebuild_step() or worked
        return worked

    def worked(self) -> None:
        # "error" lasts until a whole step succeeds (the retry of a failing rebuild
        # step must not show "catching_up" in between).
        if self.state == "error":
            self.state, self.error = "catching_up", None

    def caught_up(self) -> None:
        self.state = "degraded" if self.parked_count else "live"
        self.error = None

    async def progressed(self) -> None:
        await self._write_status()

    async def idle(self, seconds: float) -> None:
        # Woken at least once a heartbeat, to write it.
        await self._write_skipped(due=True)
        await self.store.wait_for_events(self.checkpoint, seconds)

    async def standing_by(self) -> None:
        await self._follow_leader()

    async def failed(self, exc: Exception, led: bool) -> None:
        if led and not isinstance(exc, LostLeadershipError):  # else the row is another's
            await self._write_status(force=True, quiet=True)

    async def stopped(self) -> None:
        try:
            await self._write_skipped(due=False)
        except Exception:  # the next leader reads those events again: harmless
            log.debug("projection's skipped checkpoint not written", exc_info=True)
        if self.state not in ("standby",):
            self.state = "stopped"
            await self._write_status(force=True, quiet=True)

    async def _follow_leader(self) -> None:
        """In standby, take the leader's progress from the store: for status and waiters."""
        row = await self.backend.load(self.name)
        if row is not None:
            self._row = row
            self.checkpoint = row.checkpoint
            self._progress.advance(row.checkpoint)

    async def _ensure(self) -> None:
        spec = type(self.projection)
        row = await self.backend.load(self.name)
        if row is None:
            row = await self.backend.create(self.name, spec.version, spec.tables, spec.indexes)
        elif row.version != spec.version and row.rebuild_version != spec.version:
            log.info(
                "projection rebuilds beside its tables",
                extra={"projection": self.name, "version": spec.version, "tables": row.version},
            )
            row = await self.backend.begin_rebuild(
                self.name, spec.version, spec.tables, spec.indexes
            )
        self._row = row
        self.checkpoint = row.checkpoint
        self._progress.advance(row.checkpoint)
        self.parked_count = len(await self.backend.parked(self.name))
        if self.state != "error":
            self.state, self.error = "catching_up", None
        await self._write_status(force=True)  # it leads: its row says so, with a heartbeat

    @property
    def _rebuilding(self) -> bool:
        return self._row is not None and self._row.rebuild_generation is not None

    def _tables(self, generation: int) -> dict[str, str]:
        return {t: physical(self.name, t, generation) for t in self.projection.tables}

    async def _live_step(self) -> bool:
        assert self._row is not None
        page = await self.store.read_all_page(
            self.checkpoint, limit=self.page_size, types=self.type_names, tolerant=True
        )
        if page.scanned_to <= self.checkpoint:
            return False
        if not page.events and not self._rebuilding:
            await self._skip(page.scanned_to)
            return True
        if len(page.events) == self.page_size:
            self.state = "catching_up"
        await self._apply(page.events, page.scanned_to, self._row.generation, rebuilding=False)
        return True

    async def _skip(self, to: int) -> None:
        """Move past events of other types: in memory, written at most once a second.

        Each append wakes every runner, and one whose types it does not hold would
        otherwise commit a transaction only to move its checkpoint. Not writing it at
        once loses nothing: a runner that starts from the older stored checkpoint reads
        the same range again and finds nothing in it for the projection. The next page
        with events writes it in its own commit; status and ``wait_until`` use the
        checkpoint in memory.
        """
        self.checkpoint = to
        self._progress.advance(to)
        await self._write_skipped(due=True)

    async def _write_skipped(self, *, due: bool) -> None:
        """Write the checkpoint a skip moved, if any (``due``: only once it is a second old)."""
        row = self._row
        if row is None or row.checkpoint >= self.checkpoint or self._rebuilding:
            return
        if due and time.monotonic() - self._written_at < SKIP_WRITE_EVERY:
            return
        to = self.checkpoint
        async with self.backend.transaction() as btx:
            await btx.advance(self.name, row.generation, False, row.checkpoint, to)
        row.checkpoint = to
        self._written_at = time.monotonic()

    async def _rebuild_step(self) -> bool:
        row = self._row
        assert row is not None and row.rebuild_generation is not None
        done = row.rebuild_checkpoint or 0
        if self._rebuild_started is None:
            self._rebuild_started = (time.monotonic(), done)
        if done < self.checkpoint:
            page = await self.store.read_all_page(
                done, limit=self.page_size, types=self.type_names, tolerant=True
            )
            await self._apply(page.events, page.scanned_to, row.rebuild_generation, rebuilding=True)
        if (row.rebuild_checkpoint or 0) >= self.checkpoint:
            self._row = await self.backend.switch(self.name, self.projection.tables)
            self.checkpoint = self._row.checkpoint
            self._rebuild_started = None
            self._progress.advance(self.checkpoint)
            log.info(
                "projection rebuilt",
                extra={"projection": self.name, "generation": self._row.generation},
            )
        return True

    # -- applying events ---------------------------------------------------------------

    async def _apply(
        self, events: Sequence[RecordedEvent], to: int, generation: int, *, rebuilding: bool
    ) -> None:
        expected = self._checkpoint_of(rebuilding)
        started = time.perf_counter()
        with tracing.projecting(self.name, events):
            try:
                await self._commit(events, generation, rebuilding, expected, to)
            except _HandlerFailed as failed:
                index = failed.index
                if index > 0:
                    before = events[index - 1].position
                    await self._commit(events[:index], generation, rebuilding, expected, before)
                    expected = before
                await self._retry_or_park(
                    events[index], failed.cause, generation, rebuilding, expected
                )
        self.instruments.projection_batch(self.name, time.perf_counter() - started, len(events))

    def _checkpoint_of(self, rebuilding: bool) -> int:
        # The stored checkpoint, which a skip may have left behind the one in memory.
        assert self._row is not None
        if rebuilding:
            return self._row.rebuild_checkpoint or 0
        return self._row.checkpoint

    def _moved(self, rebuilding: bool, to: int) -> None:
        assert self._row is not None
        if rebuilding:
            self._row.rebuild_checkpoint = to
        else:
            self.checkpoint = self._row.checkpoint = to
            self._progress.advance(to)
            self._written_at = time.monotonic()

    async def _commit(
        self,
        events: Sequence[RecordedEvent],
        generation: int,
        rebuilding: bool,
        expected: int,
        to: int,
    ) -> None:
        projection = self.projection
        async with self.backend.transaction() as btx:
            tx = ReadModelTx(btx, self._tables(generation))
            for index, recorded in enumerate(events):
                if type(recorded.event) is Undecodable:
                    raise _HandlerFailed(index, recorded.event.error)
                handler = projection.handler_for(type(recorded.event))
                if handler is None:
                    continue
                tx.current = recorded
                try:
                    await handler(recorded.event, tx)
                except Exception as exc:
                    raise _HandlerFailed(index, exc) from exc
            await tx.flush()
            await btx.advance(self.name, generation, rebuilding, expected, to)
        if self.forgetting and any(r.type in self.forgetting for r in events):
            # The page overwrote a forgotten subject's data: make it leave the files too.
            await self.backend.forgotten()
        self._moved(rebuilding, to)

    async def _retry_or_park(
        self,
        recorded: RecordedEvent,
        cause: BaseException,
        generation: int,
        rebuilding: bool,
        expected: int,
    ) -> None:
        attempts = 1
        # An event that does not decode will not decode on a retry: it is parked at once.
        while attempts < self.retries and type(recorded.event) is not Undecodable:
            await asyncio.sleep(self.retry_backoff * 2 ** (attempts - 1))
            attempts += 1
            try:
                await self._commit([recorded], generation, rebuilding, expected, recorded.position)
                return
            except _HandlerFailed as failed:
                cause = failed.cause
        error = error_text(cause)
        log.error(
            "projection parks an event",
            extra={
                "projection": self.name,
                "stream": recorded.stream_id,
                "version": recorded.version,
                "position": recorded.position,
                "attempts": attempts,
                "error": error,
                # the conversation the event belongs to, to find the request that caused it
                "correlation_id": recorded.metadata.correlation_id,
            },
        )
        async with self.backend.transaction() as btx:
            await btx.park(self.name, recorded, error, attempts)
            await btx.advance(self.name, generation, rebuilding, expected, recorded.position)
        self._moved(rebuilding, recorded.position)
        if not rebuilding:
            self.parked_count += 1
            self.state = "degraded"

    # -- requests from the CLI or the application --------------------------------------

    async def _handle_requests(self) -> None:
        row = await self.backend.load(self.name)
        if row is None or not row.request:
            return
        request = row.request
        if request == "rebuild":
            if not self._rebuilding:
                spec = type(self.projection)
                self._row = await self.backend.begin_rebuild(
                    self.name, spec.version, spec.tables, spec.indexes
                )
                self._rebuild_started = None
        elif request == "replay-parked":
            await self._replay_parked()
        elif request == "skip-parked":
            for parked in await self.backend.parked(self.name):
                await self.backend.unpark(self.name, parked.position)
            self.parked_count = 0
        else:
            log.warning(
                "projection ignores an unknown request",
                extra={"projection": self.name, "request": request},
            )
        await self._reporter.report(self.state, self.error, clear_request=request)

    async def _replay_parked(self) -> None:
        """Apply each parked event again, in position order; keep those that still fail."""
        assert self._row is not None
        for parked in await self.backend.parked(self.name):
            page = await self.store.read_all_page(parked.position - 1, limit=1, tolerant=True)
            found = page.events
            if not found or found[0].position != parked.position:
                await self.backend.unpark(self.name, parked.position)
                continue
            recorded = found[0]
            try:
                if type(recorded.event) is Undecodable:
                    raise recorded.event.error
                async with self.backend.transaction() as btx:
                    tx = ReadModelTx(btx, self._tables(self._row.generation))
                    handler = self.projection.handler_for(type(recorded.event))
                    if handler is not None:
                        tx.current = recorded
                        await handler(recorded.event, tx)
                    await tx.flush()
                    await btx.unpark(self.name, parked.position)
            except Exception as exc:
                error = error_text(exc)
                async with self.backend.transaction() as btx:
                    await btx.park(self.name, recorded, error, parked.attempts + 1)
                log.error(
                    "projection's parked event fails again",
                    extra={
                        "projection": self.name,
                        "stream": recorded.stream_id,
                        "position": parked.position,
                        "error": error,
                    },
                )
        self.parked_count = len(await self.backend.parked(self.name))

    # -- status ------------------------------------------------------------------------

    async def _write_status(self, *, force: bool = False, quiet: bool = False) -> None:
        await self._reporter.report(self.state, self.error, force=force, quiet=quiet)

    async def status(self) -> ProjectionStatus:
        """Where this runner stands, measured now: ``describe`` of its own row."""
        head = await self.store.head_position()
        lag_seconds = 0.0
        if head > self.checkpoint:
            nxt = await self.store.read_all_page(
                self.checkpoint, limit=1, types=self.type_names, tolerant=True
            )
            if nxt.events:
                lag_seconds = max(
                    0.0, (datetime.now(UTC) - nxt.events[0].recorded_at).total_seconds()
                )
        rate = 0.0
        row = self._row
        if row is not None and row.rebuild_generation is not None and self._rebuild_started:
            began, at = self._rebuild_started
            elapsed, done = time.monotonic() - began, row.rebuild_checkpoint or 0
            if elapsed > 0 and done > at:
                rate = (done - at) / elapsed
        mine = dataclasses.replace(
            self._reporter.row(row),
            state=self.state,
            detail=self.error,
            checkpoint=self.checkpoint,
            version=row.version if row else type(self.projection).version,
        )
        return describe(
            mine,
            head=head,
            parked=self.parked_count,
            lag_seconds=lag_seconds,
            stale_after=self.stale_after,
            rebuild_rate=rate,
        )

    async def wait_until(self, position: int, max_wait: float) -> bool:
        """Wait until the checkpoint reaches ``position``; False if ``max_wait`` ran out.

        While this runner leads, its own progress wakes the waiter. Otherwise the events
        are applied elsewhere (another replica leads, or this process does not run the
        projections role and never started the runner), so the stored checkpoint is the
        truth: it is read again until it passes ``position``.
        """
        deadline = time.monotonic() + max_wait
        while True:
            reached = self.checkpoint if self.leading else await self._stored_checkpoint()
            left = deadline - time.monotonic()
            if reached >= position:
                return True
            if left <= 0:
                return False
            if self.leading:
                # In slices: leadership may move elsewhere while this waits.
                await self._progress.wait(self.checkpoint, min(left, self.idle_wait))
            else:
                await asyncio.sleep(min(FOLLOW_POLL, left))

    async def _stored_checkpoint(self) -> int:
        row = await self.backend.load(self.name)
        return row.checkpoint if row is not None else 0


class ProjectionEngine:
    """Runs a service's projections and answers queries on their read models.

    ``backend`` is the projection backend of the store's database
    (``Database.projections()``): a page's read-model writes and its checkpoint commit
    together there.
    """

    def __init__(
        self,
        store: BaseEventStore,
        projections: Sequence[Projection],
        *,
        backend: ProjectionBackend,
        **options: Any,
    ) -> None:
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique, got {names}")
        self.store = store
        self.backend = backend
        self.runners = {
            p.name: ProjectionRunner(p, store, self.backend, **options) for p in projections
        }
        self.read_models = ReadModels(self.backend)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self) -> None:
        """Create the tables it needs (each projection's first generation), if missing."""
        await self.backend.setup()
        for name, runner in self.runners.items():
            if await self.backend.load(name) is None:
                spec = type(runner.projection)
                await self.backend.create(name, spec.version, spec.tables, spec.indexes)

    async def begin_rebuilds(self) -> list[str]:
        """Make the tables of each projection whose version changed, for its runner to
        fill and switch to (what a runner does when it starts); the names begun."""
        begun = []
        for name, runner in self.runners.items():
            spec = type(runner.projection)
            row = await self.backend.load(name)
            if row is not None and spec.version not in (row.version, row.rebuild_version):
                await self.backend.begin_rebuild(name, spec.version, spec.tables, spec.indexes)
                begun.append(name)
        return begun

    async def start(self) -> None:
        """Create the tables it needs and start every runner in the background.

        A projection's read model exists when this returns (empty until its runner
        catches up), so a read right after the start finds tables, not an error.
        """
        await self.setup()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(r.run(self._stop), name=f"projection {name}")
            for name, r in self.runners.items()
        ]

    async def stop(self) -> None:
        """Let each runner finish its page and store its checkpoint, then return."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def statuses(self) -> list[ProjectionStatus]:
        return [await r.status() for r in self.runners.values()]

    async def wait_until(
        self, position: int, *, names: Sequence[str] | None = None, max_wait: float = 5.0
    ) -> bool:
        """Read-your-writes: wait until these projections have passed ``position``."""
        deadline = time.monotonic() + max_wait
        for name in names or list(self.runners):
            left = max(0.0, deadline - time.monotonic())
            if not await self.runners[name].wait_until(position, left):
                return False
        return True

    async def request(self, name: str, request: str) -> None:
        """Ask the runner of ``name`` to rebuild, replay-parked or skip-parked."""
        if request not in ("rebuild", "replay-parked", "skip-parked"):
            raise ValueError(f"unknown request {request!r}")
        await self.backend.request(name, request)

    async def parked(self, name: str) -> list[Parked]:
        return await self.backend.parked(name)
