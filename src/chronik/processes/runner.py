"""Running processes: steps from events, durable timeouts, the command outbox.

``Processes`` runs a context's process managers as three loops, each from a
checkpoint and under one leader per database:

- the **follower** reads the events the processes are interested in and takes a step
  for each (loading the instance, deciding, appending one ``ProcessStepped``); a
  trigger already handled is skipped, and a conflict on the instance's stream (two
  triggers at once) is retried on fresh state: no trigger is lost or applied twice;
- the **timer** fires due timeouts from an index kept in the same transaction as the
  steps (an inline projection), through the same step: one fires at most once, and
  never after the awaited event cancelled it;
- the **dispatcher** reads stored steps and sends their commands to the registered
  handlers at least once, each inside an idempotency scope keyed by the command id, so
  a handler that appends does its work once even when a command goes twice.

The follower and the dispatcher each keep a row with the projections' (``NAME_events``,
``NAME_commands``): their checkpoint, and their state and heartbeat as a projection
runner writes them (``chronik.projections.health``): ``catching_up`` until a read finds
nothing new, then ``live``; ``error`` when the loops failed; ``stopped`` after a clean
stop. A row whose process died shows as ``stale``.

Messages from other contexts reach processes through a consumer calling ``handle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from chronik.domain.commands import command_name
from chronik.errors import ConcurrencyError, DuplicateEventError
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.context import ambient_metadata, idempotency_scope
from chronik.eventstore.port import ExpectedVersion, Metadata, RecordedEvent
from chronik.processes.admin import ProcessesAdmin
from chronik.processes.clock import Clock, SystemClock
from chronik.processes.index import InstanceView, ProcessIndex
from chronik.processes.process import (
    FailurePolicy,
    ProcessManager,
    ProcessState,
    ProcessStepped,
    Step,
    decode_commands,
    rebuild,
    stepped,
)
from chronik.projections import InlineProjections
from chronik.projections.health import (
    HEARTBEAT,
    STALE_AFTER,
    ProjectionStatus,
    StatusReporter,
    describe,
)
from chronik.projections.port import ProjectionBackend
from chronik.worker import Lease, Worker, error_text, reason, sleep_until_stopped

__all__ = ["CommandHandler", "Processes"]

log = logging.getLogger(__name__)

#: How long a checkpoint moved past events of other types alone may stay unwritten.
SKIP_WRITE_EVERY = 1.0

#: what handles a command a process sends: an async function of the command
CommandHandler = Callable[[Any], Awaitable[None]]


class _Stop(Exception):
    """A handler's policy says: stop this loop."""


class Processes(Worker):
    """A context's process managers, their timeouts and their commands.

    ``backend`` is the projection backend of the store's database (it keeps the loops'
    checkpoints, leadership and parked events); ``index`` is the store's process index
    (``process_index``), shared by every ``Processes`` on the store. The runtime runs it
    as one of its workers: a ``chronik.worker.Worker`` under the lease
    ``projection:NAME`` that, while it leads, runs the follower, the dispatcher and the
    timer together.
    """

    kind = "processes"
    backing_off_state = "error"
    #: a policy that says "stop" is logged as an outage is: in one line, then retried
    transient = (*Worker.transient, _Stop)
    logger = log
    outage_level = logging.ERROR

    #: how often it writes its heartbeat, and when a silent one shows as stale: the
    #: runtime sets both from ``CHRONIK_STALE_AFTER`` before ``setup``
    heartbeat: float = HEARTBEAT
    stale_after: float = STALE_AFTER

    def __init__(
        self,
        store: BaseEventStore,
        managers: Sequence[ProcessManager],
        commands: Mapping[type, CommandHandler | tuple[CommandHandler, FailurePolicy]],
        *,
        backend: ProjectionBackend,
        index: InlineProjections,
        name: str = "processes",
        clock: Clock | None = None,
        page_size: int = 200,
        idle_wait: float = 1.0,
        timer_wait: float = 1.0,
        retries_on_conflict: int = 50,
    ) -> None:
        # A failed round is tried again after 5 s, as long as a round takes to fail.
        super().__init__(
            name,
            lease=lambda: backend.lease(f"projection:{name}"),
            backoff=5.0,
            max_backoff=5.0,
            standby_wait=2.0,
            idle_wait=idle_wait,
            heartbeat=self.heartbeat,
        )
        self.store = store
        self.managers = list(managers)
        self.clock = clock or SystemClock()
        self.page_size = page_size
        self.idle_wait = idle_wait
        self.timer_wait = timer_wait
        self.retries_on_conflict = retries_on_conflict
        self.backend = backend
        self.index = index
        self._handlers: dict[str, tuple[CommandHandler, FailurePolicy, type]] = {}
        for cls, entry in commands.items():
            handler, policy = entry if isinstance(entry, tuple) else (entry, FailurePolicy())
            self._handlers[command_name(cls)] = (handler, policy, cls)
        self._names = {m.name for m in self.managers}
        self.fired = 0
        self.dispatched = 0
        #: the follower's and the dispatcher's status rows, by row name (made in setup)
        self._beats: dict[str, StatusReporter] = {}
        #: whether this process ever led (then the loops' rows are its to write)
        self._led = False

    @property
    def _followed(self) -> list[str]:
        names = {
            n
            for m in self.managers
            for cls in m.event_types
            for n in self.store.types.names_of(cls)
        }
        return sorted(names)

    async def setup(self) -> None:
        self.store.types.include(ProcessStepped)
        await self.backend.setup()
        await self.index.setup()
        for loop in ("events", "commands"):
            name = f"{self.name}_{loop}"
            if await self.backend.load(name) is None:
                await self.backend.create(name, 1, [], {})
            self._beats[name] = StatusReporter(self.backend, name, self.heartbeat)

    # -- the worker's hooks (``chronik.worker.Worker.run`` is the loop) ----------------

    async def lead(self, stop: asyncio.Event, lease: Lease) -> None:
        """Run the follower, the dispatcher and the timer until ``stop`` or a failure."""
        self._led = True
        self.state, self.error = self.running_state, None
        self.settled.set()
        await _together(
            self._follow(stop, lease, f"{self.name}_events", self._followed, self._on_event),
            self._follow(
                stop, lease, f"{self.name}_commands", ["chronik.process_stepped"], self._on_step
            ),
            self._timers(stop),
        )

    async def standing_by(self) -> None:
        for beat in self._beats.values():
            beat.note("standby")

    async def failed(self, exc: Exception, led: bool) -> None:
        await self._report_all("error", reason(exc), led)

    async def stopped(self) -> None:
        await super().stopped()
        await self._report_all("stopped", None, self._led)

    async def _report_all(self, state: str, detail: str | None, led: bool) -> None:
        """Write both loops' state, if this process led them (else the rows are another's)."""
        if led:
            for beat in self._beats.values():
                await beat.report(state, detail, force=True, quiet=True)

    async def statuses(self) -> list[ProjectionStatus]:
        """The follower and the dispatcher (and the process index), as shown everywhere."""
        head = await self.store.head_position()
        found = []
        for name, beat in self._beats.items():
            row = await self.backend.load(name)
            mine = beat.row(row)
            oldest = await self.store.recorded_at_after(mine.checkpoint)
            found.append(
                describe(
                    mine,
                    head=head,
                    parked=len(await self.backend.parked(name)),
                    lag_seconds=(datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0,
                    stale_after=self.stale_after,
                )
            )
        return found + await self.index.statuses()

    async def readiness(self) -> list[str]:
        return []

    # -- the follower and the dispatcher share one loop shape --------------------------

    async def _follow(
        self,
        stop: asyncio.Event,
        lease: Lease,
        name: str,
        types: list[str],
        on_event: Callable[[RecordedEvent], Awaitable[None]],
    ) -> None:
        row = await self.backend.load(name)
        assert row is not None
        checkpoint = stored = row.checkpoint
        written = time.monotonic()
        beat = self._beats[name]
        await beat.report("catching_up", force=True)  # it leads: its row says so
        asked = 0.0
        while not stop.is_set():
            await lease.check()  # a leader that lost its lock session stops acting here
            if time.monotonic() - asked >= 1.0:
                await self._requests(name, on_event)
                asked = time.monotonic()
            page = await self.store.read_all_page(checkpoint, limit=self.page_size, types=types)
            moved = page.scanned_to > checkpoint
            to = max(page.scanned_to, checkpoint)
            # A page with none of the followed types moves the checkpoint in memory; it
            # is written with the next page that has events, or once it is a second
            # old (a follower that restarts from the older one finds nothing new there).
            due = time.monotonic() - written >= SKIP_WRITE_EVERY
            if page.events or (to > stored and due):
                for recorded in page.events:
                    await on_event(recorded)
                async with self.backend.transaction() as btx:
                    await btx.advance(name, 1, False, stored, to)
                stored, written = to, time.monotonic()
            checkpoint = to
            if not moved:
                await beat.report("live")  # at the head (also the heartbeat while idle)
                wait = min(self.idle_wait, 1.0, self.heartbeat)
                await self.store.wait_for_events(checkpoint, wait)
                continue
            await beat.report("catching_up" if len(page.events) >= self.page_size else "live")
            await asyncio.sleep(0)

    async def _requests(
        self, name: str, on_event: Callable[[RecordedEvent], Awaitable[None]]
    ) -> None:
        """Take a ``chronik projections replay-parked|skip-parked NAME`` request."""
        row = await self.backend.load(name)
        if row is None or row.request is None:
            return
        if row.request in ("replay-parked", "skip-parked"):
            for parked in await self.backend.parked(name):
                async with self.backend.transaction() as btx:
                    await btx.unpark(name, parked.position)
                if row.request == "skip-parked":
                    continue
                found = await self.store.read_all(parked.position - 1, limit=1)
                if found and found[0].position == parked.position:
                    await on_event(found[0])  # parks it again if it still fails
        else:
            log.warning(
                "processes ignore an unknown request",
                extra={"processes": name, "request": row.request},
            )
        beat = self._beats[name]
        await beat.report(beat.state, beat.detail, clear_request=row.request)

    async def _on_event(self, recorded: RecordedEvent) -> None:
        await self.handle(recorded.event, trigger=str(recorded.id), recorded=recorded)

    async def handle(
        self, event: object, *, trigger: str, recorded: RecordedEvent | None = None
    ) -> None:
        """Take the step every interested process takes for ``event`` (once per trigger).

        ``trigger`` identifies the event (its id, or a message id): a trigger already
        handled by an instance is skipped.
        """
        for manager in self.managers:
            instance = manager.correlate(event)
            if instance is None:
                continue

            def find(
                state: ProcessState, m: ProcessManager = manager
            ) -> Callable[..., None] | None:
                return m.handler_for(state, event)

            await self._step(
                manager, instance, trigger, type(event).__qualname__, find, event, recorded
            )

    async def _step(
        self,
        manager: ProcessManager,
        instance: str,
        trigger: str,
        trigger_type: str,
        find: Callable[[ProcessState], Callable[..., None] | None],
        event: object | None,
        recorded: RecordedEvent | None = None,
    ) -> bool:
        """Load, decide, append; on a conflict do it again. False if nothing was done."""
        policy = manager.policy
        attempts = 0
        for _ in range(self.retries_on_conflict):
            state = await self.load(manager, instance)
            if trigger in state.handled:
                return False
            handler = find(state)
            if handler is None:
                return False
            step = Step(state, trigger, self.clock.now())
            try:
                if event is None:
                    handler(step)
                else:
                    handler(event, step)
            except Exception as exc:
                attempts += 1
                if attempts <= policy.retries:
                    await asyncio.sleep(policy.backoff * 2 ** (attempts - 1))
                    continue
                what = f"process {manager.name} {instance}"
                await self._give_up(what, trigger, exc, policy, recorded)
                if event is None and policy.then != "stop":
                    # A timeout whose handler keeps failing is dropped, on the record, so
                    # that it does not fire again and again.
                    dropped = Step(state, trigger, self.clock.now())
                    record = stepped(manager, state, dropped, trigger, f"{trigger_type}:dropped")
                    with contextlib.suppress(ConcurrencyError):
                        await self.store.append(
                            manager.stream_id(instance),
                            [record],
                            expected=ExpectedVersion.exactly(state.version),
                        )
                return False
            record = stepped(manager, state, step, trigger, trigger_type)
            expected = ExpectedVersion.exactly(state.version)
            try:
                await self.store.append(manager.stream_id(instance), [record], expected=expected)
            except ConcurrencyError:
                continue  # another trigger of this instance got there first: decide again
            return True
        raise ConcurrencyError(manager.stream_id(instance), "retried", -1)

    async def load(self, manager: ProcessManager, instance: str) -> ProcessState:
        records = await self.store.read_stream(manager.stream_id(instance))
        return rebuild(manager, instance, [r.event for r in records])

    async def _give_up(
        self,
        what: str,
        trigger: str,
        exc: BaseException,
        policy: FailurePolicy,
        recorded: RecordedEvent | None,
        loop: str = "events",
    ) -> None:
        error = error_text(exc)
        if policy.then == "stop":
            raise _Stop(f"{what}: {error} (policy: stop)") from exc
        log.error(
            "process gives up after retries",
            extra={
                "what": what,
                "trigger": trigger,
                "then": policy.then,
                "position": recorded.position if recorded is not None else None,
                "stream": recorded.stream_id if recorded is not None else None,
                "error": error,
            },
        )
        if policy.then == "park" and recorded is not None:
            # Kept with the projections' parked events: `chronik projections parked NAME`.
            async with self.backend.transaction() as btx:
                await btx.park(
                    f"{self.name}_{loop}", recorded, f"{what}: {error}", policy.retries + 1
                )

    # -- timeouts ----------------------------------------------------------------------

    async def _timers(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.fire_due()
            await sleep_until_stopped(stop, self.timer_wait)

    async def fire_due(self) -> int:
        """Fire every timeout due by the clock's now; how many fired."""
        now = self.clock.now().astimezone(UTC).isoformat(timespec="microseconds")
        due = await self.index.read_models.find(
            ProcessIndex.name, "timeouts", order_by="due", limit=1000
        )
        fired = 0
        by_name = {m.name: m for m in self.managers}
        for timeout in due:
            if timeout["due"] > now:
                break
            manager = by_name.get(timeout["process"])
            if manager is None:
                continue
            fired += await self._fire(manager, timeout["instance"], timeout["name"], timeout)
        self.fired += fired
        return fired

    async def _fire(
        self, manager: ProcessManager, instance: str, name: str, doc: dict[str, Any]
    ) -> int:
        tid = str(doc["id"])
        handler = manager.timeout_handler(name)
        if handler is None:
            log.warning(
                "process has no handler for its timeout",
                extra={"process_manager": manager.name, "timeout": name},
            )
            return 0

        def find(current: ProcessState) -> Callable[..., None] | None:
            return handler if tid in current.timeouts else None

        done = await self._step(manager, instance, tid, f"timeout:{name}", find, None)
        return 1 if done else 0

    # -- commands ----------------------------------------------------------------------

    async def _on_step(self, recorded: RecordedEvent) -> None:
        step = recorded.event
        if not isinstance(step, ProcessStepped) or not step.commands:
            return
        if step.process not in self._names:
            return  # another context's process, on a shared store (embedded mode)
        types = {name: cls for name, (_, _, cls) in self._handlers.items()}
        failed: list[str] = []
        attempts = 0
        for command_id, command in decode_commands(step, types):
            failure = await self._dispatch(command_id, command, recorded)
            if failure is not None:
                failed.append(failure[0])
                attempts = max(attempts, failure[1])
        if failed:
            # One parked record per step, naming every command of it that failed:
            # replaying it sends the step's commands again, and those done are skipped.
            async with self.backend.transaction() as btx:
                await btx.park(f"{self.name}_commands", recorded, "\n".join(failed), attempts)

    async def _dispatch(
        self, command_id: str, command: object, cause: RecordedEvent
    ) -> tuple[str, int] | None:
        """Run one command's handler; the error and attempts if it is to be parked."""
        handler, policy, _ = self._handlers[command_name(type(command))]
        metadata = Metadata(cause.metadata.correlation_id, str(cause.id), cause.metadata.headers)
        attempts = 0
        while True:
            try:
                with (
                    ambient_metadata(metadata, replace=True),
                    idempotency_scope(
                        command_id, command_name(type(command)), resume=True
                    ) as scope,
                ):
                    await handler(command)
                if scope.found == 0 or scope.found < scope.count:
                    self.dispatched += 1  # not a command all of whose effects were there
                return None
            except DuplicateEventError:
                return None  # it was done before, in another stream's order
            except Exception as exc:
                attempts += 1
                if attempts <= policy.retries:
                    await asyncio.sleep(policy.backoff * 2 ** (attempts - 1))
                    continue
                what = f"command {command_name(type(command))} {command_id}"
                await self._give_up(what, command_id, exc, policy, None, "commands")
                if policy.then == "park":
                    return f"{what}: {error_text(exc)}", attempts
                return None

    # -- introspection -----------------------------------------------------------------

    async def instances(
        self, *, process: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[InstanceView]:
        """Instances of every process on the store (``ProcessesAdmin.instances``)."""
        return await self._admin.instances(process=process, status=status, limit=limit)

    async def instance(self, process: str, instance: str) -> InstanceView | None:
        """One instance, or None (``ProcessesAdmin.instance``)."""
        return await self._admin.instance(process, instance)

    @property
    def _admin(self) -> ProcessesAdmin:
        return ProcessesAdmin(self.index.backend, self.store)


async def _together(*loops: Coroutine[Any, Any, None]) -> None:
    """Run the loops until all end; when one fails, cancel the others, then raise.

    None of them may outlive the leadership they run under.
    """
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
