"""The relay: publishes the outbox to the broker, in order, at least once.

It reads unpublished outbox rows in position order, publishes them as one pipelined
batch, and marks rows published only once the broker acked them. Within a batch, a
stream's messages after one that failed are not marked either, so they go again after
it and a stream's order holds (the broker drops the ones it already has, by id). While
the broker is down the backlog stays in the outbox; the relay backs off and drains it
when the broker returns. One relay per database (see the storage's leadership).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from chronik.errors import EventStoreError
from chronik.eventstore.base import BaseEventStore
from chronik.instruments import NO_INSTRUMENTS, Instruments
from chronik.messaging.port import Broker, MessageStorage, OutboxRow, OutgoingMessage

__all__ = ["Relay", "RelayStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What a relay is doing, for readiness and metrics."""

    state: str  # starting | standby | relaying | idle | broker_down | stopped
    relayed: int  # messages this relay published since it started
    rate: float  # messages per second over the last measured interval
    error: str | None


class Relay:
    """Publishes the outbox of ``storage`` (the message storage of ``store``'s database)."""

    def __init__(
        self,
        store: BaseEventStore,
        broker: Broker,
        *,
        storage: MessageStorage,
        batch: int = 256,
        idle_wait: float = 1.0,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        standby_wait: float = 2.0,
        retention: float = 3600.0,
        instruments: Instruments = NO_INSTRUMENTS,
    ) -> None:
        self.store = store
        self.broker = broker
        self.storage = storage
        self.batch = batch
        self.idle_wait = idle_wait
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.standby_wait = standby_wait
        self.retention = retention
        self.instruments = instruments
        self.state = "starting"
        self.relayed = 0
        self.error: str | None = None
        self._rate = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._last_purge = 0.0

    def status(self) -> RelayStatus:
        return RelayStatus(self.state, self.relayed, self._rate, self.error)

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.backoff
        while not stop.is_set():
            try:
                async with self.storage.relay_leadership() as leading:
                    if not leading:
                        self.state = "standby"
                        await _sleep(stop, self.standby_wait)
                        continue
                    await self._relay(stop)
                    delay = self.backoff
            except EventStoreError as exc:
                self.state, self.error = "error", str(exc)
                log.warning("relay interrupted", extra={"error": str(exc), "retry_in": delay})
                await _sleep(stop, delay)
                delay = min(delay * 2, self.max_backoff)
        self.state = "stopped"

    async def _relay(self, stop: asyncio.Event) -> None:
        """Publish batch after batch; a batch's database work overlaps the next's publish.

        While batch N is on the wire, batch N's successor is read and batch N-1 is
        marked published: the relay waits on the broker or the database, not both in
        turn. Outbox rows commit in position order (the append's lock is held to its
        commit), so reading on past the last position read skips nothing; after a
        failure or when idle the relay reads from the oldest unpublished row again.
        """
        delay = self.backoff
        marking: asyncio.Task[None] | None = None
        reading: asyncio.Task[list[OutboxRow]] | None = None
        try:
            while not stop.is_set():
                head = await self.store.head_position()
                rows = await (reading or self.storage.pending(self.batch))
                reading = None
                if not rows:
                    await _finish(marking)
                    marking = None
                    self.state = "idle"
                    self._measure()
                    await self._purge()
                    await self.store.wait_for_events(head, self.idle_wait)
                    continue
                self.state = "relaying"
                reading = asyncio.create_task(self.storage.pending(self.batch, rows[-1].position))
                started = time.perf_counter()
                published, failure = await self._publish(rows)
                self.instruments.relay_publish(time.perf_counter() - started, len(rows))
                await _finish(marking)
                marking = None
                if published:
                    marking = asyncio.create_task(self._mark(published))
                if failure is not None:
                    await _drop(reading)
                    reading = None
                    await _finish(marking)
                    marking = None
                    self.state, self.error = "broker_down", f"{type(failure).__name__}: {failure}"
                    log.warning(
                        "relay's publish refused",
                        extra={"error": self.error, "retry_in": delay, "messages": len(rows)},
                    )
                    await _sleep(stop, delay)
                    delay = min(delay * 2, self.max_backoff)
                else:
                    delay = self.backoff
                    self.error = None
            await _finish(marking)
        finally:
            await _drop(reading)
            if marking is not None:
                marking.cancel()
                with contextlib.suppress(BaseException):
                    await marking

    async def _mark(self, positions: list[int]) -> None:
        await self.storage.mark_published(positions)
        self.relayed += len(positions)
        self._measure()

    async def _publish(self, rows: list[OutboxRow]) -> tuple[list[int], BaseException | None]:
        messages = [OutgoingMessage(r.message_id, r.type, r.stream_id, r.body) for r in rows]
        try:
            outcomes = await self.broker.publish(messages)
        except Exception as exc:  # the broker's client gave up on the whole batch
            return [], exc
        blocked: set[str] = set()
        published: list[int] = []
        failure: BaseException | None = None
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome is not None:
                blocked.add(row.stream_id)
                failure = failure or outcome
            elif row.stream_id not in blocked:
                published.append(row.position)
        return published, failure

    def _measure(self) -> None:
        now = time.monotonic()
        since, count = self._rate_mark
        if now - since >= 1.0:
            self._rate = (self.relayed - count) / (now - since)
            self._rate_mark = (now, self.relayed)

    async def _purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge > 60:
            self._last_purge = now
            await self.storage.purge_published(self.retention)


async def _finish(task: asyncio.Task[None] | None) -> None:
    """Wait for ``task`` (its error, if any, is raised here)."""
    if task is not None:
        await task


async def _drop(task: asyncio.Task[list[OutboxRow]] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
