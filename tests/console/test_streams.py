"""The Streams pages in a browser: find a lead's stream, step back through its versions."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from console.a11y import check_basics
from console.conftest import PREFIX, Embedded, screenshot, use_token

pytestmark = pytest.mark.slow


def test_a_leads_stream_is_found_and_two_versions_back_shows_its_older_state(
    page: Page, embedded: Embedded
) -> None:
    lead_id = embedded.facts["lead_id"]
    page.goto(embedded.console)
    check_basics(page)
    screenshot(page, "overview")

    # The skip link comes first from the keyboard.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    use_token(page)  # the state shows personal data (the lead's name)
    # From the menu to the Streams page, by the keyboard.
    page.get_by_role("link", name="Streams").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile("^Streams"))
    check_basics(page)

    page.get_by_label("Stream id starts with").fill("lead-")
    page.get_by_label("Stream id starts with").press("Enter")
    stream = page.get_by_role("link", name=f"lead-{lead_id}")
    expect(stream).to_be_visible()
    screenshot(page, "streams")
    href = stream.get_attribute("href")
    assert href is not None and href.startswith(f"{PREFIX}/console/"), href
    stream.click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(f"lead-{lead_id}")
    check_basics(page)
    latest = _shown_version(page)
    assert latest >= 3, f"the lead's stream has {latest} versions"
    status_now = _state(page, "status")
    screenshot(page, "stream-latest")

    # Two versions back, by the keyboard: focus the older-version link and press Enter.
    for step in (1, 2):
        versions = page.get_by_role("navigation", name="Versions")
        older = versions.get_by_role("link", name=re.compile(rf"Version {latest - step}$"))
        older.focus()
        page.keyboard.press("Enter")
        shown = page.get_by_role("navigation", name="Versions").locator("[aria-current=step]")
        expect(shown).to_have_text(f"Version {latest - step}")
    assert _shown_version(page) == latest - 2
    assert _state(page, "name") == '"Ada Lovelace"'
    assert _state(page, "status") != status_now
    # What version N-2 changed is highlighted.
    expect(page.locator("#state tr.changed, #state tr.added").first).to_be_visible()
    assert f"at={latest - 2}" in page.url
    screenshot(page, "stream-two-back")


def _shown_version(page: Page) -> int:
    text = page.locator("#state-heading").inner_text()
    found = re.search(r"version (\d+) of (\d+)", text)
    assert found, text
    return int(found.group(1))


def _state(page: Page, attribute: str) -> str:
    return page.locator(f"#state tr[data-field={attribute}] td").first.inner_text()
