"""The console's operations pages' pure parts: samples carried by polls, rates from
counters, charts, and a process diagram laid out for SVG."""

from __future__ import annotations

import pytest

from chronik.console.live import join_samples, parse_samples, rate, sparkline
from chronik.console.processes import draw
from chronik.processes.diagram import diagram


def test_samples_ride_in_the_poll_and_bad_ones_are_dropped() -> None:
    assert parse_samples("3,1.5,x,-2,inf,0") == [3.0, 1.5, 0.0]
    assert parse_samples(None) == []
    assert parse_samples(",".join(str(n) for n in range(100)), keep=3) == [97.0, 98.0, 99.0]
    assert join_samples([1.0, 2.5, 0.0]) == "1,2.5,0"


def test_a_rate_is_a_counters_difference_over_the_time_between_two_polls() -> None:
    assert rate(150, 12.0, "100@10.0") == pytest.approx(25.0)
    assert rate(150, 12.0, None) is None  # the first poll: nothing to compare
    assert rate(5, 12.0, "100@10.0") is None  # the counter went back: its process restarted
    assert rate(150, 10.0, "100@10.0") is None
    assert rate(150, 12.0, "garbage") is None


def test_a_sparkline_scales_its_samples_into_the_box_with_zero_at_the_bottom() -> None:
    line = sparkline([0.0, 10.0, 5.0], width=100, height=20)
    assert line.top == 10.0 and line.last == 5.0
    points = [tuple(map(float, p.split(","))) for p in line.points.split()]
    assert [x for x, _ in points] == [0.0, 50.0, 100.0]
    assert points[0][1] == 18.0 and points[1][1] == 2.0  # 0 at the bottom, the top at the top
    assert (line.last_x, line.last_y) == points[-1]
    assert sparkline([]).points == ""


def test_a_drawn_diagram_marks_the_current_state_and_draws_every_transition() -> None:
    from travel.processes import TripBooking

    shape = diagram(TripBooking)
    drawing = draw(shape, "awaiting_approval")
    assert [b.state for b in drawing.boxes if b.current] == ["awaiting_approval"]
    assert {b.state for b in drawing.boxes if b.final} == {"confirmed", "cancelled"}
    pairs = {(t.source, t.target) for t in shape.transitions}
    assert len(drawing.arrows) == len(pairs)
    assert any("timeout:approval" in a.label for a in drawing.arrows)
    # left to right by distance from the start: every box inside the drawing
    xs = {b.state: b.x for b in drawing.boxes}
    assert xs["new"] < xs["booking_flight"] < xs["booking_hotel"] < xs["awaiting_approval"]
    assert all(0 <= b.x <= drawing.width - drawing.box_w for b in drawing.boxes)
