"""How campaigns' stored events of older shapes are read today."""

from __future__ import annotations

from typing import Any

from chronik.eventstore import Upcaster


def _drop_partner_behaviour(data: dict[str, Any]) -> dict[str, Any]:
    """campaign_created v1 -> v2: the demo's knob left the event for a header."""
    return {k: v for k, v in data.items() if k != "partner_behaviour"}


UPCASTERS = [Upcaster("campaigns.campaign_created", 1, _drop_partner_behaviour)]
