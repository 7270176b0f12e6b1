"""One supervised, checkpointed worker: what projections, followers, relay and consumers run.

A worker contends for a named lease, leads while it holds it and stands by while
another replica does. Leading, it repeats one ``step`` (read a page from its checkpoint,
handle it, move the checkpoint) and, when a step found nothing, waits to be woken
(``idle``: a notification or a poll, at least once a heartbeat). Before each step it
checks that it still holds its lease: a leader whose lock session died stops acting
and contends again. Any error puts it in its backing-off state with the reason, and it
tries again after an exponential backoff with a cap; it never ends on its own, so a
failure cannot leave a service silently without its worker.

    starting -> standby                       another replica leads
             -> catching_up <-> running       the kind's names may differ (live, idle, ...)
             -> backing_off (reason)          then contends again
             -> stopped                       after ``stop`` was set (a clean stop)
                failed (reason)               the supervisor saw it end with an error

``WorkerStatus`` is what ``/readyz`` and the status commands show; a worker that stopped
or failed, or backs off, makes its service not ready with the reason; standby is ready.

Leases: PostgreSQL holds a session advisory lock on a connection of its own and checks
that session at every step; SQLite and memory are owned by one process, so their leases
are granted (the relay's excepted: see the adapters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chronik.errors import BrokerUnavailableError, EventStoreError, LostLeadershipError

__all__ = [
    "GRANTED",
    "NOT_READY",
    "REFUSED",
    "Backoff",
    "Lease",
    "LeaseSource",
    "StatusSink",
    "Supervised",
    "Worker",
    "WorkerStatus",
    "error_text",
    "granted",
    "reason",
    "replica",
    "sleep_until_stopped",
]

log = logging.getLogger(__name__)

#: states in which a worker makes its service not ready
NOT_READY = frozenset({"backing_off", "error", "broker_down", "stopped", "failed"})


class Lease(Protocol):
    """A named lease a worker holds while it leads (see the module's docstring)."""

    @property
    def held(self) -> bool:
        """True if this contender got the lease (it leads), False if another holds it."""
        ...

    async def check(self) -> None:
        """Raise LostLeadershipError if the lease is gone (its lock session died)."""
        ...


class StatusSink(Protocol):
    """Where a worker writes its state for other processes to read (a status row).

    ``chronik.projections.health.StatusReporter`` is one: it writes at once when the
    state changes, else at most once a heartbeat.
    """

    async def report(
        self, state: str, detail: str | None = None, *, force: bool = False, quiet: bool = False
    ) -> None: ...

    def note(self, state: str) -> None:
        """Remember ``state`` without writing it (standby: the row is the leader's)."""
        ...


class _Fixed:
    def __init__(self, held: bool) -> None:
        self._held = held

    @property
    def held(self) -> bool:
        return self._held

    async def check(self) -> None:
        """A granted lease cannot be lost: one process owns the database."""


#: the lease of a database one process owns (SQLite, memory): always held
GRANTED: Lease = _Fixed(True)
#: a lease another contender holds
REFUSED: Lease = _Fixed(False)

#: how a worker contends: a context manager that holds the lease while it is open
LeaseSource = Callable[[], AbstractAsyncContextManager[Lease]]


@contextlib.asynccontextmanager
async def granted() -> AsyncIterator[Lease]:
    """The lease source of a worker that needs no leadership."""
    yield GRANTED


def reason(exc: BaseException) -> str:
    """An error as a status shows it: ``Type: message``."""
    return f"{type(exc).__name__}: {exc}"


def error_text(exc: BaseException) -> str:
    """An error as it is stored with what it failed on (parked events, dead letters)."""
    return "".join(traceback.format_exception_only(exc)).strip()


async def sleep_until_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set; True if it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class Backoff:
    """Exponential backoff with a cap: ``first``, twice that, ... up to ``cap``."""

    def __init__(self, first: float, cap: float) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"backoff needs 0 < first <= cap, got first={first} cap={cap}")
        self.first = first
        self.cap = cap
        self.next = first

    def failed(self) -> float:
        """The wait before the next try; the one after is twice as long (to the cap)."""
        delay = self.next
        self.next = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.next = self.first


def replica() -> str:
    """This process, as status names the replica that leads: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """Where a worker stands, as ``/readyz`` and the status commands show it."""

    kind: str  # projection | processes | relay | consumer | ...
    name: str
    state: str
    reason: str | None
    leading: bool
    replica: str
    heartbeat_at: datetime | None
    lag: int | None = None

    @property
    def ready(self) -> bool:
        return self.state not in NOT_READY

    def why_not_ready(self) -> str | None:
        if self.ready:
            return None
        because = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {self.name} is {self.state}{because}"


class Worker:
    """The supervised loop; a kind overrides ``step`` and the hooks it needs.

    ``lease`` is how it contends (``granted`` when it needs no leadership). ``run`` is
    the whole life of the worker: give it the service's stop event.
    """

    kind = "worker"
    #: the states this kind shows while working (after a page, and when caught up)
    catching_up_state = "catching_up"
    running_state = "running"
    #: the state it shows while it retries after an error
    backing_off_state = "backing_off"
    #: where it logs, and at which level an outage
    logger = log
    outage_level = logging.WARNING
    #: errors that are an outage (logged in one line), not a bug (logged with a traceback)
    transient: tuple[type[BaseException], ...] = (
        EventStoreError,
        LostLeadershipError,
        BrokerUnavailableError,
    )

    def __init__(
        self,
        name: str,
        *,
        lease: LeaseSource = granted,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        standby_wait: float = 2.0,
        idle_wait: float = 1.0,
        heartbeat: float = 5.0,
    ) -> None:
        self.name = name
        self.lease_source = lease
        self.backoff = Backoff(backoff, max_backoff)
        self.standby_wait = standby_wait
        self.idle_wait = idle_wait
        self.heartbeat = heartbeat
        self.state = "starting"
        self.error: str | None = None
        #: True while this worker holds its lease and acts
        self.leading = False
        self.heartbeat_at: datetime | None = None
        #: what the last failed attempt raised
        self.last_exception: Exception | None = None
        #: where it writes its state for the status commands (set by the runtime), if any
        self.sink: StatusSink | None = None
        self._ever_led = False
        #: set once the first attempt settled: leading, standing by, or backing off
        self.settled = asyncio.Event()
        self._stop = asyncio.Event()

    # -- the supervised loop -----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set: lead when the lease is free, else stand by."""
        self._stop = stop
        while not stop.is_set():
            led = False
            try:
                async with self.lease_source() as lease:
                    if not lease.held:
                        self.state, self.error = "standby", None
                        await self.standing_by()
                        self.settled.set()
                        self.beat()
                        await sleep_until_stopped(stop, self.standby_wait)
                        continue
                    led = self._ever_led = True
                    self.leading = True
                    try:
                        await self.lead(stop, lease)
                    finally:
                        self.leading = False
                        await self.end()
                self.backoff.reset()
            except Exception as exc:
                delay = self.backoff.failed()
                self.state, self.error = self.backing_off_state, reason(exc)
                self.last_exception = exc
                self.settled.set()
                if isinstance(exc, self.transient):
                    self.logger.log(
                        self.outage_level,
                        "worker interrupted",
                        extra={
                            "kind": self.kind,
                            "worker": self.name,
                            "error": str(exc),
                            "retry_in": delay,
                        },
                    )
                else:  # not an outage: a bug, whose traceback is worth the lines
                    self.logger.exception(
                        "worker failed",
                        extra={"kind": self.kind, "worker": self.name, "retry_in": delay},
                    )
                await self.failed(exc, led)
                await sleep_until_stopped(stop, delay)
        await self.stopped()

    async def lead(self, stop: asyncio.Event, lease: Lease) -> None:
        """Lead until ``stop``: step while there is work, else wait to be woken."""
        await self.begin()
        self.settled.set()
        while not stop.is_set():
            await lease.check()
            if await self.step():
                self.worked()
                await self.progressed()
                # SQLite and memory pages may not suspend at all: let the rest of the
                # process (HTTP requests, other workers) in between pages.
                await asyncio.sleep(0)
            else:
                self.caught_up()
                await self.progressed()
                await self.idle(min(self.idle_wait, self.heartbeat))
            self.beat()

    def beat(self) -> None:
        self.heartbeat_at = datetime.now(UTC)

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` inside a step (a broker that refused); True if stopped."""
        return await sleep_until_stopped(self._stop, seconds)

    # -- what a kind overrides ---------------------------------------------------------

    async def begin(self) -> None:
        """Load the checkpoint, having just become the leader."""
        self.state, self.error = self.catching_up_state, None

    async def step(self) -> bool:
        """One page: read from the checkpoint, handle, move the checkpoint; False if none."""
        return False

    def worked(self) -> None:
        """A step found work: a worker that was retrying is catching up again."""
        if self.state in (self.backing_off_state, "starting", "standby"):
            self.state, self.error = self.catching_up_state, None

    def caught_up(self) -> None:
        """A step found nothing new: the worker runs at the head."""
        self.state, self.error = self.running_state, None

    async def idle(self, seconds: float) -> None:
        """Wait for new work (a notification), at most ``seconds``."""
        await sleep_until_stopped(self._stop, seconds)

    async def progressed(self) -> None:
        """After each step: report the state (a status row, a heartbeat)."""
        if self.sink is not None:
            await self.sink.report(self.state, self.error, quiet=True)

    async def end(self) -> None:
        """No longer leading (stopped, failed or lost the lease): let go of what it holds."""

    async def standing_by(self) -> None:
        """Another replica leads: follow its progress if the kind shows it."""
        if self.sink is not None:
            self.sink.note("standby")

    async def failed(self, exc: Exception, led: bool) -> None:
        """After an error, before the backoff: report it (if it led: else the row is
        another's)."""
        if self.sink is not None and led and not isinstance(exc, LostLeadershipError):
            await self.sink.report(self.state, self.error, force=True, quiet=True)

    async def stopped(self) -> None:
        if self.state != "standby":
            self.state = "stopped"
            if self.sink is not None and self._ever_led:
                await self.sink.report(self.state, self.error, force=True, quiet=True)

    # -- status ------------------------------------------------------------------------

    def lag(self) -> int | None:
        return None

    def worker_status(self) -> WorkerStatus:
        return WorkerStatus(
            kind=self.kind,
            name=self.name,
            state=self.state,
            reason=self.error,
            leading=self.leading,
            replica=replica(),
            heartbeat_at=self.heartbeat_at,
            lag=self.lag(),
        )


class Supervised:
    """A worker run as a task of its own, with the reason recorded if the task itself ends.

    ``Worker.run`` catches every error; this catches what escapes anyway (a bug in a
    kind's hook), so the worker shows ``failed`` with the reason instead of vanishing.
    """

    def __init__(self, worker: Worker, stop: asyncio.Event) -> None:
        self.worker = worker
        self.task = asyncio.create_task(self._guarded(stop), name=f"{worker.kind} {worker.name}")

    async def _guarded(self, stop: asyncio.Event) -> None:
        worker = self.worker
        try:
            await worker.run(stop)
        except Exception as exc:
            worker.state, worker.error, worker.leading = "failed", reason(exc), False
            worker.settled.set()
            log.exception(
                "worker stopped with an error", extra={"kind": worker.kind, "worker": worker.name}
            )
