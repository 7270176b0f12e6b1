"""``h_e2e_split_p99_ms``: ``h_e2e_p99_ms`` with producer, relay and consumer in three processes.

As deployed: the producer (this worker) appends with the outbox hook installed; the relay is
``chronik relay`` on the producer's schema, a process of its own as in
deploy/local/run-distributed.sh; the consumer is a Python process of its own
(``python -m benchmarks.systems.chronik_messaging_split consume ...``) running chronik's
``Consumer`` whose handler appends one event per message to its store (schema
``<schema>_in``), the inbox mark in the same transaction. The load is h_e2e_p99_ms's: one
event per append at E2E_RATE/s for ``e2e_seconds``, open loop, after a warm-up of 50.

Latency of a message: the wall-clock moment the consumer's append returned (written by the
consumer process, one line per message) minus the moment the producer's append returned
(this process); one machine, one clock. As in h_e2e_p99_ms, the run waits for the last
effects half as long as the load was offered (at least 1 s); what has no effect by then
counts with its latency at that moment and the note says the percentiles are lower bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.common import E2E_RATE, Measurement, Size, Target, new_stream_id
from benchmarks.messaging import (
    RunNames,
    broker_run,
    describe_broker,
    language,
    public_item_class,
)
from benchmarks.systems.chronik_messaging import (
    E2E_MIN_SETTLE_S,
    E2E_WARMUP,
    E2E_WARMUP_WAIT_S,
    RECEIVED_TYPES,
    ItemReceived,
    _outbox,
    _url,
    e2e_measurement,
)
from benchmarks.systems.chronik_system import TYPES, _event
from chronik.adapters import open_broker, open_database
from chronik.eventstore import BaseEventStore, NewEvent
from chronik.eventstore.ids import uuid7
from chronik.messaging import Consumer, MessageContext

READY = "consumer ready"
START_WITHIN_S = 60.0


# ---------------------------------------------------------------------------------------
# The consumer process


async def _consume(store_url: str, broker_url: str, source: str, out: Path) -> None:
    names = RunNames(source)
    public_class = public_item_class(names)
    database = await open_database(store_url)
    receiver = database.event_store(RECEIVED_TYPES)
    lines: list[str] = []

    async def on_item(item: Any, context: MessageContext) -> None:
        await receiver.append(
            f"received-{context.subject}", [ItemReceived(context.message_id, item.amount)]
        )
        lines.append(f"{context.message_id} {time.time():.6f}\n")

    consumer = Consumer(
        names.consumer,
        receiver,
        language(public_class),
        {public_class: on_item},
        storage=database.messages(),
    )
    broker = await open_broker(broker_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await consumer.setup()
        await consumer.start(broker)
        print(READY, flush=True)
        await stop.wait()
    finally:
        await consumer.stop()
        await broker.close()
        await database.close()
        _write(out, "".join(lines))


def consume_main(argv: list[str]) -> int:
    store_url, broker_url, source, out = argv
    asyncio.run(_consume(store_url, broker_url, source, Path(out)))
    return 0


# ---------------------------------------------------------------------------------------
# The producer (the worker) and the run


class _Offered:
    """Appends on a steady schedule, each a task of its own (as h_e2e_p99_ms's)."""

    def __init__(self, store: BaseEventStore) -> None:
        self.store = store
        self.committed: dict[str, float] = {}
        self.max_late_s = 0.0

    async def _append(self, n: int) -> None:
        event_id = uuid7()
        await self.store.append(new_stream_id(), [NewEvent(_event(n), id=event_id)])
        self.committed[str(event_id)] = time.time()

    async def offer(self, count: int, rate: int, first: int = 0) -> float:
        interval = 1.0 / rate
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(count):
            due = start + i * interval
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                self.max_late_s = max(self.max_late_s, now - due)
            tasks.append(asyncio.create_task(self._append(first + i)))
        await asyncio.gather(*tasks)
        return start


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def _remove(work: Path) -> None:
    with contextlib.suppress(OSError):
        for file in work.iterdir():
            file.unlink()
        work.rmdir()


def _chronik() -> str:
    return str(Path(sys.executable).with_name("chronik"))


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")}
    return {**env, **extra}


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _wait_output(process: subprocess.Popen[bytes], log: Path, text: str) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while text not in _read(log):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(_read(log).splitlines()[-10:])
            raise RuntimeError(f"{process.args!r} did not say {text!r}: {tail}")
        await asyncio.sleep(0.05)


async def _effected(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    row = await (
        await conn.execute(
            sql.SQL("SELECT count(*) FROM {}.chronik_events").format(sql.Identifier(schema))
        )
    ).fetchone()
    return int(row[0]) if row else 0


async def _until(
    conn: psycopg.AsyncConnection[Any], schema: str, count: int, within: float
) -> None:
    deadline = time.monotonic() + within
    # Another process's commits: no event to wait on, so look.
    while await _effected(conn, schema) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _h_e2e_split(target: Target, size: Size) -> Measurement:
    count = E2E_RATE * size.e2e_seconds
    inbound = f"{target.postgres_schema}_in"
    work = Path(tempfile.mkdtemp(prefix=f"{target.postgres_schema}_"))
    async with broker_run(target) as names:
        server = await describe_broker(target)
        public_class = public_item_class(names)
        producing = await open_database(_url(target, target.postgres_schema))
        producer = producing.event_store(TYPES)
        # The consumer's tables exist before the first message can arrive.
        receiving = await open_database(_url(target, inbound))
        await receiving.close()
        relay_log, consumer_log = work / "relay.log", work / "consumer.log"
        effects = work / "effects.txt"
        processes: list[subprocess.Popen[bytes]] = []
        try:
            await _outbox(producer, producing.messages(), names, public_class)
            consumer = _spawn(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.systems.chronik_messaging_split",
                    "consume",
                    _url(target, inbound),
                    target.broker_url,
                    names.source,
                    str(effects),
                ],
                consumer_log,
                _env({}),
            )
            processes.append(consumer)
            await _wait_output(consumer, consumer_log, READY)
            relay = _spawn(
                [_chronik(), "relay", "--broker-url", target.broker_url],
                relay_log,
                _env({"CHRONIK_EVENT_STORE_URL": _url(target, target.postgres_schema)}),
            )
            processes.append(relay)
            await _wait_output(relay, relay_log, "relaying the outbox")

            async with await psycopg.AsyncConnection.connect(
                target.postgres_url, autocommit=True
            ) as conn:
                warm = _Offered(producer)
                await warm.offer(E2E_WARMUP, E2E_RATE)
                await _until(conn, inbound, E2E_WARMUP, E2E_WARMUP_WAIT_S)
                if await _effected(conn, inbound) < E2E_WARMUP:
                    raise RuntimeError("the warm-up was not effected in time")
                offered = _Offered(producer)
                started = await offered.offer(count, E2E_RATE, first=E2E_WARMUP)
                offered_s = time.perf_counter() - started
                settle_s = max(E2E_MIN_SETTLE_S, size.e2e_seconds / 2)
                await _until(conn, inbound, E2E_WARMUP + count, settle_s)
                cutoff = time.time()
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        finally:
            for process in reversed(processes):
                _stop(process)
            await producing.close()
        effected: dict[str, float] = {}
        for line in _read(effects).splitlines():
            message_id, at = line.split()
            effected.setdefault(message_id, float(at))
    _remove(work)

    done = {i: effected[i] for i in offered.committed if i in effected}
    if len(offered.committed) != count or not done:
        raise RuntimeError(f"{len(offered.committed)} appends, {len(done)} effected of {count}")
    first = min(offered.committed.values()) - 1.0 / E2E_RATE
    return e2e_measurement(
        offered,
        done,
        count,
        timing=(first, cutoff, offered_s, settle_s),
        where=f"in three processes: producer, `chronik relay` and consumer); {server}",
    )


def run(workload: str, target: Target, size: Size) -> Measurement:
    if workload == "h_e2e_split_p99_ms":
        return asyncio.run(_h_e2e_split(target, size))
    raise ValueError(f"not the split e2e workload: {workload!r}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "consume":
        sys.exit(consume_main(sys.argv[2:]))
    sys.exit("usage: python -m benchmarks.systems.chronik_messaging_split consume ...")
