"""The event store: its port, what every adapter shares, repositories, the codec.

The adapters (memory, SQLite, PostgreSQL) live in ``chronik.adapters``, one folder per
technology; open a store by URL with ``chronik.open_event_store``.
"""

from chronik.eventstore.base import AppendRequest, BaseEventStore, EncodedEvent, ShownEvent
from chronik.eventstore.codec import EventTypes, Upcaster
from chronik.eventstore.port import (
    AllEventsReader,
    AllPage,
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
    category_of,
)
from chronik.eventstore.repository import Repository, handle_command
from chronik.eventstore.signal import HeadSignal

__all__ = [
    "AllEventsReader",
    "AllPage",
    "AppendRequest",
    "AppendResult",
    "BaseEventStore",
    "EncodedEvent",
    "EventStore",
    "EventTypes",
    "ExpectedVersion",
    "HeadSignal",
    "Metadata",
    "NewEvent",
    "RecordedEvent",
    "Repository",
    "ShownEvent",
    "Snapshot",
    "SnapshotStore",
    "StreamReader",
    "StreamWriter",
    "Undecodable",
    "Upcaster",
    "category_of",
    "handle_command",
]
