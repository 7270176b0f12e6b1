"""Accessibility basics, checked in the browser on every console page a test opens."""

from __future__ import annotations

from playwright.sync_api import Page

# Each form control and its accessible name's sources: a <label>, aria-label(ledby), or a
# button's text. Hidden controls do not count.
_UNLABELLED = """() => {
  const named = (el) => (el.labels && el.labels.length > 0)
    || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
    || ((el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent.trim());
  return [...document.querySelectorAll('input, select, textarea, button, a[href]')]
    .filter((el) => el.type !== 'hidden' && el.offsetParent !== null && !named(el))
    .map((el) => el.outerHTML.slice(0, 120));
}"""


def check_basics(page: Page) -> None:
    """A title, the landmarks (one banner, a navigation, one main), every control named."""
    assert page.title().strip(), f"{page.url} has no <title>"
    assert page.locator("header").count() == 1, f"{page.url}: no single <header>"
    assert page.locator("nav").count() >= 1, f"{page.url}: no <nav>"
    assert page.locator("main").count() == 1, f"{page.url}: no single <main>"
    assert page.locator("h1").count() == 1, f"{page.url}: no single <h1>"
    unlabelled = page.evaluate(_UNLABELLED)
    assert not unlabelled, f"{page.url}: controls without a name: {unlabelled}"
