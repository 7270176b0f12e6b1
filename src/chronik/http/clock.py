"""The demo's clock over HTTP: ``GET /admin/clock``, ``POST /admin/clock/advance``.

Served only when ``CHRONIK_CLOCK=virtual`` (which needs ``CHRONIK_DEMO=1``): moving the
clock forward makes every process timeout due by the new time fire in the processes'
next timer round (within about a second). Advancing is a write: with
``CHRONIK_API_TOKEN`` set it needs the token. ``chronik clock`` calls these routes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, field_validator

from chronik.processes.clock import TurnableClock, parse_duration
from chronik.runtime.service import Runtime

__all__ = ["ClockAdvance", "ClockTime", "routes"]


class ClockAdvance(BaseModel):
    """How far to move the clock forward: ``48h``, ``2m``, ``90s``, ``1d12h``."""

    by: str = Field(examples=["48h"])

    @field_validator("by")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= timedelta(0):
            raise ValueError(f"{value!r}: a clock moves forward only, give more than 0")
        return value


class ClockTime(BaseModel):
    """The processes' time, and how far ahead of the system's it is."""

    now: datetime
    ahead_seconds: float


def routes(runtime: Runtime) -> APIRouter:
    """The clock's routes, for a runtime whose settings ask for the virtual clock."""
    router = APIRouter(prefix="/admin/clock", tags=["admin"])

    def clock() -> TurnableClock:
        turnable = runtime.turnable_clock
        if turnable is None:  # the runtime has not started (yet)
            raise HTTPException(503, "the virtual clock is not running yet")
        return turnable

    def shown(turnable: TurnableClock) -> ClockTime:
        return ClockTime(now=turnable.now(), ahead_seconds=turnable.offset.total_seconds())

    @router.get("", summary="The processes' time (demo only)")
    async def now() -> ClockTime:
        return shown(clock())

    @router.post(
        "/advance",
        summary="Move the processes' clock forward (demo only)",
        description="Timeouts due by the new time fire in the processes' next timer round.",
    )
    async def advance(body: ClockAdvance) -> ClockTime:
        turnable = clock()
        turnable.advance(parse_duration(body.by))
        return shown(turnable)

    return router
