"""The anti-corruption layer: the only place foreign names meet campaigns' model."""

from __future__ import annotations

from campaigns.domain import Campaign
from campaigns.partner import PlacementReceipt, PlacementRequest
from sales import contracts as sales

#: the share of each order that goes to marketing
MARKETING_SHARE = 0.10


def to_placement(campaign: Campaign) -> PlacementRequest:
    return PlacementRequest(
        external_id=campaign.id,
        ad_title=campaign.name,
        budget_eur=campaign.cost_cents / 100,
        mode=campaign.partner_behaviour,
    )


def outcome(receipt: PlacementReceipt) -> tuple[str, str]:
    """('confirmed', reference) | ('rejected', reason) | ('pending', reference)."""
    if receipt.status == "ACCEPTED":
        return "confirmed", receipt.reference or ""
    if receipt.status == "DECLINED":
        return "rejected", f"the partner declined ({receipt.decline_code or 'no reason'})"
    return "pending", receipt.reference or ""


def budget_from_order(order: sales.OrderSubmitted) -> int:
    """Cents an order adds to the marketing budget (currencies taken at par, for the demo)."""
    return max(1, round(order.amount_cents * MARKETING_SHARE))
