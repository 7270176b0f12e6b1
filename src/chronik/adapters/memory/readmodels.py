"""Read models in memory, beside the memory event store: for tests and throwaway runs."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chronik.errors import LostLeadershipError
from chronik.eventstore.port import RecordedEvent
from chronik.projections.port import Doc, Parked, ProjectionRow, Writes, physical
from chronik.worker import GRANTED, Lease

if TYPE_CHECKING:
    from chronik.adapters.memory.database import MemoryDatabase

__all__ = ["MemoryProjectionBackend", "ReadModelState"]


class ReadModelState:
    """The read models, projection rows and parked events of a memory database."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Doc]] = {}
        self.rows: dict[str, ProjectionRow] = {}
        self.parked: dict[str, dict[int, Parked]] = {}


class _Tx:
    """Stages every write; the backend applies them when the transaction commits."""

    def __init__(self, state: ReadModelState) -> None:
        self.state = state
        self.staged: list[tuple[str, Any]] = []

    async def fetch(self, table: str, keys: Sequence[str]) -> dict[str, Doc]:
        docs = self.state.tables[table]
        return {k: copy.deepcopy(docs[k]) for k in keys if k in docs}

    async def write(self, table: str, writes: Writes) -> None:
        self.staged.append(("write", (table, copy.deepcopy(writes))))

    async def advance(
        self, name: str, generation: int, rebuilding: bool, expected: int, to: int
    ) -> None:
        row = self.state.rows[name]
        current = row.rebuild_checkpoint if rebuilding else row.checkpoint
        gen = row.rebuild_generation if rebuilding else row.generation
        if gen != generation or current != expected:
            raise LostLeadershipError(f"projection {name!r}: its checkpoint moved")
        self.staged.append(("advance", (name, rebuilding, to)))

    async def park(self, name: str, event: RecordedEvent, error: str, attempts: int) -> None:
        parked = Parked(
            name,
            event.position,
            event.stream_id,
            event.version,
            event.type,
            error,
            attempts,
            datetime.now(UTC),
        )
        self.staged.append(("park", parked))

    async def unpark(self, name: str, position: int) -> None:
        self.staged.append(("unpark", (name, position)))

    async def generation(self, name: str) -> int:
        return self.state.rows[name].generation

    async def switch(self, name: str, tables: Sequence[str]) -> None:
        self.staged.append(("switch", (name, tuple(tables))))

    def commit(self) -> None:
        state = self.state
        for kind, item in self.staged:
            if kind == "write":
                table, writes = item
                docs = state.tables[table]
                for key in writes.deletes:
                    docs.pop(key, None)
                for key, doc in writes.puts:
                    docs[key] = doc
                for merge in writes.merges:
                    doc = docs.setdefault(merge.key, {})
                    doc.update(merge.patch)
                    for field, by in merge.increments.items():
                        doc[field] = doc.get(field, 0) + by
            elif kind == "advance":
                name, rebuilding, to = item
                if rebuilding:
                    state.rows[name].rebuild_checkpoint = to
                else:
                    state.rows[name].checkpoint = to
            elif kind == "park":
                state.parked.setdefault(item.projection, {})[item.position] = item
            elif kind == "switch":
                name, tables = item
                row = state.rows[name]
                old = row.generation
                assert row.rebuild_generation is not None and row.rebuild_version is not None
                row.generation, row.checkpoint = row.rebuild_generation, row.rebuild_checkpoint or 0
                row.version = row.rebuild_version
                row.rebuild_generation = row.rebuild_checkpoint = row.rebuild_version = None
                for table in tables:
                    state.tables.pop(physical(name, table, old), None)
            else:
                name, position = item
                state.parked.get(name, {}).pop(position, None)


class MemoryProjectionBackend:
    """Read models as dicts, kept by the memory database: every engine on it shares them."""

    def __init__(self, database: MemoryDatabase) -> None:
        self.state = database.read_model_state

    async def setup(self) -> None:
        """Nothing to create."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        tx = _Tx(self.state)
        yield tx
        tx.commit()

    def tx_on(self, conn: Any) -> tuple[_Tx, Callable[[], None]]:
        tx = _Tx(self.state)
        return tx, tx.commit

    @contextlib.asynccontextmanager
    async def appends_paused(self) -> AsyncIterator[_Tx]:
        # Memory appends never suspend: nothing interleaves with an unsuspending switch.
        async with self.transaction() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def leadership(self, name: str) -> AsyncIterator[bool]:
        yield True

    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Lease]:
        """Granted: one process owns the memory, and its engine runs each worker once."""
        yield GRANTED

    async def forgotten(self) -> None:
        """Memory keeps no old copies."""

    async def load(self, name: str) -> ProjectionRow | None:
        row = self.state.rows.get(name)
        return copy.copy(row) if row else None

    async def load_all(self) -> list[ProjectionRow]:
        return [copy.copy(self.state.rows[n]) for n in sorted(self.state.rows)]

    def _create_tables(self, name: str, generation: int, tables: Sequence[str]) -> None:
        for table in tables:
            self.state.tables[physical(name, table, generation)] = {}

    async def create(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        if name not in self.state.rows:
            self._create_tables(name, 1, tables)
            self.state.rows[name] = ProjectionRow(name, 1, version, 0, state="catching_up")
        return copy.copy(self.state.rows[name])

    async def begin_rebuild(
        self, name: str, version: int, tables: Sequence[str], indexes: Mapping[str, Sequence[str]]
    ) -> ProjectionRow:
        row = self.state.rows[name]
        self._create_tables(name, row.generation + 1, tables)
        row.rebuild_generation, row.rebuild_checkpoint = row.generation + 1, 0
        row.rebuild_version = version
        return copy.copy(row)

    async def switch(self, name: str, tables: Sequence[str]) -> ProjectionRow:
        async with self.transaction() as tx:
            await tx.switch(name, tables)
        return copy.copy(self.state.rows[name])

    async def set_status(
        self, name: str, state: str, detail: str | None, clear_request: str | None = None
    ) -> None:
        row = self.state.rows[name]
        row.state, row.detail, row.heartbeat_at = state, detail, datetime.now(UTC)
        if clear_request is not None and row.request == clear_request:
            row.request = None

    async def request(self, name: str, request: str) -> None:
        if name not in self.state.rows:
            raise KeyError(f"no projection named {name!r} has run in this store")
        self.state.rows[name].request = request

    async def parked(self, name: str) -> list[Parked]:
        return [p for _, p in sorted(self.state.parked.get(name, {}).items())]

    async def unpark(self, name: str, position: int) -> None:
        self.state.parked.get(name, {}).pop(position, None)

    # -- queries -----------------------------------------------------------------------

    def _docs(self, projection: str, table: str) -> dict[str, Doc]:
        row = self.state.rows.get(projection)
        if row is None:
            raise KeyError(f"no projection named {projection!r}")
        return self.state.tables[physical(projection, table, row.generation)]

    async def get(self, projection: str, table: str, key: str) -> Doc | None:
        doc = self._docs(projection, table).get(key)
        return copy.deepcopy(doc)

    def _matching(self, projection: str, table: str, where: Mapping[str, Any]) -> list[Doc]:
        docs = self._docs(projection, table)
        return [
            copy.deepcopy(docs[key])
            for key in sorted(docs)
            if all(docs[key].get(f) == v for f, v in where.items())
        ]

    async def find(
        self,
        projection: str,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None,
        descending: bool,
        limit: int,
        offset: int,
    ) -> list[Doc]:
        docs = self._matching(projection, table, where)
        if order_by is not None:
            present = [d for d in docs if d.get(order_by) is not None]
            absent = [d for d in docs if d.get(order_by) is None]
            present.sort(key=lambda d: d[order_by], reverse=descending)
            docs = absent + present if not descending else present + absent
        return docs[offset : offset + limit]

    async def search(
        self, projection: str, table: str, field: str, text: str, limit: int
    ) -> list[Doc]:
        needle = text.lower()
        docs = self._matching(projection, table, {})
        found = [d for d in docs if isinstance(d.get(field), str) and needle in d[field].lower()]
        return found[:limit]

    async def count(self, projection: str, table: str, where: Mapping[str, Any]) -> int:
        return len(self._matching(projection, table, where))
