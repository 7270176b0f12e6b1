"""A relay for the fault tests: runs only ``Relay(store, broker)`` and reports its progress.

Run as ``python messaging_relay_worker.py STORE_URL BROKER_URL BATCH``. It prints,
flushed, ``ready`` once store and broker are open, then ``STATE RELAYED`` each time
the relay's state or its count of published messages changes (the count moves only
after the outbox rows were marked published). It runs until killed, and stops by
itself if the process that started it goes away.
"""

from __future__ import annotations

import asyncio
import os
import sys

from messaging_harness import PRODUCER_TYPES

from chronik.adapters import open_broker, open_database
from chronik.messaging import Relay


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(store_url: str, broker_url: str, batch: int) -> None:
    parent = os.getppid()
    database = await open_database(store_url)
    broker = await open_broker(broker_url)
    relay = Relay(
        database.event_store(PRODUCER_TYPES),
        broker,
        storage=database.messages(),
        batch=batch,
        idle_wait=0.2,
        standby_wait=0.05,
        backoff=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    say("ready")
    reported = ("", -1)
    while os.getppid() == parent and not task.done():  # an orphan stops rather than run on
        now = (relay.state, relay.relayed)
        if now != reported:
            say(f"{now[0]} {now[1]}")
            reported = now
        await asyncio.sleep(0.002)
    stop.set()
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
