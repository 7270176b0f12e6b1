"""Looking into processes: their instances and the steps each took, for every front end.

The command line (``chronik processes ...``), HTTP routes (a context showing where its
saga stands) and tests read instances through ``ProcessesAdmin``, as typed views
(``InstanceView``, ``ProcessStep``), never the process index's tables by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec

from chronik.processes.index import InstanceView, ProcessIndex, instance_view
from chronik.processes.process import ProcessStepped, process_stream
from chronik.projections.port import ProjectionBackend
from chronik.projections.readmodel import ReadModels

__all__ = ["ProcessStep", "ProcessesAdmin", "RawStreamReader"]


class RawStreamReader(Protocol):
    """What the admin reads of the event store: a stream's events as stored."""

    async def read_stream_raw(self, stream_id: str) -> list[dict[str, Any]]:
        """A stream's events, their data as stored JSON (personal fields masked)."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessStep:
    """One step an instance took: what triggered it, where it went, what it sent."""

    version: int
    recorded_at: datetime
    #: an event's class name, or ``timeout:NAME``
    trigger_type: str
    status: str
    finished: bool
    #: the type names of the commands it sent, in order
    commands: tuple[str, ...]


class ProcessesAdmin:
    """The process instances of one database and their steps.

    ``backend`` is the database's projection backend (``Database.projections()``), which
    keeps the process index; ``store`` its event store, which keeps each instance's steps.
    """

    def __init__(self, backend: ProjectionBackend, store: RawStreamReader) -> None:
        self.backend = backend
        self.store = store
        self._read = ReadModels(backend)

    async def indexed(self) -> bool:
        """Whether a process ever ran here (its index exists)."""
        return await self.backend.load(ProcessIndex.name) is not None

    async def instances(
        self, *, process: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[InstanceView]:
        """Instances of ``process`` (or all), in ``status`` (or any), at most ``limit``."""
        where = {k: v for k, v in (("process", process), ("status", status)) if v is not None}
        if not await self.indexed():
            return []
        docs = await self._read.find(ProcessIndex.name, "instances", where=where, limit=limit)
        return [instance_view(doc) for doc in docs]

    async def instance(self, process: str, instance: str) -> InstanceView | None:
        """One instance of ``process``, or None if there is no such instance."""
        if not await self.indexed():
            return None
        doc = await self._read.get(ProcessIndex.name, "instances", f"{process}/{instance}")
        return None if doc is None else instance_view(doc)

    async def steps(self, process: str, instance: str) -> list[ProcessStep]:
        """Every step the instance took, in order ([] for an instance that never ran)."""
        out = []
        for stored in await self.store.read_stream_raw(process_stream(process, instance)):
            step = msgspec.convert(stored["data"], ProcessStepped)
            out.append(
                ProcessStep(
                    version=stored["version"],
                    recorded_at=datetime.fromisoformat(stored["recorded_at"]),
                    trigger_type=step.trigger_type,
                    status=step.status,
                    finished=step.finished,
                    commands=tuple(c["type"] for c in step.commands),
                )
            )
        return out
