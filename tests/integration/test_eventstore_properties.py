"""Property: any sequence of appends and reads keeps versions contiguous and positions increasing.

Hypothesis draws sequences of appends (right, wrong, any or no-stream expectations,
batches of 1 to 4 events) over a few streams; a plain model predicts each outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronik.adapters import open_event_store
from chronik.errors import ConcurrencyError
from chronik.eventstore import BaseEventStore, ExpectedVersion
from chronik.testing.eventstore_contract import CONTRACT_TYPES, Withdrawn


@dataclass(frozen=True)
class Append:
    stream: int
    expect: str  # "right" | "wrong" | "any" | "no_stream"
    size: int
    read_from: int


appends = st.builds(
    Append,
    stream=st.integers(0, 3),
    expect=st.sampled_from(["right", "wrong", "any", "no_stream"]),
    size=st.integers(1, 4),
    read_from=st.integers(1, 12),
)


async def _check_sequence(store: BaseEventStore, ops: list[Append]) -> None:
    prefix = uuid.uuid4().hex[:8]
    versions = [0, 0, 0, 0]
    model: list[tuple[str, int, int]] = []  # (stream, version, amount) in global order
    start = await store.head_position()
    amount = 0
    for op in ops:
        sid = f"{prefix}-{op.stream}"
        current = versions[op.stream]
        expected: ExpectedVersion | int
        if op.expect == "right":
            expected, ok = current, True
        elif op.expect == "wrong":
            expected, ok = current + 1 + op.size, False
        elif op.expect == "any":
            expected, ok = ExpectedVersion.ANY, True
        else:
            expected, ok = ExpectedVersion.NO_STREAM, current == 0
        events = []
        for _ in range(op.size):
            amount += 1
            events.append(Withdrawn(amount))
        if ok:
            result = await store.append(sid, events, expected=expected)
            assert result.version == current + op.size
            for offset, e in enumerate(events, start=1):
                model.append((sid, current + offset, e.amount))
            versions[op.stream] = current + op.size
        else:
            with pytest.raises(ConcurrencyError) as caught:
                await store.append(sid, events, expected=expected)
            assert caught.value.actual == current
        stream = await store.read_stream(sid, op.read_from)
        assert [r.version for r in stream] == list(range(op.read_from, versions[op.stream] + 1))
    everything = await store.read_all(start, limit=10_000)
    assert [(r.stream_id, r.version, r.event) for r in everything] == [
        (s, v, Withdrawn(a)) for s, v, a in model
    ]
    positions = [r.position for r in everything]
    assert all(a < b for a, b in itertools.pairwise(positions))


Opener = Callable[[], Awaitable[BaseEventStore]]


def _run(opener: Opener, ops: list[Append]) -> None:
    async def main() -> None:
        store = await opener()
        try:
            await _check_sequence(store, ops)
        finally:
            await store.close()

    asyncio.run(main())


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(appends, max_size=25))
def test_memory_store_keeps_versions_contiguous_and_positions_increasing(ops: list[Append]) -> None:
    _run(lambda: open_event_store("memory://", CONTRACT_TYPES), ops)


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(appends, max_size=25))
def test_sqlite_store_keeps_versions_contiguous_and_positions_increasing(ops: list[Append]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        _run(lambda: open_event_store(f"sqlite:///{directory}/p.db", CONTRACT_TYPES), ops)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(appends, max_size=25))
def test_postgres_store_keeps_versions_contiguous_and_positions_increasing(
    postgres_url: str, ops: list[Append]
) -> None:
    schema = f"p_{uuid.uuid4().hex[:12]}"
    try:
        _run(lambda: open_event_store(f"{postgres_url}?schema={schema}", CONTRACT_TYPES), ops)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
