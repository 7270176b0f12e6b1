"""Administering projections: their status, rebuilds and parked events, for every front end.

The command line (``chronik projections ...``), HTTP routes and tests all go through
``ProjectionsAdmin``. It reads the rows the runners keep (``chronik.projections.port``)
and shows them as ``chronik.projections.health.describe`` does: the one computation
behind ``/readyz`` too, so both always agree.

Rebuilding a read model and replaying or skipping its parked events are requests stored
on the projection's row; the runner that leads the projection carries them out, in
whichever process runs it. Each method stores its request and returns at once with a
handle that follows it (``Rebuild.watch``, ``ParkedRequest.outcome``, each waiting as
long as it takes: bound them with ``asyncio.timeout``): a command line waits with a
progress bar, an HTTP route may answer at once and look again (``progress``, ``check``).

Projections only, and the rows of the process runners (their follower and dispatcher
keep rows of the same kind). The relay and the consumers report their state elsewhere:
their workers' status belongs to the worker that runs them, not to this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chronik.errors import NotFoundError
from chronik.projections.health import (
    STALE_AFTER,
    WORKER_ROW,
    ProjectionStatus,
    RebuildProgress,
    describe,
    shown_state,
)
from chronik.projections.port import Parked, ProjectionBackend, ProjectionRow

__all__ = [
    "POLL",
    "ParkedOutcome",
    "ParkedRequest",
    "PositionReader",
    "ProjectionsAdmin",
    "Rebuild",
]

#: how often a handle reads the projection's row again while it follows a request (s)
POLL = 0.2


class PositionReader(Protocol):
    """What the admin reads of the event store: its head, and when an event was recorded."""

    async def head_position(self) -> int:
        """The position of the last event (0 for an empty store)."""
        ...

    async def recorded_at_after(self, after: int) -> datetime | None:
        """When the first event above ``after`` was recorded (None if there is none)."""
        ...


@dataclass(frozen=True, slots=True)
class ParkedOutcome:
    """What a runner did with a replay or a skip: the parked events before, those left."""

    name: str
    before: list[Parked]
    left: list[Parked]

    @property
    def resolved(self) -> int:
        """How many of the events parked before are parked no more."""
        still = {p.position for p in self.left}
        return sum(1 for p in self.before if p.position not in still)


class ProjectionsAdmin:
    """Status, rebuilds and parked events of the projections in one database.

    ``backend`` is the database's projection backend (``Database.projections()``, set up),
    ``store`` its event store; ``stale_after`` is ``CHRONIK_STALE_AFTER``: a runner whose
    heartbeat is older shows as ``stale``.
    """

    def __init__(
        self,
        backend: ProjectionBackend,
        store: PositionReader,
        *,
        stale_after: float = STALE_AFTER,
        poll: float = POLL,
    ) -> None:
        self.backend = backend
        self.store = store
        self.stale_after = stale_after
        self.poll = poll

    async def head(self) -> int:
        """The store's head position."""
        return await self.store.head_position()

    async def status(self) -> list[ProjectionStatus]:
        """Every projection (and process runner) that ran in this database, in name order."""
        head = await self.head()
        rows = await self.backend.load_all()
        return [
            await self._describe(row, head) for row in rows if not row.name.startswith(WORKER_ROW)
        ]

    async def workers(self) -> list[ProjectionStatus]:
        """The relay and the consumers that ran on this database, as their rows tell.

        Only state, reason and heartbeat mean something there (a silent one is "stale");
        standby replicas write no row: the row is the leader's.
        """
        head = await self.head()
        rows = await self.backend.load_all()
        return [await self._describe(row, head) for row in rows if row.name.startswith(WORKER_ROW)]

    async def status_of(self, name: str) -> ProjectionStatus:
        """The status of projection ``name``; NotFoundError if it never ran here."""
        row = await self.row(name)
        return await self._describe(row, await self.head())

    async def row(self, name: str) -> ProjectionRow:
        """The stored row of projection ``name``; NotFoundError if it never ran here."""
        row = await self.backend.load(name)
        if row is None:
            raise NotFoundError(f"no projection named {name!r} has run in this store")
        return row

    async def _describe(self, row: ProjectionRow, head: int) -> ProjectionStatus:
        lag_seconds = 0.0
        if row.state != "inline":
            oldest = await self.store.recorded_at_after(row.checkpoint)
            if oldest is not None:
                lag_seconds = (datetime.now(UTC) - oldest).total_seconds()
        return describe(
            row,
            head=head,
            parked=len(await self.backend.parked(row.name)),
            lag_seconds=lag_seconds,
            stale_after=self.stale_after,
        )

    async def rebuild(self, name: str) -> Rebuild:
        """Ask the runner of ``name`` to rebuild its read model beside the serving one.

        It switches in once caught up; the handle follows it. NotFoundError if the
        projection never ran here.
        """
        return Rebuild(self, await self._request(name, "rebuild"))

    async def parked(self, name: str) -> list[Parked]:
        """The events projection ``name`` parked, with their errors, in position order."""
        return await self.backend.parked(name)

    async def replay_parked(self, name: str) -> ParkedRequest:
        """Ask the runner to apply the parked events again (after fixing the handler)."""
        before = await self.backend.parked(name)
        await self._request(name, "replay-parked")
        return ParkedRequest(self, name, "replay-parked", before)

    async def skip_parked(self, name: str) -> ParkedRequest:
        """Ask the runner to drop the parked events without applying them."""
        before = await self.backend.parked(name)
        await self._request(name, "skip-parked")
        return ParkedRequest(self, name, "skip-parked", before)

    async def _request(self, name: str, request: str) -> ProjectionRow:
        """Store ``request`` for ``name``; its row as it was just before."""
        row = await self.row(name)
        try:
            await self.backend.request(name, request)
        except KeyError as exc:  # gone in between (a store reset under us)
            raise NotFoundError(str(exc.args[0] if exc.args else exc)) from None
        return row


class Rebuild:
    """A rebuild asked for: follow it until the rebuilt generation serves."""

    def __init__(self, admin: ProjectionsAdmin, before: ProjectionRow) -> None:
        self._admin = admin
        self.name = before.name
        #: the generation that served when the rebuild was asked for
        self.generation = before.generation
        #: no runner reported for the projection lately: the rebuild begins when one runs
        self.unattended = (
            shown_state(
                before.state,
                before.heartbeat_at,
                now=datetime.now(UTC),
                stale_after=admin.stale_after,
            )
            == "stale"
        )
        self._began: tuple[float, int] | None = None  # (monotonic, done) when first seen
        self._rate = 0.0

    async def progress(self) -> RebuildProgress | None:
        """How far it has come (``generation`` None until a runner began it); None once
        the rebuilt generation serves."""
        row = await self._admin.row(self.name)
        if row.generation > self.generation:
            return None
        head = await self._admin.head()
        if row.rebuild_generation is None:
            return RebuildProgress(0, head, 0.0, None)
        done = row.rebuild_checkpoint or 0
        now = time.monotonic()
        if self._began is None:
            self._began = (now, done)
        elif now > self._began[0] and done > self._began[1]:
            self._rate = (done - self._began[1]) / (now - self._began[0])
        status = describe(row, head=head, parked=0, lag_seconds=0.0, rebuild_rate=self._rate)
        return status.rebuild

    async def watch(self) -> AsyncIterator[RebuildProgress]:
        """Its progress every ``poll`` seconds until the rebuilt generation serves; the last
        has ``done == total``. It waits as long as that takes: bound it with
        ``asyncio.timeout``."""
        while True:
            progress = await self.progress()
            if progress is None:
                head = await self._admin.head()
                yield RebuildProgress(head, head, self._rate, 0.0, await self.serving())
                return
            yield progress
            await asyncio.sleep(self._admin.poll)

    async def serving(self) -> int:
        """The generation that serves now."""
        return (await self._admin.row(self.name)).generation


class ParkedRequest:
    """A replay or a skip of a projection's parked events, asked for."""

    def __init__(
        self, admin: ProjectionsAdmin, name: str, request: str, before: list[Parked]
    ) -> None:
        self._admin = admin
        self.name = name
        #: ``replay-parked`` or ``skip-parked``, as stored for the runner
        self.request = request
        #: the events parked when it was asked for
        self.before = before

    async def outcome(self) -> ParkedOutcome:
        """What is still parked, once a runner took the request. It waits as long as that
        takes: bound it with ``asyncio.timeout`` (the request stays stored meanwhile)."""
        # Polled: the runner that takes it may be in another process.
        while True:
            if (outcome := await self.check()) is not None:
                return outcome
            await asyncio.sleep(self._admin.poll)

    async def check(self) -> ParkedOutcome | None:
        """What is still parked if a runner took the request by now, else None."""
        row = await self._admin.backend.load(self.name)
        if row is None or row.request is not None:
            return None
        return ParkedOutcome(self.name, self.before, await self._admin.backend.parked(self.name))
