"""The memory database: the events, read models and messages of one process, in dicts.

Every role it hands out keeps its state here, so an event store, its outbox and its
read models see one another as they would in one real database.
"""

from __future__ import annotations

from chronik.adapters.memory.eventstore import EventState, MemoryEventStore
from chronik.adapters.memory.messages import MemoryMessageStorage, MessageState
from chronik.adapters.memory.readmodels import MemoryProjectionBackend, ReadModelState
from chronik.adapters.port import Migration
from chronik.eventstore.codec import EventTypes
from chronik.eventstore.signal import HeadSignal

__all__ = ["MemoryDatabase"]


class MemoryDatabase:
    """A database in the process: gone when it ends. Appends never suspend, so each is
    atomic on its event loop."""

    url = "memory://"
    #: made whole in the process: there is no DDL to run or to hold back
    auto_migrate = True

    def __init__(self) -> None:
        self.signal = HeadSignal()
        self.event_state = EventState()
        self.read_model_state = ReadModelState()
        self.message_state = MessageState()
        self._messages: MemoryMessageStorage | None = None
        self._projections: MemoryProjectionBackend | None = None

    def event_store(self, types: EventTypes, *, closes_database: bool = False) -> MemoryEventStore:
        return MemoryEventStore(self, types, closes_database=closes_database)

    def messages(self) -> MemoryMessageStorage:
        if self._messages is None:
            self._messages = MemoryMessageStorage(self)
        return self._messages

    def projections(self) -> MemoryProjectionBackend:
        if self._projections is None:
            self._projections = MemoryProjectionBackend(self)
        return self._projections

    def migrations(self) -> list[Migration]:
        """None: its dicts need no schema."""
        return []

    async def applied_migrations(self) -> set[str]:
        return set()

    async def close(self) -> None:
        """Nothing to release."""
