"""The functional form of an aggregate: decide(command, state) -> events, evolve(state, event)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Decider"]

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")


# No slots: calling Decider[C, S, E](...) sets __orig_class__ on the instance, which a
# slotted frozen dataclass refuses on Python < 3.13.
@dataclass(frozen=True)
class Decider(Generic[C, S, E]):
    """An aggregate as three pure parts.

    ``decide`` turns a command and the current state into new events (or raises a
    DomainError); ``evolve`` folds one event into the state; ``initial_state`` is the
    state of a stream with no events. Store it in a repository with
    ``chronik.eventstore.handle_command``.
    """

    initial_state: S
    decide: Callable[[C, S], Sequence[E]]
    evolve: Callable[[S, E], S]

    def fold(self, events: Iterable[E], state: S | None = None) -> S:
        """The state after applying ``events`` to ``state`` (default: the initial state)."""
        current = self.initial_state if state is None else state
        evolve = self.evolve
        for event in events:
            current = evolve(current, event)
        return current
