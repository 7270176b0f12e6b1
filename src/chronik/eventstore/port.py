"""The event store port: the value types it speaks and the narrow roles it plays.

Roles are split so that code asks for what it uses: a projection needs an
``AllEventsReader``, a repository a ``StreamReader`` and a ``StreamWriter``.
``EventStore`` is all of them plus forgetting and closing; every adapter
(memory, SQLite, PostgreSQL) implements it and passes the same contract suite.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol
from uuid import UUID

import msgspec

from chronik.errors import CorruptEventError

__all__ = [
    "MAX_POSITION",
    "AllEventsReader",
    "AllPage",
    "AppendResult",
    "EventStore",
    "ExpectedVersion",
    "Metadata",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "SnapshotStore",
    "StreamReader",
    "StreamWriter",
    "Undecodable",
    "category_of",
]

#: The highest global position a store can give: positions are 64-bit signed integers
#: (PostgreSQL bigint, SQLite integer). A position above it can never be reached.
MAX_POSITION = 2**63 - 1


def category_of(stream_id: str) -> str:
    """The stream's category: its id up to the first ``-`` (all of it if it has none).

    ``"budget-main"`` is in ``"budget"``, as a repository with ``prefix="budget-"``
    names its streams (the convention of Message DB and EventStoreDB's ``$ce-``).
    Filtered reads (``read_all_page(categories=...)``) select by it.
    """
    return stream_id.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class ExpectedVersion:
    """What an append expects of the stream: ``ANY``, ``NO_STREAM`` or ``exactly(n)``."""

    value: int

    ANY: ClassVar[ExpectedVersion]
    NO_STREAM: ClassVar[ExpectedVersion]

    @classmethod
    def exactly(cls, version: int) -> ExpectedVersion:
        """The stream must be at ``version`` (0 means it must not exist yet)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"an expected version must be an int >= 0, got {version!r}")
        return cls(version)

    @classmethod
    def of(cls, expected: ExpectedVersion | int) -> ExpectedVersion:
        """Accept a plain int as ``exactly(int)``."""
        return expected if isinstance(expected, ExpectedVersion) else cls.exactly(expected)

    def __str__(self) -> str:
        if self.value == -1:
            return "any"
        if self.value == 0:
            return "no stream (0)"
        return str(self.value)


ExpectedVersion.ANY = ExpectedVersion(-1)
ExpectedVersion.NO_STREAM = ExpectedVersion(0)


class Metadata(msgspec.Struct, frozen=True, gc=False):
    """What is known about why and where an event happened.

    ``correlation_id`` ties together everything one request set off; ``causation_id``
    names the message that directly caused this one. Both default to the id of the
    first event of the append when not given. ``headers`` carry the rest (a W3C
    ``traceparent``, a user id): short strings only.
    """

    correlation_id: str | None = None
    causation_id: str | None = None
    headers: Mapping[str, str] | None = None


class NewEvent(msgspec.Struct, frozen=True, gc=False):
    """An event to append, when the caller wants to choose its id or metadata."""

    event: object
    id: UUID | None = None
    metadata: Metadata | None = None


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: the domain event plus where, when and why it was recorded."""

    id: UUID
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    recorded_at: datetime
    event: object
    metadata: Metadata


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for an event a tolerant read could not decode; ``error`` says why."""

    error: CorruptEventError


class AppendResult(msgspec.Struct, frozen=True, gc=False):
    """Where an append landed: the stream's new version and the global positions used."""

    stream_id: str
    version: int
    first_position: int
    position: int


class AllPage(msgspec.Struct, frozen=True, gc=False):
    """A page of "all events", possibly filtered by type and stream category.

    ``scanned_to`` is the position the reader may continue after: the last event's, or,
    when the page is not full, the head the store saw, so skipped events are not read
    again. It never passes an event that could still commit (guarantee 2).
    """

    events: list[RecordedEvent]
    scanned_to: int


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """A stored copy of an aggregate's state at a version, with the schema it was taken in."""

    stream_id: str
    version: int
    schema: str
    state: bytes
    subjects: tuple[str, ...] = ()


class StreamReader(Protocol):
    """Reads one stream."""

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        *,
        to_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of the stream from ``from_version`` up to ``to_version``, oldest first."""
        ...

    async def read_stream_backwards(
        self, stream_id: str, from_version: int | None = None, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events of the stream from ``from_version`` (default: the last) down, newest first."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it has no events."""
        ...

    async def version_at(self, stream_id: str, when: datetime) -> int:
        """The stream's version as it was at ``when``; 0 if it had no events then."""
        ...


class StreamWriter(Protocol):
    """Appends to streams."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[object],
        *,
        expected: ExpectedVersion | int = ExpectedVersion.ANY,
        metadata: Metadata | None = None,
    ) -> AppendResult:
        """Append ``events`` atomically if the stream is at the expected version."""
        ...


class AllEventsReader(Protocol):
    """Follows every event of the store in global order."""

    async def read_all(self, after: int = 0, *, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with a position above ``after``, in position order.

        A reader that pages on with ``after = last.position`` sees every event,
        including one that commits after an event with a higher position was read.
        """
        ...

    async def head_position(self) -> int:
        """The highest position a reader can see now; 0 for an empty store."""
        ...

    async def read_all_page(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: Collection[str] | None = None,
        categories: Collection[str] | None = None,
        tolerant: bool = False,
    ) -> AllPage:
        """Like ``read_all``, only events of ``types`` (stored names) if given, and only
        of streams in ``categories`` (``category_of``) if given; both: both must hold.

        Served by an index: events of other types or categories are neither read nor
        decoded, and ``scanned_to`` still moves past them. With ``tolerant``, an
        undecodable event comes back as an ``Undecodable``.
        """
        ...

    async def wait_for_events(self, after: int, max_wait: float) -> None:
        """Return when events beyond ``after`` may exist, or after ``max_wait`` seconds."""
        ...


class SnapshotStore(Protocol):
    """Keeps snapshots apart from events: a cache that may be dropped at any time."""

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(
        self, stream_id: str, *, max_version: int | None = None
    ) -> Snapshot | None: ...


class EventStore(StreamReader, StreamWriter, AllEventsReader, SnapshotStore, Protocol):
    """The whole store, as every adapter implements it."""

    async def forget(self, subject: str) -> None:
        """Delete the data subject's key: their personal fields read as placeholders.

        The subject stays forgotten: personal data for them is refused from then on.
        """
        ...

    async def close(self) -> None: ...
