"""Campaigns' commands from outside the saga: what a caller or a consumer asks.

The saga's own commands (``ReserveBudget`` ...) are in ``campaigns.domain``: the
process manager sends them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CreateCampaign:
    name: str
    cost_cents: int


@dataclass(frozen=True)
class ActivateCampaign:
    campaign_id: str


@dataclass(frozen=True)
class TopUpBudget:
    amount_cents: int


@dataclass(frozen=True)
class CreditOrder:
    """A sales order, as the ACL read it: what it adds to the budget, or why nothing."""

    order_id: str
    amount: int  # in the minor unit of its currency
    currency: str
    credit_cents: int | None  # None: not credited, for ``reason``
    reason: str = ""
