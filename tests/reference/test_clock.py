"""The demo's clock over HTTP, driving the reference system's timeouts.

The three contexts run in one runtime on the memory store with ``CHRONIK_DEMO=1`` and
``CHRONIK_CLOCK=virtual``; ``POST /admin/clock/advance`` moves the processes' time, and
the approval timeout (48 hours) and the partner timeout (``CHRONIK_PARTNER_TIMEOUT``)
fire in the next timer round. Without the virtual clock the routes are not there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import campaigns
import sales
import travel
from chronik.http.app import create_app
from chronik.runtime.service import Runtime
from chronik.runtime.settings import Settings

T = TypeVar("T")
TOKEN = "tok-clock-4a7e"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
DEMO = {"demo": True, "clock": "virtual"}


@asynccontextmanager
async def reference(data_dir: Path, **values: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The three contexts in one runtime, ready, and a client of their API."""
    settings = Settings.model_validate(
        {"event_store_url": "memory://", "data_dir": data_dir, "run": "all", **values}
    )
    runtime = Runtime(settings, [sales.spec(), campaigns.spec(), travel.spec()])
    await runtime.start()
    try:
        await eventually(runtime.readiness, lambda reasons: not reasons, "ready")
        transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ref") as client:
            yield client
    finally:
        await runtime.stop()


async def eventually(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, within: float = 30
) -> T:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await read()
        if done(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"not {what}: {value!r}"
        await asyncio.sleep(0.05)


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.post(path, json=body, headers=RIGHT)
    assert answer.is_success, (path, answer.status_code, answer.text)
    found: dict[str, Any] = answer.json()
    return found


def getter(client: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[Any]]:
    async def get() -> Any:
        answer = await client.get(path, headers=RIGHT)
        return answer.json() if answer.status_code == 200 else answer.status_code

    return get


async def test_without_the_virtual_clock_there_is_no_clock_to_turn(tmp_path: Path) -> None:
    async with reference(tmp_path) as client:
        assert (await client.get("/admin/clock")).status_code == 404
        turned = await client.post("/admin/clock/advance", json={"by": "48h"})
        assert turned.status_code == 404
        assert "/admin/clock/advance" not in (await client.get("/openapi.json")).json()["paths"]
    assert not (tmp_path / "virtual-clock").exists()


async def test_turning_the_clock_is_a_write_that_needs_the_token_when_one_is_set(
    tmp_path: Path,
) -> None:
    async with reference(tmp_path, api_token=TOKEN, **DEMO) as client:
        refused = await client.post("/admin/clock/advance", json={"by": "1h"})
        assert refused.status_code == 401
        wrong = await client.post(
            "/admin/clock/advance", json={"by": "1h"}, headers={"Authorization": "Bearer x"}
        )
        assert wrong.status_code == 401
        assert (await client.get("/admin/clock")).json()["ahead_seconds"] == 0
        turned = await client.post("/admin/clock/advance", json={"by": "1h"}, headers=RIGHT)
        assert turned.status_code == 200, turned.text
        assert turned.json()["ahead_seconds"] == 3600
        document = (await client.get("/openapi.json")).json()
        assert document["paths"]["/admin/clock/advance"]["post"]["security"] == [{"ApiToken": []}]
    assert (tmp_path / "virtual-clock").read_text() == "3600.000000\n"


@pytest.mark.parametrize(
    ("by", "says"), [("soon", "'soon' is not a duration"), ("0s", "moves forward only")]
)
async def test_a_duration_it_cannot_read_is_refused_naming_it(
    tmp_path: Path, by: str, says: str
) -> None:
    async with reference(tmp_path, **DEMO) as client:
        refused = await client.post("/admin/clock/advance", json={"by": by})
        assert refused.status_code == 422
        assert says in refused.text
        assert (await client.get("/admin/clock")).json()["ahead_seconds"] == 0


async def test_two_days_on_the_clock_cancel_a_trip_nobody_approved(tmp_path: Path) -> None:
    async with reference(tmp_path, **DEMO) as client:
        departs = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        trip = await post(
            client,
            "/travel/trips",
            {"traveller": "Mary", "destination": "Oslo", "depart_on": departs},
        )
        booking = await eventually(
            getter(client, f"/travel/trips/{trip['id']}/booking"),
            lambda b: isinstance(b, dict) and b["status"] == "awaiting_approval",
            "awaiting approval",
        )
        [approval] = booking["timeouts"].values()
        assert approval["name"] == "approval"
        await post(client, "/admin/clock/advance", {"by": "47h"})
        await post(client, "/admin/clock/advance", {"by": "1h"})
        view = await eventually(
            getter(client, f"/travel/trips/{trip['id']}"),
            lambda t: isinstance(t, dict) and t["status"] == "cancelled",
            "cancelled",
        )
        assert view["reason"] == "no approval within 48 hours"
        booking = await getter(client, f"/travel/trips/{trip['id']}/booking")()
        assert (booking["status"], booking["finished"], booking["timeouts"]) == (
            "cancelled",
            True,
            {},
        )


async def test_the_partner_timeout_setting_decides_when_a_silent_partner_times_out(
    tmp_path: Path,
) -> None:
    async with reference(tmp_path, partner_timeout=600, **DEMO) as client:
        await post(client, "/campaigns/budget/top-up", {"amount_cents": 10_000})
        campaign = await post(
            client,
            "/campaigns/campaigns",
            {"name": "Quiet one", "cost_cents": 5000, "partner_behaviour": "silent"},
        )
        before = datetime.fromisoformat((await client.get("/admin/clock")).json()["now"])
        await post(client, f"/campaigns/campaigns/{campaign['id']}/activate", {})
        saga = await eventually(
            getter(client, f"/campaigns/campaigns/{campaign['id']}/publishing"),
            lambda s: isinstance(s, dict) and s["status"] == "publishing",
            "publishing",
        )
        after = datetime.fromisoformat((await client.get("/admin/clock")).json()["now"])
        [partner] = saga["timeouts"].values()
        due = datetime.fromisoformat(partner["due"])
        assert partner["name"] == "partner"
        assert before + timedelta(seconds=600) <= due <= after + timedelta(seconds=600)
        await eventually(
            getter(client, "/campaigns/budget"),
            lambda b: b["reserved_cents"] == 5000,
            "5000 reserved",
        )

        await post(client, "/admin/clock/advance", {"by": "10m"})
        view = await eventually(
            getter(client, f"/campaigns/campaigns/{campaign['id']}"),
            lambda c: isinstance(c, dict) and c["status"] == "cancelled",
            "cancelled",
        )
        assert view["reason"] == "the partner did not answer in time"
        await eventually(
            getter(client, "/campaigns/budget"),
            lambda b: b["reserved_cents"] == 0 and b["available_cents"] == 10_000,
            "the reservation released",
        )
