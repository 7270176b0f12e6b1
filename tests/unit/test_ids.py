"""uuid7: RFC 9562 version 7 ids that sort by the time they were made in."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

from chronik.eventstore import ids
from chronik.eventstore.ids import uuid7, uuid7s, uuid_from_bytes

START_MS = 1_700_000_000_000


def millis_of(value: uuid.UUID) -> int:
    """The Unix milliseconds in the first 48 bits."""
    return value.int >> 80


class Clock:
    """A settable clock in Unix milliseconds, read by uuid7 in place of the real one."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def time_ns(self) -> int:
        return self.ms * 1_000_000 + 999_999


@pytest.fixture
def fresh_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """uuid7 as in a new process: no earlier id to stay above (restored afterwards)."""
    monkeypatch.setattr(ids, "_last", [0, 0])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, fresh_ids: None) -> Clock:
    fake = Clock(START_MS)
    monkeypatch.setattr(time, "time_ns", fake.time_ns)  # ids reads time.time_ns per call
    return fake


def test_it_is_a_version_7_uuid_with_the_rfc_variant() -> None:
    for value in [uuid7(), *uuid7s(100)]:
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_it_is_an_ordinary_uuid_equal_to_the_same_value_built_by_uuid() -> None:
    value = uuid7()
    assert value == uuid.UUID(str(value))
    assert hash(value) == hash(uuid.UUID(int=value.int))


@pytest.mark.usefixtures("fresh_ids")
def test_it_embeds_the_current_unix_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= millis_of(value) <= after


def test_it_embeds_the_millisecond_of_the_clock_it_reads(clock: Clock) -> None:
    assert millis_of(uuid7()) == START_MS


def test_ids_made_in_the_same_millisecond_still_increase(clock: Clock) -> None:
    made = [uuid7() for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == 1000
    assert {millis_of(v) for v in made} == {START_MS}


def test_ids_made_in_a_later_millisecond_sort_after_earlier_ones(clock: Clock) -> None:
    batches = []
    for step in range(1, 51):
        clock.ms = START_MS + step
        batches.append(uuid7s(20))
    for earlier, later in itertools.pairwise(batches):
        assert max(earlier) < min(later)
        assert max(map(str, earlier)) < min(map(str, later))  # as text too


def test_ids_made_later_on_the_real_clock_sort_after_earlier_ones() -> None:
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    assert first < second
    assert millis_of(first) < millis_of(second)


def test_a_batch_is_strictly_increasing_and_above_every_earlier_id(clock: Clock) -> None:
    earlier = uuid7()
    batch = uuid7s(50)
    assert len(batch) == 50
    assert [earlier, *batch] == sorted({earlier, *batch})


def test_more_ids_than_a_millisecond_holds_borrow_the_next_millisecond(clock: Clock) -> None:
    batch = uuid7s(4097)
    assert batch == sorted(set(batch))
    assert millis_of(batch[4095]) == START_MS
    assert millis_of(batch[4096]) == START_MS + 1


def test_ids_keep_increasing_when_the_clock_goes_back(clock: Clock) -> None:
    before = uuid7()
    clock.ms -= 1000
    after = uuid7()
    assert before < after


def test_uuid_from_bytes_reads_sixteen_big_endian_bytes() -> None:
    value = uuid7()
    assert uuid_from_bytes(value.bytes) == value
    with pytest.raises(ValueError, match="16 bytes, got 15"):
        uuid_from_bytes(value.bytes[:15])


def test_uuids_from_bytes_reads_a_page_and_names_a_value_that_is_not_an_id() -> None:
    values = uuid7s(3)
    assert ids.uuids_from_bytes([v.bytes for v in values]) == values
    with pytest.raises(ValueError, match="not a UUID"):
        ids.uuids_from_bytes([values[0].bytes, b"short"])


def test_a_forked_child_does_not_repeat_the_random_bits_its_parent_uses_next() -> None:
    import os

    uuid7s(1)  # the parent now holds unused random bits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, uuid7s(1)[0].bytes)
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    parent = uuid7s(1)[0].bytes
    # The last 8 bytes: variant and the 62 random bits (the clock part may match).
    assert child[8:] != parent[8:]
