"""A fake external publishing partner, with its own model. It speaks placements, not campaigns.

The demo chooses how it answers a campaign's placement, to show the unhappy paths:
``confirm``, ``reject``, ``delay`` (answers later, by callback), ``fail`` (unreachable)
and ``silent`` (takes the order and never answers). That choice is the fake's
configuration, not the campaign's: the HTTP API takes it as ``partner_behaviour`` and
stores it as a header of the append that creates the campaign (``BEHAVIOUR_HEADER``),
never in a domain event, and the fake looks it up by the placement's external id
(``behaviour_from_headers``). A real partner has no such knob.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, get_args

from chronik.eventstore import BaseEventStore

Behaviour = Literal["confirm", "reject", "delay", "fail", "silent"]
BEHAVIOURS: tuple[str, ...] = get_args(Behaviour)
#: the header of a campaign's first append that holds the demo's behaviour for it
BEHAVIOUR_HEADER = "demo-partner-behaviour"

BehaviourOf = Callable[[str], Awaitable[str]]


class PartnerUnavailable(ConnectionError):
    """The partner's API could not be reached."""


@dataclass(frozen=True)
class PlacementRequest:
    external_id: str
    ad_title: str
    budget_eur: float


@dataclass(frozen=True)
class PlacementReceipt:
    status: str  # ACCEPTED | DECLINED | PENDING
    reference: str | None = None
    decline_code: str | None = None


Callback = Callable[[str, PlacementReceipt], Awaitable[None]]


async def always_confirm(external_id: str) -> str:
    return "confirm"


def behaviour_from_headers(store: BaseEventStore, prefix: str) -> BehaviourOf:
    """The behaviour the demo asked for a campaign: the header of its stream's first event.

    A campaign created without one (or before the header existed) is confirmed.
    """

    async def behaviour_of(external_id: str) -> str:
        first = await store.read_stream(prefix + external_id, limit=1)
        headers = (first[0].metadata.headers or {}) if first else {}
        found = headers.get(BEHAVIOUR_HEADER, "confirm")
        return found if found in BEHAVIOURS else "confirm"

    return behaviour_of


class FakePartner:
    def __init__(
        self, *, behaviour_of: BehaviourOf = always_confirm, delay_seconds: float = 2.0
    ) -> None:
        self.behaviour_of = behaviour_of
        self.delay_seconds = delay_seconds
        self._pending: set[asyncio.Task[None]] = set()

    async def place(self, request: PlacementRequest, callback: Callback) -> PlacementReceipt:
        reference = f"AD-{secrets.token_hex(4).upper()}"  # unique across restarts
        mode = await self.behaviour_of(request.external_id)
        if mode == "fail":
            raise PartnerUnavailable("partner API: connection refused")
        if mode == "reject":
            return PlacementReceipt("DECLINED", reference, "CONTENT_POLICY")
        if mode in ("delay", "silent"):
            if mode == "delay":
                task = asyncio.create_task(self._answer_later(request, reference, callback))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
            return PlacementReceipt("PENDING", reference)
        return PlacementReceipt("ACCEPTED", reference)

    async def _answer_later(
        self, request: PlacementRequest, reference: str, callback: Callback
    ) -> None:
        await asyncio.sleep(self.delay_seconds)
        await callback(request.external_id, PlacementReceipt("ACCEPTED", reference))
