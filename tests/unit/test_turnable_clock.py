"""The demo's clock: the system's time plus an offset that only grows, kept in a file.

And the durations a person types to move it (``48h``, ``2m``, ``1d12h``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chronik.errors import ConfigurationError
from chronik.processes import TurnableClock, parse_duration
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import Settings


def test_it_reads_the_systems_time_until_it_is_moved() -> None:
    clock = TurnableClock()
    before = datetime.now(UTC)
    now = clock.now()
    assert before <= now <= datetime.now(UTC)
    assert now.tzinfo is not None
    assert clock.offset == timedelta(0)


def test_advancing_moves_it_ahead_of_the_system_and_time_goes_on() -> None:
    clock = TurnableClock()
    moved = clock.advance(timedelta(hours=48))
    assert clock.offset == timedelta(hours=48)
    system = datetime.now(UTC)
    assert system + timedelta(hours=47, minutes=59) < moved <= system + timedelta(hours=48)
    assert clock.now() >= moved
    clock.advance(timedelta(minutes=2))
    assert clock.offset == timedelta(hours=48, minutes=2)


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1), timedelta(days=-2)])
def test_it_never_goes_back_nor_stands_still(delta: timedelta) -> None:
    clock = TurnableClock()
    with pytest.raises(ValueError, match="a clock moves forward only"):
        clock.advance(delta)
    assert clock.offset == timedelta(0)


def test_its_offset_is_kept_in_its_file_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "virtual-clock"
    TurnableClock(path).advance(timedelta(hours=48))
    assert path.read_text() == f"{48 * 3600:.6f}\n"
    again = TurnableClock(path)
    assert again.offset == timedelta(hours=48)
    again.advance(timedelta(seconds=90))
    assert TurnableClock(path).offset == timedelta(hours=48, seconds=90)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["virtual-clock"]  # no temporary left


@pytest.mark.parametrize(
    ("text", "says"),
    [("soon", "not a clock offset in seconds: 'soon'"), ("-5", "never negative")],
)
def test_a_file_that_holds_no_offset_is_refused_naming_it(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "virtual-clock"
    path.write_text(text)
    with pytest.raises(ValueError, match=says) as raised:
        TurnableClock(path)
    assert str(path) in str(raised.value)


async def test_a_runtime_with_a_broken_clock_file_says_which_setting_in_one_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "virtual-clock").write_text("soon")
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "event_store_url": "memory://", "demo": True, "clock": "virtual"}
    )
    with pytest.raises(ConfigurationError, match=r"^CHRONIK_CLOCK=virtual: .*virtual-clock"):
        await Runtime(settings, [ServiceSpec(name="empty", event_types=[])]).start()


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("48h", timedelta(hours=48)),
        ("2m", timedelta(minutes=2)),
        ("90s", timedelta(seconds=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(minutes=90)),
        (" 1h 30m ", timedelta(minutes=90)),
        ("2D", timedelta(days=2)),
    ],
)
def test_a_duration_is_written_with_units_largest_first(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "48", "h", "2 weeks", "30m1h", "1h1h", "-1h", "1h-"])
def test_anything_else_is_refused_naming_the_input(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as raised:
        parse_duration(text)
    assert repr(text) in str(raised.value)
