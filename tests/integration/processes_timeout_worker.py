"""A worker for the timeout crash tests: runs ``PaymentHold`` on a store until it is killed.

Run as ``python processes_timeout_worker.py STORE_URL CLOCK_FILE``. The processes keep
virtual time in ``CLOCK_FILE`` (a ``FileClock`` the test moves), poll every 50 ms, and
cancel an unpaid order by appending ``OrderCancelled`` to its stream. ``ready`` is
printed (and flushed) once the processes are set up, just before they start running.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from processes_domain import CancelOrder, PaymentHold, cancel_order_by_appending, open_wired

from chronik.processes import FileClock


async def main(url: str, clock_file: Path) -> None:
    wired = await open_wired(url)
    store = wired.store
    processes = wired.processes(
        [PaymentHold()],
        {CancelOrder: cancel_order_by_appending(store)},
        clock=FileClock(clock_file),
        idle_wait=0.05,
        timer_wait=0.05,
    )
    await processes.setup()
    print("ready", flush=True)
    await processes.run(asyncio.Event())  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
