"""Wakes readers that wait for events beyond a position, within one process."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["HeadSignal"]


class HeadSignal:
    """The highest position this process knows was committed, and a way to wait past it.

    Writers in this process call ``advance`` after each commit; a listener for other
    processes' commits (PostgreSQL NOTIFY) calls ``poke``. Waiters wake and read the
    store again: the signal is a hint, the store is the truth.
    """

    def __init__(self) -> None:
        self.head = 0
        self._event = asyncio.Event()
        #: how many wait on ``_event``: with none, a poke has nobody to wake (every
        #: append pokes, so it must cost nothing then)
        self._waiting = 0

    def advance(self, position: int) -> None:
        if position > self.head:
            self.head = position
        if self._waiting:
            self.poke()

    def poke(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, after: int, max_wait: float) -> None:
        """Return when the head may be beyond ``after``, or after ``max_wait`` seconds."""
        if self.head > after:
            return
        event = self._event
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max_wait)
        finally:
            self._waiting -= 1
