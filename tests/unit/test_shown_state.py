"""The state shown for a runner's row: one function for the CLI, readiness and metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chronik.projections.health import NOT_READY, describe, heartbeat_for, shown_state
from chronik.projections.port import ProjectionRow

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
BOUND = 30.0


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize("state", ["catching_up", "live", "degraded", "error"])
def test_a_heartbeat_older_than_the_bound_shows_stale_whatever_the_row_says(state: str) -> None:
    assert shown_state(state, ago(BOUND + 0.001), now=NOW, stale_after=BOUND) == "stale"
    assert shown_state(state, None, now=NOW, stale_after=BOUND) == "stale"


@pytest.mark.parametrize("state", ["catching_up", "live", "degraded", "error"])
def test_a_heartbeat_within_the_bound_shows_the_row_s_state(state: str) -> None:
    assert shown_state(state, ago(BOUND), now=NOW, stale_after=BOUND) == state


@pytest.mark.parametrize("state", ["inline", "stopped", "starting", "standby"])
def test_states_that_need_no_heartbeat_show_as_they_are(state: str) -> None:
    assert shown_state(state, ago(3600), now=NOW, stale_after=BOUND) == state


def test_a_live_runner_with_a_rebuild_beside_shows_rebuilding_and_a_failing_one_error() -> None:
    assert shown_state("live", ago(1), now=NOW, rebuilding=True) == "rebuilding"
    assert shown_state("error", ago(1), now=NOW, rebuilding=True) == "error"


def test_a_stale_or_failing_runner_makes_its_service_not_ready() -> None:
    assert {"stale", "error", "stopped", "starting"} <= NOT_READY
    assert NOT_READY.isdisjoint({"live", "catching_up", "degraded", "rebuilding", "inline"})


def test_describe_measures_lag_from_the_head_and_carries_the_error() -> None:
    row = ProjectionRow(
        "board",
        generation=2,
        version=1,
        checkpoint=40,
        rebuild_generation=3,
        rebuild_checkpoint=10,
        state="error",
        heartbeat_at=ago(1),
        detail="TypeError: not JSON",
    )
    status = describe(row, head=50, parked=1, lag_seconds=2.5, now=NOW, rebuild_rate=5.0)
    assert (status.state, status.lag_events, status.lag_seconds, status.error) == (
        "error",
        10,
        2.5,
        "TypeError: not JSON",
    )
    assert status.rebuild is not None
    assert (status.rebuild.done, status.rebuild.seconds_left) == (10, 8.0)


def test_an_inline_read_model_is_at_the_head_whatever_its_row_says() -> None:
    row = ProjectionRow("index", 1, 1, checkpoint=0, state="inline")
    status = describe(row, head=50, parked=0, lag_seconds=9.0, now=NOW)
    assert (status.state, status.checkpoint, status.lag_events, status.lag_seconds) == (
        "inline",
        50,
        0,
        0.0,
    )


@pytest.mark.parametrize(("bound", "beat"), [(30.0, 5.0), (3.0, 1.0), (0.6, 0.2)])
def test_a_runner_beats_often_enough_never_to_look_stale_while_it_runs(
    bound: float, beat: float
) -> None:
    assert heartbeat_for(bound) == pytest.approx(beat)
