"""Per-stream lanes: a subscription's deliveries in parallel, each source stream in order.

A broker adapter fetches a batch of messages and puts each into the lane of its key
(the message's source stream, the CloudEvents ``subject``): the key's hash picks one of
``lanes`` lanes, and each lane handles its messages one at a time, in the order they
were put. Messages of one stream therefore take effect in their order; messages of
different streams may run side by side. At most ``capacity`` messages are held (put
and not yet done): ``put`` waits for room, so a slow consumer stops fetching instead
of queueing without bound (back-pressure).

A message whose handling keeps failing is retried inside its lane by the adapter (the
consumer dead-letters it after its retries), so it holds up its own lane only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec

__all__ = ["Lanes", "lane_key"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Subject(msgspec.Struct):
    subject: str = ""


_subject = msgspec.json.Decoder(_Subject)


def lane_key(body: bytes) -> str:
    """A message's ordering key: its envelope's ``subject`` (the source stream id).

    A body that is not an envelope gets the key "" (all such in one lane, in order); the
    consumer dead-letters it when its turn comes.
    """
    try:
        return _subject.decode(body).subject
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


class Lanes(Generic[T]):
    """``lanes`` sequential workers fed by key; ``handle`` runs each item, then ``done``.

    ``handle`` is expected not to raise (the adapters retry inside it); if it does, the
    lanes stop and ``put`` raises the error, so that the subscription fails visibly.
    """

    def __init__(
        self,
        lanes: int,
        capacity: int,
        handle: Callable[[T], Awaitable[None]],
        *,
        name: str = "lanes",
    ) -> None:
        if lanes < 1 or capacity < 1:
            raise ValueError(f"lanes ({lanes}) and capacity ({capacity}) must be at least 1")
        self.lanes = lanes
        self.capacity = capacity
        self._handle = handle
        self._queues: list[deque[T]] = [deque() for _ in range(lanes)]
        self._wakeups = [asyncio.Event() for _ in range(lanes)]
        self._room = asyncio.Condition()
        self._held = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._failure: BaseException | None = None
        self._tasks = [
            asyncio.create_task(self._lane(i), name=f"{name} lane {i}") for i in range(lanes)
        ]
        self.max_held = 0  # the most items held at once (tests look at it)

    @property
    def held(self) -> int:
        """Items put and not yet done."""
        return self._held

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the lanes (a handler raised), or None."""
        return self._failure

    @property
    def room(self) -> int:
        """How many more items may be put now without waiting."""
        return self.capacity - self._held

    def lane_of(self, key: str) -> int:
        return self.lane_for(key, self.lanes)

    @staticmethod
    def lane_for(key: str, lanes: int) -> int:
        """The lane of ``key`` among ``lanes``: every adapter picks lanes alike."""
        return zlib.crc32(key.encode()) % lanes

    async def wait_for_room(self) -> None:
        """Return once at least one item may be put."""
        async with self._room:
            await self._room.wait_for(lambda: self._held < self.capacity or self._failure)
        if self._failure is not None:
            raise self._failure

    async def put(self, key: str, item: T) -> None:
        """Hand ``item`` to its key's lane; waits while ``capacity`` items are held."""
        if self._failure is None and self._held >= self.capacity:
            await self.wait_for_room()
        if self._failure is not None:
            raise self._failure
        lane = self.lane_of(key)
        self._held += 1
        self.max_held = max(self.max_held, self._held)
        self._idle.clear()
        self._queues[lane].append(item)
        self._wakeups[lane].set()

    async def join(self) -> None:
        """Wait until every item put is done."""
        await self._idle.wait()
        if self._failure is not None:
            raise self._failure

    def pending(self) -> list[T]:
        """The items put and not started (for an adapter to give back on stop)."""
        return [item for queue in self._queues for item in queue]

    async def close(self) -> None:
        """Stop the lanes: items in hand are cancelled, queued ones dropped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._queues:
            queue.clear()

    async def _lane(self, index: int) -> None:
        queue, wakeup = self._queues[index], self._wakeups[index]
        while True:
            if not queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            item = queue[0]
            try:
                await self._handle(item)
            except Exception as exc:
                log.exception("a consumer lane failed; the subscription stops")
                self._failure = exc
                self._idle.set()
                async with self._room:
                    self._room.notify_all()
                return
            queue.popleft()
            self._held -= 1
            if self._held == 0:
                self._idle.set()
            if self._held == self.capacity - 1:
                async with self._room:
                    self._room.notify_all()
