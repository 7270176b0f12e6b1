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

from chronik import tracing
from chronik.eventstore.base import BaseEventStore
from chronik.instruments import NO_INSTRUMENTS, Instruments
from chronik.messaging.envelope import trace_of, with_trace
from chronik.messaging.port import Broker, MessageStorage, OutboxRow, OutgoingMessage
from chronik.worker import Backoff, Worker, reason

__all__ = ["Relay", "RelayStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What a relay is doing, for readiness and metrics."""

    state: str  # starting | standby | relaying | idle | broker_down | backing_off | stopped
    relayed: int  # messages this relay published since it started
    rate: float  # messages per second over the last measured interval
    error: str | None


class Relay(Worker):
    """Publishes the outbox of ``storage`` (the message storage of ``store``'s database).

    A ``chronik.worker.Worker`` under the lease ``relay``: one relay per database leads.
    """

    kind = "relay"
    logger = log
    catching_up_state = "relaying"
    running_state = "idle"

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
        super().__init__(
            "relay",
            lease=lambda: storage.lease("relay"),
            backoff=backoff,
            max_backoff=max_backoff,
            standby_wait=standby_wait,
            idle_wait=idle_wait,
        )
        self.store = store
        self.broker = broker
        self.storage = storage
        self.batch = batch
        self.retention = retention
        self.instruments = instruments
        self.relayed = 0
        self._rate = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._last_purge = 0.0
        #: the broker's own backoff: a refused batch is tried again without letting go
        #: of the leadership
        self._refused = Backoff(backoff, max_backoff)
        self._head = 0
        self._marking: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[list[OutboxRow]] | None = None

    def status(self) -> RelayStatus:
        return RelayStatus(self.state, self.relayed, self._rate, self.error)

    async def step(self) -> bool:
        """Publish one batch; its database work overlaps the next batch's publish.

        While batch N is on the wire, batch N's successor is read and batch N-1 is
        marked published: the relay waits on the broker or the database, not both in
        turn. Outbox rows commit in position order (the append's lock is held to its
        commit), so reading on past the last position read skips nothing; after a
        failure or when idle the relay reads from the oldest unpublished row again.
        """
        self._head = await self.store.head_position()
        rows = await (self._reading or self.storage.pending(self.batch))
        self._reading = None
        if not rows:
            await _finish(self._marking)
            self._marking = None
            self._measure()
            await self._purge()
            return False
        self.state = "relaying"
        self._reading = asyncio.create_task(self.storage.pending(self.batch, rows[-1].position))
        started = time.perf_counter()
        published, failure = await self._publish(rows)
        self.instruments.relay_publish(time.perf_counter() - started, len(rows))
        await _finish(self._marking)
        self._marking = None
        if published:
            self._marking = asyncio.create_task(self._mark(published))
        if failure is not None:
            await _drop(self._reading)
            self._reading = None
            await _finish(self._marking)
            self._marking = None
            delay = self._refused.failed()
            self.state, self.error = "broker_down", reason(failure)
            log.warning(
                "relay's publish refused",
                extra={"error": self.error, "retry_in": delay, "messages": len(rows)},
            )
            await self.pause(delay)
        else:
            self._refused.reset()
            self.error = None
        return True

    async def idle(self, seconds: float) -> None:
        await self.store.wait_for_events(self._head, self.idle_wait)

    async def end(self) -> None:
        """Stopped: mark what the broker acked; failed or deposed: drop the work in hand."""
        await _drop(self._reading)
        self._reading = None
        marking, self._marking = self._marking, None
        if marking is None:
            return
        if self._stop.is_set():
            with contextlib.suppress(Exception):
                await marking
            return
        marking.cancel()
        with contextlib.suppress(BaseException):
            await marking

    async def _mark(self, positions: list[int]) -> None:
        await self.storage.mark_published(positions)
        self.relayed += len(positions)
        self._measure()

    async def _publish(self, rows: list[OutboxRow]) -> tuple[list[int], BaseException | None]:
        messages = [OutgoingMessage(r.message_id, r.type, r.stream_id, r.body) for r in rows]
        # A producer span per message, whose context replaces the append's in the body.
        traced = tracing.publishing(self.broker, messages, trace_of, with_trace)
        if traced.bodies is not None:
            messages = [
                OutgoingMessage(m.id, m.type, m.key, body)
                for m, body in zip(messages, traced.bodies, strict=True)
            ]
        try:
            outcomes = await self.broker.publish(messages)
        except Exception as exc:  # the broker's client gave up on the whole batch
            traced.end(exc)
            return [], exc
        traced.end(outcomes)
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
