"""Per-stream lanes: each key in order, keys side by side, a bound on what is held."""

from __future__ import annotations

import asyncio

import pytest

from chronik.errors import ConfigurationError
from chronik.messaging.envelope import encode_envelope, envelope
from chronik.messaging.lanes import Lanes, lane_key

PATIENCE = 30.0


async def until(check: object, what: str) -> None:
    async def poll() -> None:
        while not check():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), PATIENCE)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def keys_in_two_lanes(lanes: int) -> tuple[str, str]:
    other = next(f"s-{i}" for i in range(1, 1000) if Lanes.lane_for(f"s-{i}", lanes) != 0)
    first = next(f"s-{i}" for i in range(1000) if Lanes.lane_for(f"s-{i}", lanes) == 0)
    return first, other


async def test_each_key_runs_in_order_and_keys_run_side_by_side() -> None:
    done: list[tuple[str, int]] = []
    running = 0
    most = 0

    async def handle(item: tuple[str, int]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        running -= 1
        done.append(item)

    lanes: Lanes[tuple[str, int]] = Lanes(4, 1000, handle)
    try:
        items = [(f"s-{i % 10}", i // 10) for i in range(200)]
        for key, n in items:
            await lanes.put(key, (key, n))
        await asyncio.wait_for(lanes.join(), PATIENCE)
    finally:
        await lanes.close()
    assert sorted(done) == sorted(items)
    for key in {k for k, _ in items}:
        assert [n for k, n in done if k == key] == list(range(20))
    assert 1 < most <= 4


async def test_a_blocked_key_blocks_only_its_lane() -> None:
    slow, fast = keys_in_two_lanes(2)
    gate = asyncio.Event()
    done: list[str] = []

    async def handle(item: str) -> None:
        if item == "slow-1":
            await gate.wait()
        done.append(item)

    lanes: Lanes[str] = Lanes(2, 100, handle)
    try:
        await lanes.put(slow, "slow-1")
        await lanes.put(slow, "slow-2")
        for i in range(5):
            await lanes.put(fast, f"fast-{i}")
        await until(lambda: len(done) == 5, "the other lane's items")
        assert done == [f"fast-{i}" for i in range(5)]
        assert lanes.pending() == ["slow-1", "slow-2"]
        gate.set()
        await asyncio.wait_for(lanes.join(), PATIENCE)
        assert done[5:] == ["slow-1", "slow-2"]
    finally:
        await lanes.close()


async def test_put_waits_while_capacity_items_are_held() -> None:
    gate = asyncio.Event()

    async def handle(item: int) -> None:
        await gate.wait()

    lanes: Lanes[int] = Lanes(3, 5, handle)
    try:
        for i in range(5):
            await lanes.put(f"s-{i}", i)
        assert lanes.held == 5 and lanes.room == 0
        sixth = asyncio.create_task(lanes.put("s-6", 6))
        await asyncio.sleep(0.05)
        assert not sixth.done(), "put did not wait for room"
        gate.set()
        await asyncio.wait_for(sixth, PATIENCE)
        await asyncio.wait_for(lanes.join(), PATIENCE)
        assert lanes.max_held == 5
    finally:
        await lanes.close()


async def test_a_handler_that_raises_stops_the_lanes_and_put_says_why() -> None:
    async def handle(item: int) -> None:
        raise RuntimeError("broken lane")

    lanes: Lanes[int] = Lanes(1, 2, handle)
    try:
        await lanes.put("s", 1)
        with pytest.raises(RuntimeError, match="broken lane"):
            await asyncio.wait_for(lanes.join(), PATIENCE)
        with pytest.raises(RuntimeError, match="broken lane"):
            await lanes.put("s", 2)
        # What a consumer looks at to unsubscribe and subscribe again.
        assert isinstance(lanes.failure, RuntimeError)
    finally:
        await lanes.close()


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="lanes"):
        Lanes(0, 1, None)  # type: ignore[arg-type]


def test_the_lane_key_is_the_envelopes_subject() -> None:
    from datetime import UTC, datetime

    body = encode_envelope(
        envelope(
            id="1",
            source="bank",
            type="bank.x.v1",
            subject="acc-7",
            time=datetime.now(UTC),
            data={},
        )
    )
    assert lane_key(body) == "acc-7"
    assert lane_key(b"not json") == ""


async def test_a_consumer_refuses_lanes_and_batches_out_of_range() -> None:
    from chronik import EventTypes
    from chronik.adapters import open_database
    from chronik.messaging import Consumer, PublishedLanguage

    database = await open_database("memory://")
    store = database.event_store(EventTypes([]))
    for options, what in (({"lanes": 0}, "lanes"), ({"batch": 0}, "batch")):
        with pytest.raises(ConfigurationError, match=what):
            Consumer(
                "ledger",
                store,
                PublishedLanguage([]),
                {},
                storage=database.messages(),
                **options,  # type: ignore[arg-type]
            )
    await database.close()
