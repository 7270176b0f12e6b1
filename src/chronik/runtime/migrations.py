"""What a service's store lacks: its schema's migrations and its projections' tables.

``chronik migrate --status`` and ``--sql`` show it, and a service that may not migrate
(``CHRONIK_AUTO_MIGRATE=false``) refuses to start while anything is pending. Reading
the plan runs no DDL: it reads ``chronik_migrations`` and the projections' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chronik.adapters import Database
from chronik.errors import MigrationsPendingError
from chronik.eventstore import BaseEventStore
from chronik.processes.index import process_index
from chronik.projections import Projection
from chronik.projections.port import ProjectionBackend

if TYPE_CHECKING:
    from chronik.runtime.service import ServiceSpec

__all__ = ["Step", "plan", "refuse_pending"]

#: the migration that makes the table of projection rows: before it, none exists
_PROJECTION_ROWS = "projections_0001"


@dataclass(frozen=True)
class Step:
    """One thing ``chronik migrate`` does: applied already, or pending with its SQL."""

    part: str
    name: str
    applied: bool
    #: the SQL it runs (empty when applied); for a projection, its tables' DDL
    sql: str = ""
    #: what it does, for ``--status``: ``applied``, ``pending``, ``pending: rebuild to v2``
    state: str = ""


async def plan(
    database: Database, store: BaseEventStore, specs: Sequence[ServiceSpec] = ()
) -> list[Step]:
    """Every step of the store's schema and of the contexts' projections, in order."""
    applied = await database.applied_migrations()
    steps = [
        Step(m.part, m.name, m.name in applied, "" if m.name in applied else m.sql)
        for m in database.migrations()
    ]
    backend = database.projections()
    rows_exist = _PROJECTION_ROWS in applied or not database.migrations()
    for projection in _projections(store, backend, specs):
        spec = type(projection)
        name = projection.name
        row = await backend.load(name) if rows_exist else None
        part = "projection"
        if row is None:
            sql = backend.creation_sql(name, 1, spec.tables, spec.indexes)
            steps.append(Step(part, name, False, sql, "pending: tables to create"))
        elif row.version != spec.version and row.rebuild_version != spec.version:
            sql = backend.creation_sql(name, row.generation + 1, spec.tables, spec.indexes)
            state = f"pending: rebuild from version {row.version} to {spec.version}"
            steps.append(Step(part, name, False, sql, state))
        else:
            steps.append(Step(part, name, True))
    return [s if s.state else _stated(s) for s in steps]


def _stated(step: Step) -> Step:
    return Step(step.part, step.name, step.applied, step.sql, _state(step.applied))


def _state(applied: bool) -> str:
    return "applied" if applied else "pending"


def _projections(
    store: BaseEventStore, backend: ProjectionBackend, specs: Sequence[ServiceSpec]
) -> list[Projection]:
    """The projections with tables a service of ``specs`` keeps: its own, its inline ones,
    and the process index when it runs processes."""
    found = [p for s in specs for p in (*s.inline_projections, *s.projections)]
    if any(s.workers is not None for s in specs):
        index = process_index(store, backend)
        found += list(index.projections.values())
    return [p for p in found if type(p).tables]


def refuse_pending(steps: Sequence[Step], url: str) -> None:
    """MigrationsPendingError, one line naming what is pending and ``chronik migrate``."""
    pending = [f"{s.part} {s.name}" for s in steps if not s.applied]
    if pending:
        shown = ", ".join(pending[:6]) + (
            f" and {len(pending) - 6} more" if len(pending) > 6 else ""
        )
        raise MigrationsPendingError(
            f"the store {url} is not migrated ({shown} pending) and CHRONIK_AUTO_MIGRATE is "
            "off: run `chronik migrate` (the migration Job) with this service's settings"
        )
