"""GroupCommitter: concurrent requests share a commit, and no caller is left hanging."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from chronik.errors import StoreUnavailableError
from chronik.eventstore.groupcommit import GroupCommitter

TIMEOUT = 5


class FakeCommit:
    """A commit that records its batches and finishes when ``release`` is set.

    Each request ``n`` succeeds with ``10 * n`` unless it is in ``refuse`` (then its
    result is a ValueError). While ``crashes`` holds exceptions, each commit raises the
    next one instead of returning.
    """

    def __init__(self, *, released: bool = True) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if released:
            self.release.set()
        self.refuse: set[int] = set()
        self.crashes: list[BaseException] = []

    async def __call__(self, requests: list[int]) -> list[int | BaseException]:
        self.batches.append(list(requests))
        await self.release.wait()
        if self.crashes:
            raise self.crashes.pop(0)
        return [
            ValueError(f"request {n} refused") if n in self.refuse else 10 * n for n in requests
        ]

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


async def eventually(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a few hundred task switches at most)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def start(committer: GroupCommitter[int, int], *requests: int) -> list[asyncio.Task[int]]:
    return [asyncio.create_task(committer.submit(n)) for n in requests]


async def settle(tasks: list[asyncio.Task[int]]) -> list[int | BaseException]:
    """Every task's result or exception, failing (not hanging) if one never finishes."""
    done: Awaitable[list[int | BaseException]] = asyncio.gather(*tasks, return_exceptions=True)
    return await asyncio.wait_for(done, timeout=TIMEOUT)


class TestBatching:
    async def test_a_lone_request_commits_alone(self) -> None:
        fake = FakeCommit()
        committer = GroupCommitter(fake)
        assert await asyncio.wait_for(committer.submit(4), TIMEOUT) == 40
        assert fake.batches == [[4]]

    async def test_requests_that_arrive_during_a_commit_share_the_next_one(self) -> None:
        fake = FakeCommit(released=False)
        committer = GroupCommitter(fake)
        gathered = asyncio.gather(*(committer.submit(n) for n in range(6)))
        await eventually(lambda: len(fake.batches) == 1)
        fake.release.set()
        results = await asyncio.wait_for(gathered, TIMEOUT)
        assert results == [0, 10, 20, 30, 40, 50]
        assert fake.batches == [[0], [1, 2, 3, 4, 5]]

    async def test_requests_ready_together_commit_one_by_one_without_gather(self) -> None:
        # The fake commit never yields, so nobody can queue behind the first caller.
        fake = FakeCommit()
        committer = GroupCommitter(fake)
        await asyncio.wait_for(asyncio.gather(*(committer.submit(n) for n in range(4))), TIMEOUT)
        assert fake.sizes == [1, 1, 1, 1]

    async def test_with_gather_requests_that_are_ready_join_the_first_batch(self) -> None:
        fake = FakeCommit()
        committer = GroupCommitter(fake, gather=True)
        results = await asyncio.wait_for(
            asyncio.gather(*(committer.submit(n) for n in range(4))), TIMEOUT
        )
        assert results == [0, 10, 20, 30]
        assert fake.batches == [[0, 1, 2, 3]]

    async def test_a_batch_never_holds_more_than_max_batch_requests(self) -> None:
        fake = FakeCommit()
        committer = GroupCommitter(fake, gather=True, max_batch=2)
        results = await asyncio.wait_for(
            asyncio.gather(*(committer.submit(n) for n in range(5))), TIMEOUT
        )
        assert results == [0, 10, 20, 30, 40]
        assert fake.batches == [[0, 1], [2, 3], [4]]

    async def test_the_committer_is_reusable_once_idle(self) -> None:
        fake = FakeCommit()
        committer = GroupCommitter(fake, gather=True)
        await asyncio.wait_for(asyncio.gather(*(committer.submit(n) for n in range(3))), TIMEOUT)
        assert await asyncio.wait_for(committer.submit(7), TIMEOUT) == 70
        assert fake.batches == [[0, 1, 2], [7]]


class TestFailures:
    @pytest.mark.parametrize("refused", [0, 2])
    async def test_a_refused_request_raises_to_its_own_caller_only(self, refused: int) -> None:
        fake = FakeCommit()
        fake.refuse = {refused}
        committer = GroupCommitter(fake, gather=True)
        results = await settle(start(committer, 0, 1, 2, 3))
        assert fake.batches == [[0, 1, 2, 3]]
        for n, result in enumerate(results):
            if n == refused:
                assert isinstance(result, ValueError)
                assert str(result) == f"request {n} refused"
            else:
                assert result == 10 * n

    async def test_an_exception_from_commit_reaches_every_caller_of_the_batch(self) -> None:
        fake = FakeCommit()
        fake.crashes = [OSError("disk full")]
        committer = GroupCommitter(fake, gather=True)
        results = await settle(start(committer, 0, 1, 2))
        assert fake.batches == [[0, 1, 2]]
        assert all(isinstance(r, OSError) and str(r) == "disk full" for r in results)
        assert await asyncio.wait_for(committer.submit(5), TIMEOUT) == 50

    async def test_a_commit_failure_spares_requests_queued_for_the_next_batch(self) -> None:
        fake = FakeCommit(released=False)
        fake.crashes = [OSError("disk full")]
        committer = GroupCommitter(fake)
        first = start(committer, 0)
        await eventually(lambda: len(fake.batches) == 1)
        queued = start(committer, 1, 2)
        await eventually(lambda: len(committer._queue) == 2)  # both wait behind the commit
        fake.release.set()
        results = await settle(first + queued)
        assert isinstance(results[0], OSError)
        assert results[1:] == [10, 20]
        assert fake.batches == [[0], [1, 2]]


class TestCancellation:
    async def test_cancelling_a_queued_caller_does_not_stall_the_others(self) -> None:
        fake = FakeCommit(released=False)
        committer = GroupCommitter(fake)
        tasks = start(committer, 0, 1, 2, 3)
        await eventually(lambda: len(fake.batches) == 1)
        tasks[1].cancel()  # the caller that would have led the next batch
        tasks[2].cancel()
        fake.release.set()
        results = await settle(tasks)
        assert results[0] == 0 and results[3] == 30
        assert isinstance(results[1], asyncio.CancelledError)
        assert isinstance(results[2], asyncio.CancelledError)
        assert fake.batches == [[0], [3]]
        assert await asyncio.wait_for(committer.submit(4), TIMEOUT) == 40

    async def test_cancelling_a_caller_whose_request_is_being_committed_spares_the_rest(
        self,
    ) -> None:
        fake = FakeCommit(released=False)
        committer = GroupCommitter(fake, gather=True)
        tasks = start(committer, 0, 1, 2)
        await eventually(lambda: len(fake.batches) == 1)
        tasks[1].cancel()
        await asyncio.sleep(0)
        fake.release.set()
        results = await settle(tasks)
        assert (results[0], results[2]) == (0, 20)
        assert isinstance(results[1], asyncio.CancelledError)
        assert fake.batches == [[0, 1, 2]]
        assert await asyncio.wait_for(committer.submit(4), TIMEOUT) == 40

    async def test_a_leader_cancelled_during_commit_fails_its_batch_without_a_hang(
        self,
    ) -> None:
        fake = FakeCommit(released=False)
        committer = GroupCommitter(fake, gather=True)
        batch = start(committer, 0, 1, 2)
        await eventually(lambda: len(fake.batches) == 1)
        later = start(committer, 3)
        await eventually(lambda: len(committer._queue) == 1)  # 3 waits behind the commit
        batch[0].cancel()
        await eventually(lambda: len(fake.batches) == 2)  # 3 took over and commits
        fake.release.set()
        results = await settle(batch + later)
        assert isinstance(results[0], asyncio.CancelledError)
        for waiter in results[1:3]:
            assert isinstance(waiter, StoreUnavailableError)
            assert "may or may not have been written" in str(waiter)
        assert results[3] == 30
        assert fake.batches == [[0, 1, 2], [3]]
        assert await asyncio.wait_for(committer.submit(4), TIMEOUT) == 40

    async def test_a_gathering_leader_cancelled_before_committing_hands_on_the_lead(
        self,
    ) -> None:
        fake = FakeCommit()
        committer = GroupCommitter(fake, gather=True)
        tasks = start(committer, 0, 1, 2)
        tasks[0].cancel()  # cancelled in its one yield before the commit
        results = await settle(tasks)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [10, 20]
        assert fake.batches == [[1, 2]]


class TestLanes:
    async def test_a_request_arriving_during_a_commit_starts_a_batch_on_a_free_lane(
        self,
    ) -> None:
        fake = FakeCommit(released=False)
        committer = GroupCommitter(fake, gather=True, lanes=2)
        first = start(committer, 0)
        await eventually(lambda: len(fake.batches) == 1)
        second = start(committer, 1, 2)  # ready together: they share the second lane
        await eventually(lambda: len(fake.batches) == 2)
        assert fake.batches == [[0], [1, 2]]  # both in flight, neither released
        third = start(committer, 3)
        await eventually(lambda: len(committer._queue) == 1)  # every lane is busy: it waits
        assert len(fake.batches) == 2
        fake.release.set()
        assert await settle(first + second + third) == [0, 10, 20, 30]
        assert fake.batches == [[0], [1, 2], [3]]

    async def test_never_more_batches_commit_at_once_than_there_are_lanes(self) -> None:
        running = 0
        most = 0
        batches: list[list[int]] = []

        async def commit(requests: list[int]) -> list[int | BaseException]:
            nonlocal running, most
            running += 1
            most = max(most, running)
            batches.append(requests)
            for _ in range(3):
                await asyncio.sleep(0)
            running -= 1
            return [10 * n for n in requests]

        committer: GroupCommitter[int, int] = GroupCommitter(commit, gather=True, lanes=3)

        async def caller(n: int) -> list[int]:
            results = []
            for k in range(20):
                results.append(await committer.submit(100 * n + k))
                for _ in range(n % 3):
                    await asyncio.sleep(0)
            return results

        results = await asyncio.wait_for(asyncio.gather(*(caller(n) for n in range(12))), TIMEOUT)
        assert results == [[10 * (100 * n + k) for k in range(20)] for n in range(12)]
        assert most == 3
        assert sorted(r for batch in batches for r in batch) == sorted(
            100 * n + k for n in range(12) for k in range(20)
        )
        assert running == 0 and committer._leaders == 0

    async def test_callers_ready_together_share_one_batch_however_many_lanes_are_free(
        self,
    ) -> None:
        fake = FakeCommit()
        committer = GroupCommitter(fake, gather=True, lanes=4)
        results = await settle(start(committer, 0, 1, 2, 3))
        assert results == [0, 10, 20, 30]
        assert fake.batches == [[0, 1, 2, 3]]

    async def test_what_a_full_batch_leaves_behind_goes_on_the_next_free_lane(self) -> None:
        fake = FakeCommit(released=False)
        committer = GroupCommitter(fake, gather=True, max_batch=2, lanes=2)
        tasks = start(committer, 0, 1, 2, 3, 4)
        await eventually(lambda: len(fake.batches) == 2)
        assert fake.batches == [[0, 1], [2, 3]]
        fake.release.set()
        assert await settle(tasks) == [0, 10, 20, 30, 40]
        assert fake.batches == [[0, 1], [2, 3], [4]]

    async def test_a_failed_lane_is_freed_for_the_next_batch(self) -> None:
        fake = FakeCommit(released=False)
        fake.crashes = [OSError("disk full")]
        committer = GroupCommitter(fake, gather=True, lanes=2)
        failing = start(committer, 0)
        await eventually(lambda: len(fake.batches) == 1)
        fake.release.set()
        [result] = await settle(failing)
        assert isinstance(result, OSError)
        assert committer._leaders == 0
        assert await settle(start(committer, 1, 2)) == [10, 20]

    def test_a_committer_needs_a_lane(self) -> None:
        with pytest.raises(ValueError, match="at least one lane"):
            GroupCommitter(FakeCommit(), lanes=0)
