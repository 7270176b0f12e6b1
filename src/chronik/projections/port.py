"""The port of projections: where a database keeps read models, checkpoints, parked events.

``ProjectionBackend`` (and its transaction, ``BackendTx``) is what each database adapter
provides, handed out by its database object; the engine, inline projections and
``ReadModels`` use nothing else. Read-model tables are named by generation
(``physical``) and read through a view of the serving one (``view``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from chronik.eventstore.port import RecordedEvent
from chronik.worker import Lease

__all__ = [
    "BackendTx",
    "Doc",
    "Merge",
    "Parked",
    "ProjectionBackend",
    "ProjectionRow",
    "Writes",
    "physical",
    "view",
]

#: a read model's document: JSON as Python values
Doc = dict[str, Any]


@dataclass(slots=True)
class Merge:
    """A change to a document not read in this page: merge ``patch``, add ``increments``."""

    key: str
    patch: Doc
    increments: dict[str, int | float]


@dataclass(slots=True)
class Writes:
    """Everything one page does to one physical table."""

    puts: list[tuple[str, Doc]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)


@dataclass(slots=True)
class ProjectionRow:
    """A projection's stored state: where it is, in which generation of its tables."""

    name: str
    generation: int
    version: int
    checkpoint: int
    rebuild_generation: int | None = None
    rebuild_checkpoint: int | None = None
    rebuild_version: int | None = None
    request: str | None = None
    state: str = "starting"
    heartbeat_at: datetime | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Parked:
    """An event a projection could not apply, kept with the error."""

    projection: str
    position: int
    stream_id: str
    version: int
    type: str
    error: str
    attempts: int
    parked_at: datetime


class BackendTx(Protocol):
    """One database transaction of a projection, as an adapter provides it."""

    async def fetch(self, table: str, keys: Sequence[str]) -> dict[str, Doc]:
        """The stored documents of these keys (missing keys are left out)."""
        ...

    async def write(self, table: str, writes: Writes) -> None: ...

    async def advance(
        self, name: str, generation: int, rebuilding: bool, expected: int, to: int
    ) -> None:
        """Move a checkpoint from ``expected`` to ``to``; LostLeadershipError if it moved."""
        ...

    async def park(self, name: str, event: RecordedEvent, error: str, attempts: int) -> None:
        """Keep the event as parked (or update its error and attempts)."""
        ...

    async def unpark(self, name: str, position: int) -> None: ...

    async def generation(self, name: str) -> int:
        """The serving generation, as this transaction sees it."""
        ...

    async def switch(self, name: str, tables: Sequence[str]) -> None:
        """Serve the rebuilt generation from this transaction on, and drop the old one."""
        ...


class ProjectionBackend(Protocol):
    """Where projections keep their tables, checkpoints and parked events."""

    async def setup(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[BackendTx]: ...

    def tx_on(self, conn: Any) -> tuple[BackendTx, Callable[[], None] | None]:
        """A projection transaction on the connection of an append already under way,
        and what to call once that append is applied (memory only; else None)."""
        ...

    def appends_paused(self) -> AbstractAsyncContextManager[BackendTx]:
        """A transaction during which no append can commit (for switching inline models)."""
        ...

    def leadership(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold the right to run projection ``name``; yields False if another holds it."""
        ...

    def lease(self, name: str) -> AbstractAsyncContextManager[Lease]:
        """Contend for the named lease of a worker (``projection:NAME``); see
        ``chronik.worker``. PostgreSQL: an advisory lock; SQLite, memory: granted."""
        ...

    async def forgotten(self) -> None:
        """A committed page applied an event that forgets a data subject: make the
        overwritten data leave the database's files where it keeps old copies (SQLite:
        checkpoint the write-ahead log). Nothing to do elsewhere."""
        ...

    async def load(self, name: str) -> ProjectionRow | None: ...

    async def load_all(self) -> list[ProjectionRow]: ...

    async def create(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow: ...

    async def begin_rebuild(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        """Create the next generation's tables, empty, beside the serving ones."""
        ...

    async def switch(self, name: str, tables: Sequence[str]) -> ProjectionRow:
        """Serve the rebuilt generation (atomically) and drop the old one."""
        ...

    async def set_status(
        self, name: str, state: str, detail: str | None, clear_request: str | None = None
    ) -> None:
        """Write the runner's state; with ``clear_request``, clear that request if it is
        still the one stored (a request made while it was handled is kept)."""
        ...

    async def request(self, name: str, request: str) -> None: ...

    async def parked(self, name: str) -> list[Parked]: ...

    async def unpark(self, name: str, position: int) -> None: ...

    # -- queries, through the serving generation --

    async def get(self, projection: str, table: str, key: str) -> Doc | None: ...

    async def find(
        self,
        projection: str,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None,
        descending: bool,
        limit: int,
        offset: int,
    ) -> list[Doc]: ...

    async def search(
        self, projection: str, table: str, field: str, text: str, limit: int
    ) -> list[Doc]: ...

    async def count(self, projection: str, table: str, where: Mapping[str, Any]) -> int: ...


def physical(name: str, table: str, generation: int) -> str:
    """The table that holds generation ``generation`` of a projection's table."""
    return f"rm_{name}_{table}_g{generation}"


def view(name: str, table: str) -> str:
    """The stable name readers use: a view of the serving generation."""
    return f"rm_{name}_{table}"
