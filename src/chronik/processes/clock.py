"""Clocks for durable timeouts: the system's, or a virtual one tests move by hand."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

__all__ = ["Clock", "FileClock", "SystemClock", "VirtualClock"]


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
