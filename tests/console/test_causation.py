"""Causation in a browser: from an order in sales to the budget change in campaigns."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from console.a11y import check_basics
from console.conftest import Embedded, screenshot, use_token

pytestmark = pytest.mark.slow


def test_an_orders_causation_chain_leads_to_the_budget_change_in_campaigns(
    page: Page, embedded: Embedded
) -> None:
    lead_id = embedded.facts["lead_id"]
    # Without the token, the lead's personal data and state are hidden.
    page.goto(f"{embedded.console}/streams/lead-{lead_id}")
    expect(page.locator("main")).to_contain_text("personal: hidden")
    expect(page.locator("main")).not_to_contain_text(embedded.facts["lead_name"])
    expect(page.locator("#state table")).to_have_count(0)
    screenshot(page, "stream-without-token")
    use_token(page)
    page.get_by_role("link", name="Streams").click()
    page.get_by_label("Stream id starts with").fill(f"lead-{lead_id}")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=f"lead-{lead_id}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"lead-{lead_id}")
    expect(page.locator("main")).to_contain_text(embedded.facts["lead_name"])

    # The order's event, then its chain: by the keyboard.
    ordered = page.get_by_role("link", name="sales.order_submitted")
    ordered.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile("^Event sales.order_submitted"))
    check_basics(page)
    graph = page.locator("section.graph")
    focus = graph.locator("li", has=page.locator(".node.focus")).last
    # Under the order: the message campaigns handled, and under it the budget's event.
    message = focus.locator(".node.message").first
    expect(message).to_contain_text("handled by campaigns")
    budget = focus.get_by_role("link", name="campaigns.budget_increased")
    expect(budget).to_be_visible()
    screenshot(page, "causation-order")

    budget.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile("^Event campaigns.budget_increased"))
    check_basics(page)
    # The same chain, now with the budget's event in focus, caused by the order.
    focused = page.locator("section.graph .node.focus")
    expect(focused).to_contain_text("campaigns.budget_increased")
    expect(page.locator("section.graph")).to_contain_text("sales.order_submitted")
    share = embedded.facts["budget_cents"]
    expect(page.locator("main dl.data")).to_contain_text(share)
    screenshot(page, "causation-budget")

    # And on to the budget's stream: its state as of that event.
    focused.get_by_role("link", name=re.compile("^budget-")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("budget-")
    expect(page.locator("#state")).to_contain_text(share)
    check_basics(page)
