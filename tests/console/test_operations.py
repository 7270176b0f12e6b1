"""The operations pages in a browser: a rebuild watched to its end, a parked event seen and
replayed, a trip waiting for approval on its process's state diagram, the outbox and inbox.

They share the session's system with the read-only tests and change only what those do not
read: trip_board's generation (a rebuild serves the same documents), a lead named "Poison
Pill" and the row of a projection of their own (``console_lead_names``), which an engine
in this process runs on the service's store, as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from playwright.sync_api import Page, expect

from chronik.adapters import Database, open_database
from chronik.cli import embedded_url
from chronik.eventstore import EventTypes
from chronik.projections import Projection, ProjectionEngine, ReadModelTx, handles
from console.a11y import check_basics
from console.conftest import PREFIX, TOKEN, Embedded, screenshot, use_token
from sales.domain import LeadInitialized

pytestmark = pytest.mark.slow

#: how long a rebuild or a replay may take on a loaded machine (ms)
DONE_MS = 60_000


def test_a_trip_waiting_for_approval_shows_on_its_state_diagram_with_its_timeout(
    page: Page, embedded: Embedded
) -> None:
    trip_id = embedded.facts["trip_id"]
    page.goto(embedded.console)
    page.get_by_role("link", name="Processes").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile("^Processes"))
    check_basics(page)
    diagram = page.get_by_role("img", name=re.compile("State diagram of trip_booking"))
    expect(diagram).to_be_visible()
    for state in ("booking_flight", "booking_hotel", "awaiting_approval", "confirmed"):
        expect(diagram.locator(f"g[data-state={state}]")).to_have_count(1)
    screenshot(page, "processes")

    instance = page.get_by_role("link", name=trip_id)
    href = instance.get_attribute("href")
    assert href is not None and href.startswith(f"{PREFIX}/console/"), href
    instance.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(trip_id)
    check_basics(page)
    expect(page.locator("#instance-status")).to_have_text("awaiting_approval")
    current = page.locator("g.state-box.current")
    expect(current).to_have_count(1)
    expect(current).to_have_attribute("data-state", "awaiting_approval")
    expect(
        page.get_by_role("img", name=re.compile("State diagram of trip_booking: now in awaiting"))
    ).to_be_visible()
    # The approval's timeout, with its due time; and the arrow it fires on.
    expect(page.locator("#timeouts")).to_contain_text(re.compile(r"approval due \d{4}-\d\d-\d\d"))
    expect(page.locator("svg text", has_text="timeout:approval")).to_have_count(1)
    expect(page.get_by_role("table", name="Steps")).to_contain_text("HotelBooked")
    screenshot(page, "process-awaiting-approval")


def test_a_projection_rebuild_is_asked_for_and_watched_to_its_end(
    page: Page, embedded: Embedded
) -> None:
    page.goto(embedded.console)
    # Reached by the menu (a boosted navigation replaces the header): the token typed in
    # after it is kept all the same.
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Projections").click()
    expect(page).to_have_url(re.compile("/projections$"))
    use_token(page)  # the rebuild is an action: the service has an API token
    check_basics(page)
    expect(page.get_by_role("table", name="Projections")).to_contain_text("trip_board")
    screenshot(page, "projections")
    page.get_by_role("link", name="trip_board").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("trip_board")
    check_basics(page)
    generation = int(page.locator("#generation").inner_text())

    rebuild = page.get_by_role("button", name="Rebuild trip_board")
    rebuild.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("rebuild asked for")
    # The live part polls: the rebuilt generation serves once it caught up.
    expect(page.locator("#generation")).to_have_text(str(generation + 1), timeout=DONE_MS)
    expect(page.locator("#rebuild-progress")).to_have_text("No rebuild under way.")
    expect(page.locator("#projection-state")).not_to_have_text("stale")
    # The lag chart is drawn from the polls so far.
    expect(page.get_by_role("img", name=re.compile("Lag in events"))).to_be_visible()
    screenshot(page, "projection-rebuilt")


class LeadNames(Projection):
    """A projection run beside the service by the test, poisoned by the names in ``poison``."""

    name = "console_lead_names"
    tables = ("names",)
    poison: ClassVar[set[str]] = set()

    @handles(LeadInitialized)
    async def initialized(self, e: LeadInitialized, tx: ReadModelTx) -> None:
        if e.name in self.poison:
            raise ValueError(f"cannot take the lead named {e.name!r}")
        tx.put("names", e.lead_id, {"name": e.name})


@contextlib.contextmanager
def engine_beside(url: str) -> Iterator[None]:
    """``LeadNames`` run by an engine of its own on the service's store (another process
    would do the same): on an event loop in a thread, since Playwright holds this one."""
    import reference

    specs = reference.specs()
    types = EventTypes(
        [t for s in specs for t in s.event_types], upcasters=[u for s in specs for u in s.upcasters]
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Database, ProjectionEngine]:
        database = await open_database(url)
        engine = ProjectionEngine(
            database.event_store(types),
            [LeadNames()],
            backend=database.projections(),
            retries=1,
            idle_wait=0.2,
        )
        await engine.start()
        return database, engine

    database, engine = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(engine.stop(), loop).result(60)
        asyncio.run_coroutine_threadsafe(database.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_parked_event_is_seen_with_its_error_and_replayed(page: Page, embedded: Embedded) -> None:
    data_dir = Path(embedded.service.env["CHRONIK_DATA_DIR"])
    LeadNames.poison = {"Poison Pill"}
    with engine_beside(embedded_url(data_dir)):
        answer = httpx.post(
            f"{embedded.service.url}{PREFIX}/sales/leads",
            json={"name": "Poison Pill", "phone": "+44 20 7946 0000"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code in (200, 201), answer.text
        page.goto(f"{embedded.console}/projections/console_lead_names")
        use_token(page)  # the replay is an action
        check_basics(page)
        parked = page.get_by_role("table", name="Parked events")
        expect(parked).to_contain_text("cannot take the lead named 'Poison Pill'", timeout=DONE_MS)
        expect(parked).to_contain_text("sales.lead_initialized")
        screenshot(page, "projection-parked")

        LeadNames.poison = set()  # the handler fixed: the replay applies it
        replay = page.get_by_role("button", name="Replay parked events")
        replay.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("replay of 1 parked event(s)")
        expect(page.locator("#parked")).to_have_text("None.", timeout=DONE_MS)
        screenshot(page, "projection-replayed")


def test_the_outbox_and_inbox_page_shows_the_backlog_the_relay_and_the_consumers(
    page: Page, embedded: Embedded
) -> None:
    page.goto(embedded.console)
    page.get_by_role("link", name="Outbox & inbox").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile("^Outbox and inbox"))
    check_basics(page)
    expect(page.locator("#outbox-pending")).to_have_text(re.compile(r"^\d+$"))
    consumers = page.get_by_role("table", name="Consumers")
    for consumer in ("campaigns", "travel", "sales-visits"):
        expect(consumers).to_contain_text(consumer)
    # The relay's rate is measured between two polls of its counter.
    expect(page.locator("#relay-rate")).to_contain_text("messages/s", timeout=DONE_MS)
    screenshot(page, "outbox-inbox")
