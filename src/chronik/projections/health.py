"""Where a runner stands, as its row tells: the one computation behind status and readiness.

Every runner (a projection's, a process manager's follower and dispatcher) keeps its
row in the projections table current: its state, written at each change, and a
heartbeat, written at least every ``heartbeat`` seconds while it runs. ``describe``
turns such a row into the status shown: ``chronik projections status`` gives it the
stored rows, a running service (``/readyz``, ``/metrics``) gives it its runners' own
copies of what they wrote. One function, the same fields: they agree.

    catching_up -> live <-> degraded     rebuilding (live, with a rebuild beside)
    error      the runner failed and is trying again (its detail says why)
    stale      no heartbeat for ``stale_after`` seconds: no process runs it, or the
               one that does is stuck (a process killed with SIGKILL leaves its rows so)
    stopped    stopped cleanly            inline     updated in each append's transaction
    starting, standby   this process's runner only: not leading (yet)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from chronik.errors import EventStoreError
from chronik.projections.port import ProjectionBackend, ProjectionRow

__all__ = [
    "HEARTBEAT",
    "NOT_READY",
    "STALE_AFTER",
    "WORKER_ROW",
    "ProjectionStatus",
    "RebuildProgress",
    "StatusReporter",
    "describe",
    "heartbeat_for",
    "shown_state",
]

#: the prefix of the rows the relay and the consumers keep (``chronik.relay``,
#: ``chronik.consumer.NAME``): no projection's name has a dot, so none collides
WORKER_ROW = "chronik."
#: the longest a running runner goes without writing its heartbeat
HEARTBEAT = 5.0
#: a heartbeat older than this shows as "stale" (``CHRONIK_STALE_AFTER``)
STALE_AFTER = 30.0
#: states in which a projection makes its service not ready
NOT_READY = frozenset({"starting", "error", "stopped", "stale"})
#: states shown as they are, whatever the heartbeat's age
_TIMELESS = frozenset({"inline", "stopped", "starting", "standby"})


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    """How far the rebuild of a projection's next generation has come."""

    done: int  # position the new generation has reached
    total: int  # head position when measured
    rate: float  # events per second since the rebuild began (0 until measured)
    seconds_left: float | None
    #: the generation being built; None while no runner has begun the rebuild asked for
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """Where a runner stands, as shown (``describe``): state, checkpoint, lag, parked."""

    name: str
    state: str  # as shown: see the module's docstring
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    parked: int
    generation: int
    version: int
    rebuild: RebuildProgress | None
    error: str | None = None
    heartbeat_at: datetime | None = None


def heartbeat_for(stale_after: float) -> float:
    """How often a runner beats so that it never looks stale while it runs."""
    return min(HEARTBEAT, stale_after / 3)


def shown_state(
    state: str,
    heartbeat_at: datetime | None,
    *,
    now: datetime,
    rebuilding: bool = False,
    stale_after: float = STALE_AFTER,
) -> str:
    """The state to show for a runner that wrote ``state`` at ``heartbeat_at``."""
    if state in _TIMELESS:
        return state
    if heartbeat_at is None or (now - heartbeat_at).total_seconds() > stale_after:
        return "stale"
    if state == "live" and rebuilding:
        return "rebuilding"
    return state


def describe(
    row: ProjectionRow,
    *,
    head: int,
    parked: int,
    lag_seconds: float,
    now: datetime | None = None,
    stale_after: float = STALE_AFTER,
    rebuild_rate: float = 0.0,
) -> ProjectionStatus:
    """The status of the runner whose row is ``row``, with the head measured now."""
    now = now or datetime.now(UTC)
    inline = row.state == "inline"
    checkpoint = head if inline else row.checkpoint
    rebuild = None
    if row.rebuild_generation is not None:
        done = row.rebuild_checkpoint or 0
        left = max(0, head - done) / rebuild_rate if rebuild_rate > 0 else None
        rebuild = RebuildProgress(done, head, rebuild_rate, left, row.rebuild_generation)
    return ProjectionStatus(
        name=row.name,
        state=shown_state(
            row.state,
            row.heartbeat_at,
            now=now,
            rebuilding=rebuild is not None,
            stale_after=stale_after,
        ),
        checkpoint=checkpoint,
        head=head,
        lag_events=max(0, head - checkpoint),
        lag_seconds=0.0 if inline else lag_seconds,
        parked=parked,
        generation=row.generation,
        version=row.version,
        rebuild=rebuild,
        error=row.detail,
        heartbeat_at=row.heartbeat_at,
    )


class StatusReporter:
    """Writes one runner's state to its row: at once when it changes, else as a heartbeat.

    ``state`` and ``detail`` are what the runner last reported, ``heartbeat_at`` when a
    write last succeeded: the runner's copy of its row, which ``describe`` reads in the
    process that runs it (a runner that cannot write turns stale there too).
    """

    def __init__(self, backend: ProjectionBackend, name: str, heartbeat: float) -> None:
        self.backend = backend
        self.name = name
        self.heartbeat = heartbeat
        self.state = "starting"
        self.detail: str | None = None
        self.heartbeat_at: datetime | None = None
        self._written: tuple[str, str | None] | None = None
        self._written_at = 0.0  # monotonic

    async def report(
        self,
        state: str,
        detail: str | None = None,
        *,
        force: bool = False,
        quiet: bool = False,
        clear_request: str | None = None,
    ) -> None:
        """Write ``state`` if it changed, if forced, or if the heartbeat is due.

        ``quiet``: a database error is swallowed (reporting an outage must not fail).
        """
        self.state, self.detail = state, detail
        now = time.monotonic()
        due = now - self._written_at >= self.heartbeat
        if not (force or clear_request is not None or due or (state, detail) != self._written):
            return
        try:
            await self.backend.set_status(self.name, state, detail, clear_request=clear_request)
        except EventStoreError:
            if not quiet:
                raise
            return
        self._written, self._written_at = (state, detail), now
        self.heartbeat_at = datetime.now(UTC)

    def note(self, state: str) -> None:
        """Remember ``state`` without writing it (``standby``: the row is the leader's)."""
        self.state, self.detail = state, None

    def row(self, like: ProjectionRow | None) -> ProjectionRow:
        """The row as this runner knows it: ``like`` (as loaded), with its own state."""
        return ProjectionRow(
            name=self.name,
            generation=like.generation if like else 0,
            version=like.version if like else 0,
            checkpoint=like.checkpoint if like else 0,
            rebuild_generation=like.rebuild_generation if like else None,
            rebuild_checkpoint=like.rebuild_checkpoint if like else None,
            rebuild_version=like.rebuild_version if like else None,
            state=self.state,
            heartbeat_at=self.heartbeat_at,
            detail=self.detail,
        )
