"""A fake external publishing partner, with its own model. It speaks placements, not campaigns.

Its behaviour per request (the ``mode`` a campaign carries) lets the demo show the unhappy
paths: ``confirm``, ``reject``, ``delay`` (answers later, by callback), ``fail`` (unreachable)
and ``silent`` (takes the order and never answers).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class PartnerUnavailable(ConnectionError):
    """The partner's API could not be reached."""


@dataclass(frozen=True)
class PlacementRequest:
    external_id: str
    ad_title: str
    budget_eur: float
    mode: str


@dataclass(frozen=True)
class PlacementReceipt:
    status: str  # ACCEPTED | DECLINED | PENDING
    reference: str | None = None
    decline_code: str | None = None


Callback = Callable[[str, PlacementReceipt], Awaitable[None]]


class FakePartner:
    def __init__(self, *, delay_seconds: float = 2.0) -> None:
        self.delay_seconds = delay_seconds
        self._pending: set[asyncio.Task[None]] = set()

    async def place(self, request: PlacementRequest, callback: Callback) -> PlacementReceipt:
        reference = f"AD-{secrets.token_hex(4).upper()}"  # unique across restarts
        if request.mode == "fail":
            raise PartnerUnavailable("partner API: connection refused")
        if request.mode == "reject":
            return PlacementReceipt("DECLINED", reference, "CONTENT_POLICY")
        if request.mode in ("delay", "silent"):
            if request.mode == "delay":
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
