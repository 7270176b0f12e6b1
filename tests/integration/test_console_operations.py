"""The console's operations pages over HTTP, without a browser: what they show, the
samples their live parts carry, and the actions (refused, or stored for the runners).

The reference system's three contexts run in one runtime on the memory store (no
broker: the relay and the consumers do not run); pages are asked for through the ASGI
app under an Ingress prefix.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import campaigns
import sales
import travel
from chronik.http.app import create_app
from chronik.messaging.port import DeadLetter
from chronik.runtime.service import Runtime
from chronik.runtime.settings import Settings

PREFIX = "/crm"
TOKEN = "tok-console-ops-51d2"


@dataclass
class Served:
    http: httpx.AsyncClient
    runtime: Runtime


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    values: dict[str, Any] = {
        "event_store_url": "memory://",
        "http_root_path": PREFIX,
        "console_actions": True,
        **getattr(request, "param", {}),
    }
    runtime = Runtime(
        Settings.model_validate(values), [sales.spec(), campaigns.spec(), travel.spec()]
    )
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as http:
            yield Served(http, runtime)
    finally:
        await runtime.stop()


async def test_projections_are_listed_with_their_lag_and_a_projection_with_its_live_part(
    served: Served,
) -> None:
    answer = await served.http.get(f"{PREFIX}/console/projections")
    assert answer.status_code == 200
    assert "<title>Projections" in answer.text
    for name in ("trip_board", "lead_search", "campaign_board"):
        assert f'href="{PREFIX}/console/projections/{name}"' in answer.text

    page = await served.http.get(f"{PREFIX}/console/projections/trip_board")
    assert page.status_code == 200
    assert 'id="projection-live"' in page.text
    assert f'action="{PREFIX}/console/projections/trip_board/rebuild"' in page.text
    # The live part carries its lag samples in its own poll's URL: the server keeps none.
    live = await served.http.get(
        f"{PREFIX}/console/projections/trip_board/live", params={"samples": "7,x,3"}
    )
    assert live.status_code == 200
    assert "<html" not in live.text  # a fragment, swapped in by htmx
    polled = re.search(r'hx-get="([^"]+)"', live.text)
    assert polled is not None
    assert polled.group(1).startswith(
        f"{PREFIX}/console/projections/trip_board/live?samples=7%2C3%2C"
    )
    assert "<polyline" in live.text


async def test_an_unknown_projection_instance_or_dead_letter_is_not_found(served: Served) -> None:
    for path in ("projections/nope", "projections/nope/live", "processes/trip_booking/nope"):
        answer = await served.http.get(f"{PREFIX}/console/{path}")
        assert answer.status_code == 404, (path, answer.text)
    for path in ("projections/nope/rebuild", "messaging/dead-letters/mailer/m-1/redeliver"):
        answer = await served.http.post(f"{PREFIX}/console/{path}")
        assert answer.status_code == 404, (path, answer.text)
        assert "nope" in answer.text or "m-1" in answer.text


async def test_a_rebuild_asked_for_is_stored_for_the_runner_and_the_page_says_so(
    served: Served,
) -> None:
    answer = await served.http.post(f"{PREFIX}/console/projections/trip_board/rebuild")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"{PREFIX}/console/projections/trip_board?done=")
    # htmx asks for the next page by a header, not by following a redirect
    again = await served.http.post(
        f"{PREFIX}/console/projections/lead_search/replay-parked", headers={"HX-Request": "true"}
    )
    assert again.status_code == 204
    assert again.headers["HX-Redirect"].startswith(f"{PREFIX}/console/projections/lead_search")
    backend = served.runtime.database.projections()
    row = await backend.load("trip_board")
    assert row is not None
    # The runner of this very service takes it: the request is stored or already done.
    assert row.request in ("rebuild", None)


@pytest.mark.parametrize("served", [{"console_actions": False}], indirect=True)
async def test_a_read_only_console_refuses_every_action(served: Served) -> None:
    for path in (
        "projections/trip_board/rebuild",
        "projections/trip_board/replay-parked",
        "projections/trip_board/skip-parked",
        "messaging/dead-letters/mailer/m-1/redeliver",
    ):
        answer = await served.http.post(f"{PREFIX}/console/{path}")
        assert answer.status_code == 403, (path, answer.text)
    row = await served.runtime.database.projections().load("trip_board")
    assert row is not None and row.request is None
    page = await served.http.get(f"{PREFIX}/console/projections/trip_board")
    assert "Rebuild trip_board" not in page.text
    assert "CHRONIK_CONSOLE_ACTIONS=1" in page.text


@pytest.mark.parametrize("served", [{"api_token": TOKEN}], indirect=True)
async def test_with_a_token_set_an_action_needs_it(served: Served) -> None:
    path = f"{PREFIX}/console/projections/trip_board/skip-parked"
    assert (await served.http.post(path)).status_code == 401
    taken = await served.http.post(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert taken.status_code == 303


async def test_dead_letters_show_their_errors_and_a_redelivery_is_asked_for(
    served: Served,
) -> None:
    storage = served.runtime.messages
    await storage.add_dead_letter(
        DeadLetter(
            "travel",
            "msg-7",
            "sales.visit_planned.v1",
            b"{}",
            "KeyError: 'city'",
            5,
            datetime.now(UTC),
        )
    )
    page = await served.http.get(f"{PREFIX}/console/messaging")
    assert page.status_code == 200
    assert "<title>Outbox and inbox" in page.text
    assert "KeyError: &#39;city&#39;" in page.text
    assert 'id="outbox-pending">0<' in page.text
    # The memory broker's relay runs here: its rate needs a reading from an earlier poll.
    assert "measured at the next poll" in page.text
    live = await served.http.get(
        f"{PREFIX}/console/messaging/live", params={"relayed": f"0@{time.monotonic() - 10:.3f}"}
    )
    assert re.search(r'id="relay-rate">\d+\.\d messages/s<', live.text), live.text
    assert re.search(r'hx-get="[^"]*relayed=\d+%40', live.text)
    redeliver = f"{PREFIX}/console/messaging/dead-letters/travel/msg-7/redeliver"
    assert f'action="{redeliver}"' in page.text
    answer = await served.http.post(redeliver)
    assert answer.status_code == 303
    assert await storage.requested_redeliveries("travel") == ["msg-7"]


async def test_the_processes_page_draws_each_process_and_its_running_instances(
    served: Served,
) -> None:
    page = await served.http.get(f"{PREFIX}/console/processes")
    assert page.status_code == 200
    for process in ("trip_booking", "campaign_publishing"):
        assert f"State diagram of {process}" in page.text
    assert 'data-state="awaiting_approval"' in page.text
    assert "timeout:approval" in page.text
    only = await served.http.get(
        f"{PREFIX}/console/processes", params={"process": "trip_booking", "status": "confirmed"}
    )
    assert "State diagram of campaign_publishing" not in only.text
    assert "No instance in confirmed." in only.text
