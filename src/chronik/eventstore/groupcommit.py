"""Group commit: concurrent appends share one transaction, and so one fsync.

One fsync per commit caps a single writer at a few thousand commits a second. When
appends arrive while a commit is under way, they queue; the next commit carries
them all. Each append is still checked and applied on its own (the adapter runs
it in its own savepoint or checks it before writing): a conflict in one never
touches another.

Leadership passes from caller to caller, so an append that finds nobody
committing pays no extra task switch. With ``lanes`` above one, up to that many
batches are in flight at once (PostgreSQL: one writer connection each), so a batch
can be on its way to the server while the one before it commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from chronik.errors import StoreUnavailableError

__all__ = ["GroupCommitter"]

Req = TypeVar("Req")
Res = TypeVar("Res")


class _Lead:
    """Handed to a waiting caller: it commits the next batch, its own request first."""


_LEAD = _Lead()


def _others_ready() -> bool:
    """Whether other callbacks wait to run on this loop: if none does, yielding to it
    lets no append join the batch, and costs a turn of the loop (a poll included).

    asyncio has no public view of its ready queue; a loop without one (uvloop) is
    taken to have callbacks waiting, so it always yields. A cancelled handle there runs
    nothing (psycopg leaves one after each wait for the server): it does not count.
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is None or any(not handle.cancelled() for handle in ready)


class GroupCommitter(Generic[Req, Res]):
    """Runs ``commit`` on batches of concurrent requests, one batch at a time.

    ``commit`` gets the requests in arrival order and returns, for each, a result or
    the exception to raise to that caller. With ``gather`` the first caller yields to
    the event loop once before committing, if other callbacks are ready to run, so
    callers among them join its batch: needed when ``commit`` blocks (SQLite) and nobody
    could queue meanwhile, and where callers that a commit just answered would otherwise
    split into a batch of one and a batch of the rest.

    ``lanes``: how many batches may be committing at once; ``commit`` is then called
    concurrently, up to that many times (each call needs its own connection). A caller
    starts a new batch on a free lane unless another is gathering (it joins that one);
    when every lane is busy it queues for the next free one, and that batch carries
    everything queued.
    """

    def __init__(
        self,
        commit: Callable[[list[Req]], Awaitable[list[Res | BaseException]]],
        *,
        gather: bool = False,
        max_batch: int = 256,
        lanes: int = 1,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"a group committer needs at least one lane, got {lanes}")
        self._commit = commit
        self._gather = gather
        self._max_batch = max_batch
        self._lanes = lanes
        self._leaders = 0  # lanes taken: batches committing, or being gathered
        self._gathering = False  # a leader yields to the loop so that callers join it
        self._queue: list[tuple[Req, asyncio.Future[Res | _Lead]]] = []

    async def submit(self, request: Req) -> Res:
        if self._gathering or self._leaders >= self._lanes:
            future: asyncio.Future[Res | _Lead] = asyncio.get_running_loop().create_future()
            self._queue.append((request, future))
            try:
                outcome = await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled() and future.result() is _LEAD:
                    self._pass_on()  # we were handed the lead as we were cancelled
                raise
            if not isinstance(outcome, _Lead):
                return outcome
        else:
            self._leaders += 1
            if self._gather and _others_ready():
                self._gathering = True
                try:
                    await asyncio.sleep(0)
                except BaseException:
                    self._gathering = False
                    self._pass_on()
                    raise
                self._gathering = False
        return await self._lead(request)

    async def _lead(self, request: Req) -> Res:
        waiters: list[asyncio.Future[Res | _Lead]] = []
        requests = [request]
        while self._queue and len(requests) < self._max_batch:
            queued, future = self._queue.pop(0)
            if not future.done():
                requests.append(queued)
                waiters.append(future)
        # More than one batch waits and a lane is free: the next batch need not wait.
        while self._queue and self._leaders < self._lanes and self._promote():
            self._leaders += 1
        try:
            results = await self._commit(requests)
            if len(results) != len(requests):
                raise RuntimeError(
                    f"group commit returned {len(results)} results for {len(requests)} requests"
                )
        except BaseException as exc:
            failure = exc
            if isinstance(exc, asyncio.CancelledError):
                failure = StoreUnavailableError(
                    "the commit that carried this append was interrupted; it may or may not "
                    "have been written"
                )
            for future in waiters:
                if not future.done():
                    future.set_exception(failure)
            self._pass_on()
            raise
        for future, result in zip(waiters, results[1:], strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._pass_on()
        own = results[0]
        if isinstance(own, BaseException):
            raise own
        return own

    def _promote(self) -> bool:
        """Hand a lead to the first waiter still waiting; whether there was one."""
        while self._queue:
            _, future = self._queue.pop(0)
            if not future.done():
                future.set_result(_LEAD)
                return True
        return False

    def _pass_on(self) -> None:
        """Hand this lane to the first waiter still waiting, or free it."""
        if not self._promote():
            self._leaders -= 1
