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
from chronik.projections.port import Parked
from chronik.projections.projection import Projection, handles
from chronik.projections.readmodel import ReadModels, ReadModelTx

__all__ = [
    "InlineProjections",
    "Parked",
    "ParkedOutcome",
    "ParkedRequest",
    "PositionReader",
    "Projection",
    "ProjectionEngine",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionsAdmin",
    "ReadModelTx",
    "ReadModels",
    "Rebuild",
    "RebuildProgress",
    "handles",
]
