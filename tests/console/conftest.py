"""The console in a real browser: Debian's chromium driven by Playwright.

One browser and one embedded reference system (``chronik serve`` with
sales, campaigns and travel, seeded through its HTTP API), shared by the tests: they
only read, and each opens its own page. The system is served behind a path prefix, as
behind an Ingress, so every link the console draws is checked to keep it, and with an
API token, so personal data shows only once the token is typed in. Screenshots
go to ``.artifacts/console/`` (git-ignored).

Chromium is Debian's package, launched by its path: Playwright's own browser download
cannot work here. The set-up installs it with apt when it is missing (as root, as CI
runs); where it cannot, the tests are skipped, and fail under CHRONIK_REQUIRE_SERVICES.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from conftest import service_missing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from reference_system import Service, System, launched

from console.seed import seed

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts" / "console"
#: the path prefix the system is served under (CHRONIK_HTTP_ROOT_PATH), as by an Ingress
PREFIX = "/crm"
#: the API token (CHRONIK_API_TOKEN): actions and personal data need it
TOKEN = "tok-console-browser-7f3a"
#: how long a page or an element may take on a loaded machine (ms)
WAIT_MS = 20_000


def _install_chromium() -> None:
    """``apt-get install chromium``, updating the lists first if that fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, check=False, timeout=900)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False, timeout=900)


@pytest.fixture(scope="package")
def chromium() -> Path:
    """Debian's chromium, installed when absent (as root with apt)."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        _install_chromium()
    if not CHROMIUM.exists():
        service_missing(f"{CHROMIUM} is missing: apt-get install chromium")
    return CHROMIUM


# Package-scoped, not session-scoped: Playwright's sync API leaves an event loop marked
# running in this thread until it stops, and the async tests that follow need none.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    """One headless chromium for the session (no sandbox: the tests run as root)."""
    launched = playwright.chromium.launch(
        executable_path=str(chromium), headless=True, args=["--no-sandbox"]
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page (own context: no cookies or storage shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def use_token(page: Page) -> None:
    """Type the API token into the header's field, by the keyboard, as a user does: the
    console sends it with the requests it makes from then on (this tab only)."""
    field = page.get_by_role("textbox", name="API token")
    field.focus()
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    expect(field).to_have_attribute("placeholder", "token set for this tab")


def screenshot(page: Page, name: str) -> Path:
    """Save the page as ``.artifacts/console/<name>.png`` (the tests' artifacts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass(frozen=True)
class Embedded:
    """The embedded reference system, served under ``PREFIX``, and what was seeded."""

    service: Service
    #: where the console answers: http://127.0.0.1:PORT/crm/console
    console: str
    #: what ``seed.seed`` made, by name (a lead's id, an order's event id, ...)
    facts: dict[str, str]


@pytest.fixture(scope="package")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    """``chronik serve`` of the reference system on a free port, seeded once."""
    base = tmp_path_factory.mktemp("console")
    env = {
        "CHRONIK_APP": "reference:specs",
        "CHRONIK_DATA_DIR": str(base / "data"),
        "CHRONIK_HTTP_ROOT_PATH": PREFIX,
        "CHRONIK_CONSOLE_ACTIONS": "1",
        "CHRONIK_API_TOKEN": TOKEN,
    }
    with launched(base / "logs") as launcher:
        service = launcher.serve("reference", env)

        async def started() -> dict[str, str]:
            await service.wait_ready(within=60)
            system = System.embedded(f"{service.url}{PREFIX}")
            for api in (system.sales, system.campaigns, system.travel):
                api.client.headers["Authorization"] = f"Bearer {TOKEN}"
            try:
                return await seed(system)
            finally:
                await system.close()

        # A thread of its own: Playwright's sync API keeps an event loop in this one.
        with ThreadPoolExecutor(1) as thread:
            facts = thread.submit(asyncio.run, started()).result()
        yield Embedded(service, f"{service.url}{PREFIX}/console", facts)
