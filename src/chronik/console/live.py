"""What the live parts of the operations pages share: samples carried by the poll, charts.

A live part of a page (a projection's lag, the relay's rate) polls its own URL with htmx
and carries its recent samples in that URL's query (``samples=3,1,0``): the server keeps
no history, so any replica behind a load balancer answers the next poll. A rate is the
difference of a counter between two polls over the time between them (the counter and
the time ride along too), never a rate stored somewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["KEEP", "Sparkline", "join_samples", "parse_samples", "rate", "sparkline"]

#: how many samples a live chart keeps
KEEP = 40


def parse_samples(text: str | None, keep: int = KEEP) -> list[float]:
    """The samples a poll carried (``"3,1.5,0"``); bad or missing ones are dropped."""
    out: list[float] = []
    for part in (text or "").split(",")[-keep:]:
        try:
            value = float(part)
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            out.append(value)
    return out


def join_samples(samples: Sequence[float], keep: int = KEEP) -> str:
    """The samples to carry in the next poll's query."""
    return ",".join(f"{s:g}" for s in list(samples)[-keep:])


def rate(count: int, at: float, before: str | None) -> float | None:
    """Per second since the reading ``before`` (``"COUNT@MONOTONIC_SECONDS"``), or None.

    None when there is no earlier reading or the counter went back (the process that
    keeps it restarted).
    """
    if not before or "@" not in before:
        return None
    was, _, then = before.partition("@")
    try:
        was_count, was_at = int(was), float(then)
    except ValueError:
        return None
    if at <= was_at or count < was_count:
        return None
    return (count - was_count) / (at - was_at)


@dataclass(frozen=True, slots=True)
class Sparkline:
    """A small line chart, as SVG coordinates: ``points`` for a polyline, the top value."""

    width: int
    height: int
    points: str
    top: float
    last: float | None
    #: where the last sample is drawn (a dot: one sample makes no line)
    last_x: float = 0.0
    last_y: float = 0.0


def sparkline(samples: Sequence[float], width: int = 240, height: int = 48) -> Sparkline:
    """The polyline of ``samples`` scaled into ``width`` x ``height`` (0 at the bottom)."""
    if not samples:
        return Sparkline(width, height, "", 0.0, None)
    top = max(max(samples), 1.0)
    step = width / max(len(samples) - 1, 1)
    pad = 2
    xy = [(i * step, pad + (height - 2 * pad) * (1 - s / top)) for i, s in enumerate(samples)]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    return Sparkline(width, height, points, top, samples[-1], *xy[-1])
