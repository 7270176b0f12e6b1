"""Event-sourced aggregates: state changes only by applying events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NoReturn, TypeVar

__all__ = ["Aggregate", "applies"]

F = TypeVar("F", bound=Callable[..., None])
A = TypeVar("A", bound="Aggregate")


def applies(*event_types: type) -> Callable[[F], F]:
    """Mark an aggregate method as the one that applies these event types to its state."""
    if not event_types:
        raise TypeError("@applies needs at least one event class")

    def mark(method: F) -> F:
        method.__chronik_applies__ = event_types  # type: ignore[attr-defined]
        return method

    return mark


class Aggregate:
    """Base for event-sourced aggregates, the unit of consistency.

    A subclass keeps its state in attributes set by ``__init__(self, id)`` (the
    state before any event) and changed only by ``@applies`` methods. Its command
    methods check invariants, then call ``self.record(event)``, which applies the
    event and queues it for saving. Declare the state attributes as class
    annotations: snapshots are taken and restored by them.

    ``version`` counts every event applied, saved or pending; the repository saves
    the pending events expecting the stream at ``version - len(pending_events)``.
    """

    _appliers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    id: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # By name, so that a subclass overriding an applier (decorated again or not) wins.
        names: dict[type, str] = {}
        for base in reversed(cls.__mro__):
            for name, attr in vars(base).items():
                for event_type in getattr(attr, "__chronik_applies__", ()):
                    names[event_type] = name
        cls._appliers = {event_type: getattr(cls, name) for event_type, name in names.items()}

    def __init__(self, id: str) -> None:
        self.id = id
        self._version = 0
        self._pending: list[object] = []

    @property
    def version(self) -> int:
        """The number of events applied to this aggregate, pending ones included."""
        return self._version

    @property
    def pending_events(self) -> tuple[object, ...]:
        """Events recorded since the aggregate was loaded or last saved."""
        return tuple(self._pending)

    def record(self, event: object) -> None:
        """Apply a new event and queue it for saving. Called by command methods."""
        self._apply(event)
        self._pending.append(event)

    def mark_saved(self) -> None:
        """Forget the pending events: the repository calls this once they are stored."""
        self._pending.clear()

    def replay(self, events: Iterable[object], version: int) -> None:
        """Apply stored events; ``version`` is the stream version after the last one."""
        appliers = self._appliers
        for event in events:
            applier = appliers.get(type(event))
            if applier is None:
                self._missing_applier(event)
            applier(self, event)
        self._version = version

    def _apply(self, event: object) -> None:
        applier = self._appliers.get(type(event))
        if applier is None:
            self._missing_applier(event)
        applier(self, event)
        self._version += 1

    def _missing_applier(self, event: object) -> NoReturn:
        raise TypeError(
            f"{type(self).__qualname__} has no @applies method for {type(event).__qualname__}"
        )

    @classmethod
    def blank(cls: type[A], id: str) -> A:
        """The aggregate before any event: what ``__init__(id)`` builds."""
        return cls(id)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.id!r} v{self._version}>"
