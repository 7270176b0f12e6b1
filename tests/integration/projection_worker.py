"""A projection runner for the fault tests: runs the engine and reports each checkpoint move.

Run as ``python projection_worker.py STORE_URL PAGE_SIZE``. It starts a
``ProjectionEngine`` with the contract's ``Balances`` projection and prints, flushed:

- ``standby`` once if another runner holds the projection,
- ``leading N`` when it leads, N being the checkpoint it starts from,
- ``checkpoint N`` each time the checkpoint moves (after the page's commit).

It runs until killed, and exits by itself if the process that started it goes away.
"""

from __future__ import annotations

import asyncio
import os
import sys

from chronik.adapters import open_database
from chronik.projections import ProjectionEngine
from chronik.testing.eventstore_contract import CONTRACT_TYPES
from chronik.testing.projection_contract import Balances

WAITING = ("starting", "standby")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(url: str, page_size: int) -> None:
    parent = os.getppid()
    database = await open_database(url)
    engine = ProjectionEngine(
        database.event_store(CONTRACT_TYPES),
        [Balances()],
        backend=database.projections(),
        page_size=page_size,
        idle_wait=0.2,
        retry_backoff=0.01,
        standby_wait=0.2,
    )
    runner = engine.runners["balances"]
    await engine.start()
    said_standby = False
    last: int | None = None
    while os.getppid() == parent:  # an orphan stops rather than run forever
        if runner.state in WAITING:
            if runner.state == "standby" and not said_standby:
                say("standby")
                said_standby = True
            await asyncio.sleep(0.005)
            continue
        if last is None:
            # Set from the stored row before the state leaves "starting": committed.
            last = runner.checkpoint
            say(f"leading {last}")
        await runner.wait_until(last + 1, 0.05)
        if runner.checkpoint != last:
            last = runner.checkpoint
            say(f"checkpoint {last}")
    await engine.stop()
    await database.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
