"""How travel's stored events of older shapes are read today."""

from __future__ import annotations

from typing import Any

from chronik.eventstore import Upcaster


def _drop_simulate(data: dict[str, Any]) -> dict[str, Any]:
    """trip_requested v1 -> v2: the demo's knob left the event for a header."""
    return {k: v for k, v in data.items() if k != "simulate"}


UPCASTERS = [Upcaster("travel.trip_requested", 1, _drop_simulate)]
