"""Read models: document tables a projection owns, written through a buffered transaction.

A handler sees ``ReadModelTx``: ``get``, ``put``, ``patch``, ``increment``, ``delete``
on documents (JSON objects) by key. Changes are coalesced in memory per key and
written once per page, in the transaction that also moves the checkpoint. A blind
write (``put``, ``patch``, ``increment``) costs no read; ``get`` reads once per key per
page. The same API runs on memory, SQLite and PostgreSQL, through the port
(``chronik.projections.port``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from chronik.eventstore.port import RecordedEvent
from chronik.projections.port import BackendTx, Doc, Merge, ProjectionBackend, Writes
from chronik.projections.projection import check_field

__all__ = ["ReadModelTx", "ReadModels"]


class _Change:
    __slots__ = ("doc", "increments", "known", "patch")

    def __init__(self) -> None:
        self.known = False  # True when ``doc`` is the whole document (None: absent)
        self.doc: Doc | None = None
        self.patch: Doc = {}
        self.increments: dict[str, int | float] = {}


class ReadModelTx:
    """The read model as one page of events sees it: buffered, coalesced, flushed once."""

    def __init__(self, backend: BackendTx, tables: Mapping[str, str]) -> None:
        self._backend = backend
        self._tables = tables  # logical name -> physical table of this generation
        self._changes: dict[str, dict[str, _Change]] = {t: {} for t in tables}
        #: the event being applied: its position, stream, metadata, recorded time
        self.current: RecordedEvent | None = None

    def _change(self, table: str, key: str) -> _Change:
        try:
            changes = self._changes[table]
        except KeyError:
            raise KeyError(
                f"table {table!r} is not one of this projection's tables: {sorted(self._tables)}"
            ) from None
        if not isinstance(key, str) or not key:
            raise ValueError(f"a document key must be a non-empty str, got {key!r}")
        change = changes.get(key)
        if change is None:
            change = changes[key] = _Change()
        return change

    async def get(self, table: str, key: str) -> Doc | None:
        """The document as this page has left it so far (a copy), or None."""
        change = self._change(table, key)
        if not change.known:
            stored = await self._backend.fetch(self._tables[table], [key])
            doc = stored.get(key)
            if change.patch or change.increments:
                doc = dict(doc or {})
                _apply(doc, change.patch, change.increments)
            change.known, change.doc = True, doc
            change.patch, change.increments = {}, {}
        return copy.deepcopy(change.doc)

    def put(self, table: str, key: str, doc: Mapping[str, Any]) -> None:
        """Replace (or create) the document.

        The transaction keeps ``doc`` (a shallow copy) until the page is written: build a
        new dict for each call rather than changing one already given.
        """
        change = self._change(table, key)
        change.known, change.doc = True, dict(doc)
        change.patch, change.increments = {}, {}

    def patch(self, table: str, key: str, fields: Mapping[str, Any]) -> None:
        """Set these top-level fields, keeping the others (creates the document if absent)."""
        change = self._change(table, key)
        values = dict(fields)
        for name in values:
            check_field(name)
        if change.known:
            change.doc = {**(change.doc or {}), **values}
        else:
            for name in values:
                change.increments.pop(name, None)
            change.patch.update(values)

    def increment(self, table: str, key: str, field: str, by: int | float = 1) -> None:
        """Add ``by`` to a numeric field (missing counts as 0; creates the document)."""
        check_field(field)
        if isinstance(by, bool) or not isinstance(by, int | float):
            raise ValueError(f"increment by a number, got {by!r}")
        change = self._change(table, key)
        if change.known:
            doc = change.doc = change.doc or {}
            doc[field] = doc.get(field, 0) + by
        elif field in change.patch:
            change.patch[field] = change.patch[field] + by
        else:
            change.increments[field] = change.increments.get(field, 0) + by

    def delete(self, table: str, key: str) -> None:
        change = self._change(table, key)
        change.known, change.doc = True, None
        change.patch, change.increments = {}, {}

    async def flush(self) -> None:
        """Write every change of this page; the caller's transaction commits them."""
        for table, changes in self._changes.items():
            if not changes:
                continue
            writes = Writes()
            for key, change in changes.items():
                if change.known:
                    if change.doc is None:
                        writes.deletes.append(key)
                    else:
                        writes.puts.append((key, change.doc))
                elif change.patch or change.increments:
                    writes.merges.append(Merge(key, change.patch, change.increments))
            await self._backend.write(self._tables[table], writes)
            changes.clear()


def _apply(doc: Doc, patch: Mapping[str, Any], increments: Mapping[str, int | float]) -> None:
    doc.update(patch)
    for name, by in increments.items():
        doc[name] = doc.get(name, 0) + by


class ReadModels:
    """Queries on projections' read models, always on the serving generation."""

    def __init__(self, backend: ProjectionBackend) -> None:
        self._backend = backend

    async def get(self, projection: str, table: str, key: str) -> Doc | None:
        return await self._backend.get(projection, table, key)

    async def find(
        self,
        projection: str,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Doc]:
        """Documents whose fields equal ``where``'s values, optionally ordered by a field."""
        conditions = dict(where or {})
        for name in conditions:
            check_field(name)
        if order_by is not None:
            check_field(order_by)
        _check_page(limit, offset)
        return await self._backend.find(
            projection, table, conditions, order_by, descending, limit, offset
        )

    async def search(
        self, projection: str, table: str, field: str, text: str, *, limit: int = 50
    ) -> list[Doc]:
        """Documents whose ``field`` contains ``text``, ignoring case (ASCII)."""
        check_field(field)
        _check_page(limit, 0)
        if not isinstance(text, str):
            raise ValueError("search text must be a str")
        return await self._backend.search(projection, table, field, text, limit)

    async def count(
        self, projection: str, table: str, *, where: Mapping[str, Any] | None = None
    ) -> int:
        conditions = dict(where or {})
        for name in conditions:
            check_field(name)
        return await self._backend.count(projection, table, conditions)


def _check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be an int from 1 to 10000, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")
