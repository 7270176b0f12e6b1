"""A store with a rival writer: for testing code that must retry on ConcurrencyError."""

from __future__ import annotations

from chronik.adapters.memory.database import MemoryDatabase
from chronik.adapters.memory.eventstore import MemoryEventStore
from chronik.eventstore.codec import EventTypes
from chronik.eventstore.port import RecordedEvent

__all__ = ["RivalWriterStore"]


class RivalWriterStore(MemoryEventStore):
    """A memory store where a rival appends ``rival_event`` right after each stream read.

    While ``times`` is above zero, every ``read_stream`` (and ``load_events``, a
    repository's read) is followed by such an append,
    so the reader's next append finds the stream a version further on: a real conflict,
    ``times`` times in a row.
    """

    def __init__(self, types: EventTypes, rival_event: object, times: int) -> None:
        super().__init__(MemoryDatabase(), types)
        self.rival_event = rival_event
        self.times = times

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        *,
        to_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        records = await super().read_stream(
            stream_id, from_version, to_version=to_version, limit=limit
        )
        if self.times > 0:
            self.times -= 1
            await self.append(stream_id, [self.rival_event])
        return records

    async def load_events(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> tuple[list[object], int]:
        loaded = await super().load_events(stream_id, from_version, to_version)
        if self.times > 0:
            self.times -= 1
            await self.append(stream_id, [self.rival_event])
        return loaded
