"""Which instances run, in which status, waiting for what: ``Processes.instances()`` and the CLI.

Every test looks at the same population, built by running the processes on a virtual
clock: an order that expired, one still waiting for its payment, one paid; a campaign
that went live, one that failed; a basket with two items.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from processes_domain import (
    HOLD,
    T0,
    BasketCount,
    BasketOpened,
    CampaignDesk,
    CampaignLaunch,
    CampaignLaunched,
    CancelOrder,
    ItemAdded,
    OrderPlaced,
    PaymentHold,
    PaymentReceived,
    campaign_stream,
    cancel_order_by_appending,
    open_wired,
    order_stream,
    running,
    settle,
    store_url,
    wait_until,
)

from chronik.adapters import Database
from chronik.eventstore import BaseEventStore
from chronik.processes import InstanceView, Processes, VirtualClock

CHRONIK = str(Path(sys.executable).with_name("chronik"))
#: when the order still waiting was placed, and when its payment is due
PLACED = T0 + HOLD + timedelta(minutes=1)
DUE = PLACED + HOLD


@dataclass
class Population:
    url: str
    database: Database
    store: BaseEventStore
    processes: Processes


async def _populate(url: str) -> Population:
    wired = await open_wired(url)
    store = wired.store
    clock = VirtualClock(T0)
    desk = CampaignDesk(store, failing={"bad": "slot"})
    processes = wired.processes(
        [PaymentHold(), CampaignLaunch(), BasketCount()],
        {CancelOrder: cancel_order_by_appending(store), **desk.handlers()},
        clock=clock,
        idle_wait=0.05,
        timer_wait=0.02,
    )
    async with running(processes):
        await store.append(order_stream("expired"), [OrderPlaced("expired")])
        await settle(processes)
        clock.advance(HOLD + timedelta(minutes=1))

        async def expired() -> bool:
            view = await processes.instance(PaymentHold.name, "expired")
            return view is not None and view.status == "cancelled"

        await wait_until(expired)
        await store.append(order_stream("waiting"), [OrderPlaced("waiting")])
        await store.append(order_stream("paid"), [OrderPlaced("paid")])
        await store.append(order_stream("paid"), [PaymentReceived("paid")])
        await store.append(campaign_stream("ok"), [CampaignLaunched("ok", 10)])
        await store.append(campaign_stream("bad"), [CampaignLaunched("bad", 10)])
        await store.append("basket-b", [BasketOpened("b"), ItemAdded("b", 7), ItemAdded("b", 3)])
        await settle(processes)
    return Population(url, wired.database, store, processes)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def population(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Population]:
    postgres = None
    if request.param == "postgres":
        postgres = f"{request.getfixturevalue('postgres_url')}?schema="
        postgres += request.getfixturevalue("pg_schema")
    populated = await _populate(store_url(request.param, tmp_path, postgres))
    yield populated
    await populated.database.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Population]:
    postgres = None
    if request.param == "postgres":
        postgres = f"{request.getfixturevalue('postgres_url')}?schema="
        postgres += request.getfixturevalue("pg_schema")
    populated = await _populate(store_url(request.param, tmp_path, postgres))
    yield populated
    await populated.database.close()


def _by_key(views: list[InstanceView]) -> dict[str, InstanceView]:
    return {f"{v.process}/{v.instance}": v for v in views}


# -- the API ---------------------------------------------------------------------------------


async def test_instances_lists_every_instance_with_its_status_and_steps(
    population: Population,
) -> None:
    views = _by_key(await population.processes.instances())
    summary = {key: (v.status, v.finished, v.steps, v.last_trigger) for key, v in views.items()}
    assert summary == {
        "payment_hold/expired": ("cancelled", True, 2, "timeout:payment"),
        "payment_hold/waiting": ("awaiting_payment", False, 1, "OrderPlaced"),
        "payment_hold/paid": ("confirmed", True, 2, "PaymentReceived"),
        "campaign_launch/ok": ("live", True, 4, "PartnerNotified"),
        "campaign_launch/bad": ("failed", True, 3, "AdSlotRefused"),
        "basket_count/b": ("counting", False, 3, "ItemAdded"),
    }


async def test_an_instance_shows_its_pending_timeouts_and_when_it_last_stepped(
    population: Population,
) -> None:
    waiting = await population.processes.instance(PaymentHold.name, "waiting")
    assert waiting is not None
    assert list(waiting.timeouts.values()) == [
        {"name": "payment", "due": DUE.isoformat(timespec="microseconds")}
    ]
    assert waiting.last_step == PLACED.isoformat()
    expired = await population.processes.instance(PaymentHold.name, "expired")
    assert expired is not None
    assert expired.timeouts == {}
    assert expired.last_step == PLACED.isoformat(), "stepped when the clock passed its due"


async def test_an_instance_shows_its_data_without_the_private_fields(
    population: Population,
) -> None:
    basket = await population.processes.instance(BasketCount.name, "b")
    assert basket is not None
    assert basket.data == {"count": 2, "items": [7, 3]}
    bad = await population.processes.instance(CampaignLaunch.name, "bad")
    assert bad is not None
    assert bad.data == {}, "the saga's _compensations stay inside"


async def test_instances_are_filtered_by_process_and_status_and_limited(
    population: Population,
) -> None:
    processes = population.processes
    holds = await processes.instances(process=PaymentHold.name)
    assert sorted(v.instance for v in holds) == ["expired", "paid", "waiting"]
    failed = await processes.instances(status="failed")
    assert [(v.process, v.instance) for v in failed] == [("campaign_launch", "bad")]
    live = await processes.instances(process=CampaignLaunch.name, status="live")
    assert [v.instance for v in live] == ["ok"]
    assert await processes.instances(process=PaymentHold.name, status="live") == []
    assert len(await processes.instances(limit=2)) == 2


async def test_an_unknown_instance_is_none(population: Population) -> None:
    assert await population.processes.instance(PaymentHold.name, "nope") is None
    assert await population.processes.instance("no_such_process", "waiting") is None


# -- the command line ------------------------------------------------------------------------


@dataclass
class Done:
    code: int
    out: str
    err: str


async def chronik(*args: str) -> Done:
    process = await asyncio.create_subprocess_exec(
        CHRONIK,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


def _row(out: str, instance: str) -> list[str]:
    """The cells of the table row of ``instance``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 6 and cells[1] == instance:
            return cells
    raise AssertionError(f"no row for {instance!r} in:\n{out}")


async def test_processes_list_shows_each_instance_with_status_steps_and_timeouts(
    durable: Population,
) -> None:
    done = await chronik("processes", "list", "--store-url", durable.url)
    assert done.code == 0, done.err
    assert _row(done.out, "waiting") == [
        "payment_hold",
        "waiting",
        "awaiting_payment",
        "1",
        f"OrderPlaced {PLACED.isoformat()[:19]}",
        f"payment @ {DUE.isoformat()[:19]}",
    ]
    assert _row(done.out, "expired")[2:4] == ["cancelled (finished)", "2"]
    assert _row(done.out, "expired")[5] == "-"
    assert _row(done.out, "bad")[:4] == ["campaign_launch", "bad", "failed (finished)", "3"]
    assert _row(done.out, "b")[:4] == ["basket_count", "b", "counting", "3"]


async def test_processes_list_filters_by_process_and_status(durable: Population) -> None:
    holds = await chronik(
        "processes", "list", "--process", "payment_hold", "--store-url", durable.url
    )
    assert holds.code == 0, holds.err
    for instance in ("expired", "waiting", "paid"):
        _row(holds.out, instance)
    assert "campaign_launch" not in holds.out and "basket_count" not in holds.out
    failed = await chronik("processes", "list", "--status", "failed", "--store-url", durable.url)
    assert failed.code == 0, failed.err
    assert _row(failed.out, "bad")[0] == "campaign_launch"
    assert "payment_hold" not in failed.out


async def test_processes_show_prints_the_instance_and_every_step_it_took(
    durable: Population,
) -> None:
    done = await chronik("processes", "show", "payment_hold/expired", "--store-url", durable.url)
    assert done.code == 0, done.err
    document, _, steps = done.out.partition("\n}\n")
    shown = json.loads(document + "\n}")
    assert shown["status"] == "cancelled" and shown["finished"] is True
    assert shown["steps"] == 2 and shown["timeouts"] == {}
    lines = [" ".join(line.split()) for line in steps.splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].startswith("v1 ") and lines[0].endswith(
        "OrderPlaced -> awaiting_payment commands: -"
    )
    assert lines[1].startswith("v2 ") and lines[1].endswith(
        "timeout:payment -> cancelled commands: processes_test.cancel_order"
    )


async def test_processes_show_of_an_unknown_instance_fails_with_one_line(
    durable: Population,
) -> None:
    done = await chronik("processes", "show", "payment_hold/nope", "--store-url", durable.url)
    assert done.code == 1
    assert "no instance 'payment_hold/nope'" in done.err
    malformed = await chronik("processes", "show", "payment_hold", "--store-url", durable.url)
    assert malformed.code == 2
    assert "PROCESS/INSTANCE" in malformed.err


async def test_processes_list_on_a_store_where_no_process_ran_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    wired = await open_wired(url)
    await wired.database.close()
    done = await chronik("processes", "list", "--store-url", url)
    assert done.code == 0, done.err
    assert "No process has run in this store yet." in done.out
