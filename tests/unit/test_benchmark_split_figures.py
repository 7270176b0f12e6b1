"""The split benchmark's arithmetic (benchmarks/split.py): rates, backlog trend, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _benchmarks_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


def _sent(rate: float, count: int, latency: float, stretch: float = 0.0) -> list[Any]:
    """Orders due at ``rate``/s, each answered ``latency`` later (plus ``stretch`` * i)."""
    from benchmarks.split import Sent

    out = []
    for i in range(count):
        due = 100.0 + i / rate
        done = due + latency + stretch * i
        out.append(
            Sent(f"lead{i}", due, due, done=done, ack_wall=done, status=200, stream_id=f"s{i}")
        )
    return out


def test_a_steady_latency_does_not_lower_the_acknowledged_rate() -> None:
    from benchmarks.split import summarize_offer

    step = summarize_offer(_sent(50, 100, latency=0.4), 50, 2.0)
    assert step["acked"] == step["offered"] == 100
    assert step["acked_per_s"] == pytest.approx(50, rel=0.01)
    assert step["http"]["p50_ms"] == pytest.approx(400, rel=0.01)


def test_a_growing_queue_lowers_the_acknowledged_rate() -> None:
    from benchmarks.split import summarize_offer

    # Each answer 10 ms later than the one before: sales does 1/(0.02 + 0.01) per second.
    step = summarize_offer(_sent(50, 100, latency=0.1, stretch=0.01), 50, 2.0)
    assert step["acked_per_s"] == pytest.approx(1 / 0.03, rel=0.01)


def test_an_unanswered_order_is_not_acknowledged() -> None:
    from benchmarks.split import summarize_offer

    sent = _sent(10, 10, latency=0.1)
    sent[3].ack_wall, sent[3].status, sent[3].error = None, 503, "HTTP 503: busy"
    step = summarize_offer(sent, 10, 1.0)
    assert step["acked"] == 9
    assert step["errors"] == ["HTTP 503: busy"]


def _traced(sent: list[Any], delay: float, stretch: float = 0.0) -> list[Any]:
    from benchmarks.split import Traced

    return [
        Traced(s.ack_wall, visible=s.ack_wall + delay + stretch * i) for i, s in enumerate(sent)
    ]


def test_a_backlog_in_step_with_the_load_does_not_grow() -> None:
    from benchmarks.split import backlog_figures

    sent = _sent(20, 1200, latency=0.05)  # 60 s
    figures = backlog_figures(sent, _traced(sent, 0.2), 100.0, 106.0, 160.0, [])
    assert figures["at_start"] == figures["at_end"] == 4  # 0.2 s of orders at 20/s in flight
    assert not figures["grows"]


def test_a_consumer_falling_behind_makes_the_backlog_grow() -> None:
    from benchmarks.split import backlog_figures

    sent = _sent(20, 1200, latency=0.05)
    # Each order visible 5 ms later than the one before: 10% behind the load.
    figures = backlog_figures(sent, _traced(sent, 0.2, 0.005), 100.0, 106.0, 160.0, [])
    assert figures["at_end"] > figures["at_start"]
    assert figures["growth"] > 50
    assert figures["grows"]


def test_the_report_renders_a_run_and_says_whether_the_goals_were_met() -> None:
    from benchmarks.split import STAGES
    from benchmarks.split_report import render_split

    stage = {"n": 10, "p50_ms": 20.0, "p99_ms": 60.0, "max_ms": 70.0}
    doc = {
        "size": "tiny",
        "started_at": "2026-12-02T14:00:00+00:00",
        "wall_seconds": 42.0,
        "load_average": {"start": [1.0, 2.0, 3.0], "end": [1.5, 2.0, 3.0]},
        "machine": {"cpu_count": 2, "chronik_commit": "abc"},
        "sales_alone": {
            "steps": [
                {
                    "offered_per_s": 10,
                    "offered": 20,
                    "acked": 20,
                    "acked_per_s": 10.0,
                    "http": stage,
                    "passed": True,
                }
            ],
            "sustained_per_s": 10.0,
            "basis": "the highest step that passed",
            "closed_loop": {"orders_per_s": 30.0, "latency": stage},
        },
        "library": {"orders_per_s": 40.0, "latency": stage},
        "ratios": {"sales_sustained_to_library": 0.25, "sales_closed_loop_to_library": 0.75},
        "cross": [
            {
                "share": 0.5,
                "offered_per_s": 5.0,
                "seconds": 60.0,
                "offered": 300,
                "acked": 300,
                "visible": 300,
                "visible_per_s": 5.0,
                "stages": {name: stage for name, *_ in STAGES},
                "backlog": {"at_start": 1, "at_end": 1, "max": 2, "growth": 0.1, "grows": False},
            }
        ],
    }
    text = "\n".join(render_split(doc))
    assert "## The split deployment" in text
    assert "1.00 / 2.00 / 3.00 at the start" in text
    assert "**0.25x**" in text and "goal >= 0.5x: **missed**" in text
    assert "p99 < 100 ms, no backlog growth: met" in text
    assert render_split(None) == []
    assert "**The run failed:** boom" in "\n".join(render_split({**doc, "error": "boom"}))
