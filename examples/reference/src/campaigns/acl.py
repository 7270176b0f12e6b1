"""The anti-corruption layer: the only place foreign names meet campaigns' model.

Orders from sales become budget by one rule, in integer arithmetic:

- The budget is kept in cents of ``BUDGET_CURRENCY`` (EUR). An order in EUR adds
  ``MARKETING_PERCENT`` (10%) of its amount, rounded half up (15 -> 2, 25 -> 3,
  35 -> 4) and at least one cent, so every order shows in the budget.
- An order in any other currency is not credited: campaigns has no exchange rates, and
  crediting yen as cents (or at a made-up rate) would invent money. It is recorded
  (``OrderNotCredited``, with the reason) and its message counts as handled. So is an
  order in a code ISO 4217 does not define for campaigns (``MINOR_UNITS``).

An order's ``amount_cents`` is in its currency's minor unit, as ISO 4217 counts them:
cents of EUR, yen (no minor unit) of JPY, fils (three digits) of KWD.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.domain import Campaign
from campaigns.partner import PlacementReceipt, PlacementRequest
from sales import contracts as sales

#: the currency the budget is kept in (its amounts are in its minor unit)
BUDGET_CURRENCY = "EUR"
#: the share of each order that goes to marketing, in percent
MARKETING_PERCENT = 10

#: digits after the decimal point of each currency's minor unit (ISO 4217), for the
#: currencies campaigns knows: enough to say what an order was worth
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        ["AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "INR"], 2
    ),
    **dict.fromkeys(["MXN", "NOK", "NZD", "PLN", "SEK", "SGD", "USD", "ZAR"], 2),
    **dict.fromkeys(["CLP", "ISK", "JPY", "KRW", "VND"], 0),
    **dict.fromkeys(["BHD", "JOD", "KWD", "OMR", "TND"], 3),
}


@dataclass(frozen=True, slots=True)
class Credit:
    """The order adds this many cents of the budget's currency."""

    cents: int


@dataclass(frozen=True, slots=True)
class NotCredited:
    """The order adds nothing, for this reason."""

    reason: str


def to_placement(campaign: Campaign) -> PlacementRequest:
    return PlacementRequest(
        external_id=campaign.id,
        ad_title=campaign.name,
        budget_eur=campaign.cost_cents / 10 ** MINOR_UNITS[BUDGET_CURRENCY],
    )


def outcome(receipt: PlacementReceipt) -> tuple[str, str]:
    """('confirmed', reference) | ('rejected', reason) | ('pending', reference)."""
    if receipt.status == "ACCEPTED":
        return "confirmed", receipt.reference or ""
    if receipt.status == "DECLINED":
        return "rejected", f"the partner declined ({receipt.decline_code or 'no reason'})"
    return "pending", receipt.reference or ""


def budget_from_order(order: sales.OrderSubmitted) -> Credit | NotCredited:
    """What an order adds to the marketing budget (see the module's rule)."""
    digits = MINOR_UNITS.get(order.currency)
    if digits is None:
        return NotCredited(
            f"an order of {order.amount_cents} in {order.currency!r} is not credited: "
            "not an ISO 4217 currency campaigns knows"
        )
    if order.currency != BUDGET_CURRENCY:
        return NotCredited(
            f"an order of {_amount(order.amount_cents, digits)} {order.currency} is not "
            f"credited: the budget is in {BUDGET_CURRENCY} and campaigns converts no currency"
        )
    # amount * percent / 100, half up: add half the divisor before the floor division.
    share = (order.amount_cents * MARKETING_PERCENT + 50) // 100
    return Credit(max(1, share))


def _amount(minor: int, digits: int) -> str:
    """An amount in minor units as its major unit reads: 12345, 2 -> '123.45'."""
    if digits == 0:
        return str(minor)
    whole, part = divmod(minor, 10**digits)
    return f"{whole}.{part:0{digits}d}"
