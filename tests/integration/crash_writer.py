"""A writer for the crash tests: appends forever and prints each append once it returns.

Run as ``python crash_writer.py STORE_URL``. Four tasks append batches of three events
to new streams; a line ``stream position`` is printed (and flushed) only after the
append returned, that is, after it was committed.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from chronik.adapters import open_event_store
from chronik.eventstore import ExpectedVersion
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Withdrawn


async def main(url: str) -> None:
    store = await open_event_store(url, CONTRACT_TYPES)
    print("ready", flush=True)

    async def writer() -> None:
        while True:
            stream_id = f"crash-{uuid.uuid4()}"
            result = await store.append(
                stream_id,
                [Withdrawn(1), Withdrawn(2), Withdrawn(3)],
                expected=ExpectedVersion.NO_STREAM,
            )
            sys.stdout.write(f"{stream_id} {result.position}\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer() for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
