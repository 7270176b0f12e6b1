"""A consumer for the fault tests: runs only a ``Consumer`` and reports its progress.

Run as ``python messaging_consumer_worker.py STORE_URL BROKER_URL CONTEXT NAME LANES BATCH``:
the consuming context of ``messaging_harness`` (one ``Seen`` event per message, in the
stream ``seen-<source stream>``) subscribed as ``NAME`` to ``CONTEXT``'s numbered
messages, with ``LANES`` lanes and fetching ``BATCH`` at a time. It prints, flushed,
``ready`` once subscribed, then ``handled N`` each time its count of handled messages
changes. It runs until killed, and stops by itself if the process that started it goes
away.
"""

from __future__ import annotations

import asyncio
import os
import sys

from messaging_harness import CONSUMER_TYPES, ConsumingContext, public_numbered

from chronik.adapters import open_broker, open_database
from chronik.messaging import PublishedLanguage


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(
    store_url: str, broker_url: str, context: str, name: str, lanes: int, batch: int
) -> None:
    parent = os.getppid()
    message = public_numbered(context)
    database = await open_database(store_url)
    store = database.event_store(CONSUMER_TYPES, closes_database=True)
    consuming = ConsumingContext(
        store, PublishedLanguage([message]), message, name, storage=database.messages()
    )
    consuming.consumer.lanes = lanes
    consuming.consumer.batch = batch
    broker = await open_broker(broker_url)
    await consuming.consumer.start(broker)
    say("ready")
    reported = -1
    while os.getppid() == parent:  # an orphan stops rather than run on
        if consuming.consumer.handled != reported:
            reported = consuming.consumer.handled
            say(f"handled {reported}")
        await asyncio.sleep(0.005)
    await consuming.consumer.stop()
    await broker.close()
    await store.close()


if __name__ == "__main__":
    url, broker_url, context, name, lanes, batch = sys.argv[1:7]
    asyncio.run(main(url, broker_url, context, name, int(lanes), int(batch)))
