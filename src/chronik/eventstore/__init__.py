"""The event store: a port, three adapters (memory, SQLite, PostgreSQL), repositories.

Open one by URL with ``open_event_store``; adapters live in modules named after
their technology and are imported only when their URL is used.
"""

from chronik.adapters.url import open_event_store
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.codec import EventTypes, Upcaster
from chronik.eventstore.port import (
    AllEventsReader,
    AppendResult,
    EventStore,
    ExpectedVersion,
    Metadata,
    NewEvent,
    RecordedEvent,
    Snapshot,
    SnapshotStore,
    StreamReader,
    StreamWriter,
    Undecodable,
)
from chronik.eventstore.repository import Repository, handle_command

__all__ = [
    "AllEventsReader",
    "AppendResult",
    "BaseEventStore",
    "EventStore",
    "EventTypes",
    "ExpectedVersion",
    "Metadata",
    "NewEvent",
    "RecordedEvent",
    "Repository",
    "Snapshot",
    "SnapshotStore",
    "StreamReader",
    "StreamWriter",
    "Undecodable",
    "Upcaster",
    "handle_command",
    "open_event_store",
]
