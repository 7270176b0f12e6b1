"""Clocks for durable timeouts: the system's, one tests move by hand, one a demo turns.

- ``SystemClock``: the system's time (what a service runs on).
- ``VirtualClock``: stands still until a test moves it.
- ``FileClock``: virtual time in a file, for a test that moves another process's clock.
- ``TurnableClock``: the system's time plus an offset a person moves forward
  (``CHRONIK_CLOCK=virtual``, demo only): time goes on, and a 48-hour timeout can fire now.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

__all__ = [
    "Clock",
    "FileClock",
    "SystemClock",
    "TurnableClock",
    "VirtualClock",
    "parse_duration",
]


class Clock(Protocol):
    """Where processes read the time: the system's, or one a test moves."""

    def now(self) -> datetime:
        """The time now, timezone-aware."""
        ...


class SystemClock:
    """The system's time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that moves only when told: timeouts are tested without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


class FileClock:
    """Virtual time kept in a file (one ISO timestamp): shared with another process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text().strip())

    def set(self, when: datetime) -> None:
        """Move the time; a reader in another process sees the old or the new, never half."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(when.isoformat())
        os.replace(tmp, self.path)


class TurnableClock:
    """The system's time plus an offset that only moves forward, when told.

    For a demo (``CHRONIK_CLOCK=virtual``): time flows as usual, and ``advance`` jumps it
    forward, so a process's 48-hour timeout fires in the next timer round. With ``path``
    the offset is kept in that file (seconds, as text): a restarted service goes on from
    the time it had reached, rather than stepping back before timeouts it scheduled.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        if path is not None and path.exists():
            text = path.read_text().strip()
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{path}: not a clock offset in seconds: {text[:40]!r}") from None
            if seconds < 0:
                raise ValueError(f"{path}: a clock offset is never negative, got {text!r}")
            self._offset = timedelta(seconds=seconds)

    @property
    def offset(self) -> timedelta:
        """How far ahead of the system's time it is."""
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (more than zero); the new time. Never back."""
        if delta <= timedelta(0):
            raise ValueError(f"a clock moves forward only: give more than 0, got {delta}")
        with self._lock:
            offset = self._offset + delta
            if self.path is not None:
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(f"{offset.total_seconds():.6f}\n")
                os.replace(tmp, self.path)
            self._offset = offset
        return self.now()


_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``48h``, ``2m``, ``90s``, ``1d12h``, ``1.5h``: a duration; ValueError naming the input.

    Units: d(ays), h(ours), m(inutes), s(econds), largest first, each at most once.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    units = [unit for _, unit in parts]
    ordered = sorted(units, key="dhms".index)
    if not parts or "".join(n + u for n, u in parts) != compact or units != ordered:
        raise ValueError(
            f"{text!r} is not a duration: write it like 48h, 2m, 90s or 1d12h "
            "(d, h, m, s, largest first)"
        )
    if len(set(units)) != len(units):
        raise ValueError(f"{text!r} is not a duration: each unit at most once")
    return timedelta(**{_UNITS[u]: float(n) for n, u in parts})
