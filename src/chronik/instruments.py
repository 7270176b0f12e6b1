"""What the framework's parts report for metrics: timings and counts, behind a port.

The event store's repository, the projection runners, the relay and the consumers call
an ``Instruments``; the runtime gives them its Prometheus metrics
(``chronik.runtime.observability.Metrics``), anything else gets ``NO_INSTRUMENTS``,
which does nothing. It lives below every layer so that those parts report without
importing the runtime, and it imports nothing of chronik.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_INSTRUMENTS", "Instruments", "NoInstruments"]


class Instruments(Protocol):
    """Receives the measurements; each call must be cheap and must not raise."""

    def appended(self, seconds: float, events: int) -> None:
        """A repository's append of ``events`` events took ``seconds`` (conflicts too)."""

    def concurrency_retry(self) -> None:
        """A command lost an optimistic-concurrency race and runs again on fresh state."""

    def projection_batch(self, projection: str, seconds: float, events: int) -> None:
        """A projection applied a page of ``events`` events and stored its checkpoint."""

    def relay_publish(self, seconds: float, messages: int) -> None:
        """The relay published a batch of ``messages`` outbox messages to the broker."""

    def consumer_handled(self, consumer: str, seconds: float, outcome: str) -> None:
        """A consumer finished a delivery: ``outcome`` is "handled" or "dead_lettered"."""


class NoInstruments:
    """Instruments that record nothing: the default of every part."""

    def appended(self, seconds: float, events: int) -> None:
        pass

    def concurrency_retry(self) -> None:
        pass

    def projection_batch(self, projection: str, seconds: float, events: int) -> None:
        pass

    def relay_publish(self, seconds: float, messages: int) -> None:
        pass

    def consumer_handled(self, consumer: str, seconds: float, outcome: str) -> None:
        pass


#: the instruments of a part nobody measures
NO_INSTRUMENTS: Instruments = NoInstruments()
