"""Inline projections: read models updated in the transaction of each append.

For read models that must agree with the write at once (read-your-writes without
waiting): an append and its inline updates commit together, and a handler that
raises fails the append, which then writes nothing. They cost the append time, so
keep them small; everything else belongs in the asynchronous engine.

A rebuild (or a new ``version``) fills the next generation of the tables from the
history while appends keep updating the serving one, then applies the last stretch
and switches with appends paused for that moment only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.port import RecordedEvent
from chronik.projections.health import ProjectionStatus, describe
from chronik.projections.port import BackendTx, ProjectionBackend, ProjectionRow, physical
from chronik.projections.projection import Projection
from chronik.projections.readmodel import ReadModels, ReadModelTx

__all__ = ["InlineProjections"]


class InlineProjections:
    """Keeps some projections in step with every append of one store.

    ``backend`` is the projection backend of the store's database
    (``Database.projections()``): the updates run in the append's own transaction.
    """

    def __init__(
        self,
        store: BaseEventStore,
        projections: Sequence[Projection],
        *,
        backend: ProjectionBackend,
        page_size: int = 1000,
    ) -> None:
        for projection in projections:
            type(projection).check()
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique, got {names}")
        self.store = store
        self.backend = backend
        self.projections = {p.name: p for p in projections}
        self.read_models = ReadModels(self.backend)
        self.page_size = page_size
        self._installed = False

    async def setup(self) -> None:
        """Create (or rebuild) the read models, then update them with every append."""
        await self.backend.setup()
        for name, projection in self.projections.items():
            spec = type(projection)
            row = await self.backend.load(name)
            if row is None:
                await self.backend.create(name, spec.version, spec.tables, spec.indexes)
                await self.backend.set_status(name, "inline", None)
            elif row.version != spec.version:
                await self.rebuild(name)
        if not self._installed:
            self.store.add_append_hook(self._hook)
            self._installed = True

    async def _hook(self, conn: Any, events: list[RecordedEvent]) -> Callable[[], None] | None:
        btx, done = self.backend.tx_on(conn)
        for name, projection in self.projections.items():
            if any(projection.handler_for(type(e.event)) for e in events):
                generation = await btx.generation(name)
                await _apply(projection, btx, generation, events)
        return done

    async def rebuild(self, name: str) -> None:
        """Build the read model again from all events, without stopping appends."""
        projection = self.projections[name]
        spec = type(projection)
        row = await self.backend.begin_rebuild(name, spec.version, spec.tables, spec.indexes)
        generation = row.rebuild_generation
        assert generation is not None
        types = sorted(
            {n for cls in projection.event_types for n in self.store.types.names_of(cls)}
        )
        done = 0
        while done < await self.store.head_position():
            page = await self.store.read_all_page(done, limit=self.page_size, types=types)
            async with self.backend.transaction() as btx:
                await _apply(projection, btx, generation, page.events)
                await btx.advance(name, generation, True, done, page.scanned_to)
            done = page.scanned_to
        async with self.backend.appends_paused() as btx:
            while True:
                page = await self.store.read_all_page(done, limit=self.page_size, types=types)
                if page.scanned_to <= done:
                    break
                await _apply(projection, btx, generation, page.events)
                await btx.advance(name, generation, True, done, page.scanned_to)
                done = page.scanned_to
            await btx.switch(name, spec.tables)

    async def statuses(self) -> list[ProjectionStatus]:
        """Inline read models are always as current as the events."""
        head = await self.store.head_position()
        statuses = []
        for name, projection in self.projections.items():
            row = await self.backend.load(name)
            if row is None:
                row = ProjectionRow(name, 0, type(projection).version, head)
            row.state = "inline"
            statuses.append(describe(row, head=head, parked=0, lag_seconds=0.0))
        return statuses


async def _apply(
    projection: Projection, btx: BackendTx, generation: int, events: Sequence[RecordedEvent]
) -> None:
    tables = {t: physical(projection.name, t, generation) for t in projection.tables}
    tx = ReadModelTx(btx, tables)
    for recorded in events:
        handler = projection.handler_for(type(recorded.event))
        if handler is not None:
            tx.current = recorded
            await handler(recorded.event, tx)
    await tx.flush()
