"""What the parts report to their instruments, and the log fields they pass, without servers."""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path

import chronik
from chronik.domain import Aggregate, applies, event
from chronik.eventstore import EventTypes, Repository
from chronik.testing.rival import RivalWriterStore

SOURCE = Path(chronik.__file__).parent


@event("unit.counted")
@dataclass(frozen=True, slots=True)
class Counted:
    n: int


class Counter(Aggregate):
    n: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.n = 0

    def count(self) -> None:
        self.record(Counted(self.n + 1))

    @applies(Counted)
    def _counted(self, e: Counted) -> None:
        self.n = e.n


@dataclass
class Recorded:
    """Instruments that keep what they are told."""

    appends: list[int] = field(default_factory=list)
    retries: int = 0

    def appended(self, seconds: float, events: int) -> None:
        assert seconds >= 0
        self.appends.append(events)

    def concurrency_retry(self) -> None:
        self.retries += 1

    def projection_batch(self, projection: str, seconds: float, events: int) -> None:
        raise AssertionError("not a projection")

    def relay_publish(self, seconds: float, messages: int) -> None:
        raise AssertionError("not a relay")

    def consumer_handled(self, consumer: str, seconds: float, outcome: str) -> None:
        raise AssertionError("not a consumer")


async def test_a_repository_times_each_append_and_counts_a_lost_race_as_a_retry() -> None:
    store = RivalWriterStore(EventTypes([Counted]), Counted(100), times=0)
    recorded = Recorded()
    store.instruments = recorded
    repo = Repository(store, Counter)
    counter = Counter("c")
    counter.count()
    counter.count()
    await repo.save(counter)
    assert (recorded.appends, recorded.retries) == ([2], 0)
    store.times = 1  # a rival appends right after the next load: the save conflicts
    result = await repo.execute("c", Counter.count)
    assert result.n == 101
    assert recorded.appends == [2, 1, 1], "the conflicting append is timed too"
    assert recorded.retries == 1


def test_no_log_call_passes_a_field_that_a_log_record_already_has() -> None:
    reserved = set(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {"message"}
    clashes = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    for key in keyword.value.keys:
                        if isinstance(key, ast.Constant) and key.value in reserved:
                            clashes.append(f"{path.relative_to(SOURCE)}:{node.lineno} {key.value}")
    assert clashes == [], "logging refuses these extra keys (KeyError at run time)"
