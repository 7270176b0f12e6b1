"""kill -9 of a worker waiting on durable timeouts: after a restart each fires once, on time.

A real subprocess (``processes_timeout_worker.py``) runs ``PaymentHold`` with a
``FileClock`` kept in the test's directory; the test moves the virtual time, kills the
worker with SIGKILL and starts another. A timeout must not fire before the virtual
time reaches it, must fire once it has (in the worker started after the kill), and
must fire once only: one ``timeout:payment`` step, one ``CancelOrder`` effect.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from processes_domain import (
    HOLD,
    T0,
    OrderCancelled,
    OrderPlaced,
    PaymentHold,
    PaymentReceived,
    Wired,
    open_wired,
    order_stream,
    steps,
    stream_events,
    wait_until,
)

from chronik.eventstore import BaseEventStore
from chronik.processes import FileClock, Processes

WORKER = Path(__file__).with_name("processes_timeout_worker.py")
READY_WITHIN = 30.0
#: how long a worker gets to show what it would do: ten ticks of its 50 ms timer
TICKS = 0.5

pytestmark = pytest.mark.slow


def set_clock(path: Path, when: datetime) -> None:
    """Move the shared virtual time, atomically: the worker never reads half a timestamp.

    (``FileClock.set`` truncates, then writes: see test_process_clocks.py.)
    """
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(when.isoformat())
    os.replace(temporary, path)


class Worker:
    """One run of the worker subprocess, started and waited for until it is ready."""

    def __init__(self, url: str, clock: Path, log: Path) -> None:
        self.log = log
        with log.open("a") as err:
            self.child = subprocess.Popen(
                [sys.executable, str(WORKER), url, str(clock)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.child.stdout is not None
        ready, _, _ = select.select([self.child.stdout], [], [], READY_WITHIN)
        line = self.child.stdout.readline() if ready else ""
        if line != "ready\n":
            self.child.kill()
            self.child.wait(10)
            raise AssertionError(f"the worker did not start: {line!r}\n{log.read_text()}")

    def kill(self) -> None:
        if self.child.poll() is not None:
            raise AssertionError(f"the worker died on its own:\n{self.log.read_text()}")
        os.kill(self.child.pid, signal.SIGKILL)
        self.child.wait(10)
        assert self.child.stdout is not None
        self.child.stdout.close()
        assert self.child.returncode == -signal.SIGKILL


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/processes.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("pg_schema")
    return f"{postgres_url}?schema={schema}"


@pytest.fixture
async def wired(url: str) -> AsyncIterator[Wired]:
    wired = await open_wired(url)
    yield wired
    await wired.database.close()


@pytest.fixture
def store(wired: Wired) -> BaseEventStore:
    return wired.store


async def _kinds(store: BaseEventStore, instance: str) -> list[str]:
    return [s.trigger_type for s in await steps(store, PaymentHold(), instance)]


async def _cancellations(store: BaseEventStore, order_id: str) -> int:
    events = await stream_events(store, order_stream(order_id))
    return sum(isinstance(e, OrderCancelled) for e in events)


async def _status_is(view: Processes, instance: str, status: str) -> bool:
    found = await view.instance(PaymentHold.name, instance)
    return found is not None and found.status == status


async def test_a_timeout_awaited_across_a_kill_fires_once_after_the_restart_when_due(
    wired: Wired, url: str, store: BaseEventStore, tmp_path: Path
) -> None:
    clock, log = tmp_path / "clock", tmp_path / "worker.log"
    set_clock(clock, T0)
    first = Worker(url, clock, log)
    view = wired.processes([PaymentHold()], {}, clock=FileClock(clock))
    await view.setup()  # reads the index the worker keeps
    await store.append(order_stream("late"), [OrderPlaced("late")])
    await store.append(order_stream("paid"), [OrderPlaced("paid")])
    for order in ("late", "paid"):
        await wait_until(functools.partial(_status_is, view, order, "awaiting_payment"))
    due = T0 + HOLD

    set_clock(clock, due - timedelta(seconds=1))
    await store.append(order_stream("paid"), [PaymentReceived("paid")])
    await wait_until(lambda: _status_is(view, "paid", "confirmed"))
    await asyncio.sleep(TICKS)
    assert await _kinds(store, "late") == ["OrderPlaced"], "fired before it was due"
    first.kill()

    second = Worker(url, clock, log)
    await asyncio.sleep(TICKS)
    assert await _kinds(store, "late") == ["OrderPlaced"], "fired after the restart, too early"
    set_clock(clock, due + timedelta(seconds=1))
    await wait_until(lambda: _status_is(view, "late", "cancelled"))
    await wait_until(lambda: _has_cancellation(store, "late"))
    await asyncio.sleep(TICKS)
    second.kill()

    third = Worker(url, clock, log)  # a fired timeout is not fired again by the next one
    await asyncio.sleep(TICKS)
    third.kill()

    late = await steps(store, PaymentHold(), "late")
    assert [s.trigger_type for s in late] == ["OrderPlaced", "timeout:payment"]
    assert late[1].at == due + timedelta(seconds=1)
    assert late[1].commands and late[1].commands[0]["type"] == "processes_test.cancel_order"
    assert await _kinds(store, "paid") == ["OrderPlaced", "PaymentReceived"]
    assert await _cancellations(store, "late") == 1
    assert await _cancellations(store, "paid") == 0
    pending = await view.index.read_models.find("process_index", "timeouts")
    assert pending == []


async def _has_cancellation(store: BaseEventStore, order_id: str) -> bool:
    return await _cancellations(store, order_id) > 0


async def test_killing_the_worker_while_timeouts_fall_due_fires_each_exactly_once(
    wired: Wired, url: str, store: BaseEventStore, tmp_path: Path
) -> None:
    clock, log = tmp_path / "clock", tmp_path / "worker.log"
    rng = random.Random(7)
    now = T0
    set_clock(clock, now)
    worker = Worker(url, clock, log)
    view = wired.processes([PaymentHold()], {}, clock=FileClock(clock))
    await view.setup()
    orders: list[str] = []
    for round_ in range(3):
        batch = [f"r{round_}-{i}" for i in range(6)]
        orders += batch
        await asyncio.gather(*(store.append(order_stream(o), [OrderPlaced(o)]) for o in batch))
        for order in batch:
            await wait_until(functools.partial(_status_is, view, order, "awaiting_payment"))
        now += HOLD + timedelta(minutes=1)
        set_clock(clock, now)
        await asyncio.sleep(rng.uniform(0.0, 0.15))  # land the kill before, in or after firing
        worker.kill()
        worker = Worker(url, clock, log)
        for order in batch:
            await wait_until(functools.partial(_has_cancellation, store, order))
    await asyncio.sleep(TICKS)
    worker.kill()

    for order in orders:
        assert await _kinds(store, order) == ["OrderPlaced", "timeout:payment"], order
        assert await _cancellations(store, order) == 1, order
