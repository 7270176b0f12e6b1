"""CQRS read side: projections, their read models, and the engine that runs them."""

from chronik.projections.admin import (
    ParkedOutcome,
    ParkedRequest,
    PositionReader,
    ProjectionsAdmin,
    Rebuild,
)
from chronik.projections.engine import ProjectionEngine, ProjectionRunner
from chronik.projections.health import ProjectionStatus, RebuildProgress
from chronik.projections.inline import InlineProjections
from chronik.projections.port import (
    BackendTx,
    Doc,
    Merge,
    Parked,
    ProjectionBackend,
    ProjectionRow,
    Writes,
)
from chronik.projections.projection import Projection, handles
from chronik.projections.readmodel import ReadModels, ReadModelTx

__all__ = [
    "BackendTx",
    "Doc",
    "InlineProjections",
    "Merge",
    "Parked",
    "ParkedOutcome",
    "ParkedRequest",
    "PositionReader",
    "Projection",
    "ProjectionBackend",
    "ProjectionEngine",
    "ProjectionRow",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionsAdmin",
    "ReadModelTx",
    "ReadModels",
    "Rebuild",
    "RebuildProgress",
    "Writes",
    "handles",
]
