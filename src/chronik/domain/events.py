"""Domain events: frozen dataclasses registered under a stable type name and schema version."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["EventList", "EventSpec", "Personal", "event", "event_spec"]

T = TypeVar("T")

_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How an event class is stored: the stable name, the schema version, the data subject.

    ``forgets``: appending the event forgets its data subject, in the same transaction.
    """

    name: str
    version: int
    subject: str | None
    aliases: tuple[str, ...]
    forgets: bool = False


@dataclass(frozen=True, slots=True)
class Personal:
    """Marks a field as personal data: ``name: Annotated[str, Personal()]``.

    The store encrypts such a field with a key per data subject; after the subject is
    forgotten, reads give ``placeholder`` in its place. The placeholder must fit the
    field's type (a string fits ``str``; give one for other types).
    """

    placeholder: Any = "[forgotten]"


def event(
    name: str,
    *,
    version: int = 1,
    subject: str | None = None,
    aliases: Iterable[str] = (),
    forgets: bool = False,
) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as a domain event stored under ``name`` at ``version``.

    The stored name, not the class name, identifies the event: a class can be renamed
    or moved freely. ``aliases`` are earlier names still found in storage. ``subject``
    names the field holding the data subject's id for personal fields (default: the
    stream id). Bump ``version`` when the shape changes, and register an upcaster from
    the old one.

    With ``forgets=True`` the event records that its subject asked to be forgotten:
    the store forgets the subject (deletes their key, their snapshots, and records them
    as forgotten) in the transaction that appends the event, so the two never part.
    """
    if isinstance(aliases, str):
        aliases = (aliases,)
    names = (name, *aliases)
    for candidate in names:
        if not isinstance(candidate, str) or not _TYPE_NAME.fullmatch(candidate):
            raise ValueError(
                f"event type name {candidate!r} is not valid: use 1-200 letters, digits, "
                "'_', '.', ':' or '-', starting with a letter or '_'"
            )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"event {name!r}: version must be an int >= 1, got {version!r}")
    if not isinstance(forgets, bool):
        raise ValueError(f"event {name!r}: forgets must be True or False, got {forgets!r}")

    def mark(cls: type[T]) -> type[T]:
        params = getattr(cls, "__dataclass_params__", None)
        if not dataclasses.is_dataclass(cls) or params is None or not params.frozen:
            raise TypeError(
                f"@event({name!r}) needs a frozen dataclass: put @dataclass(frozen=True) "
                f"under it on {cls.__qualname__}"
            )
        if subject is not None and subject not in {f.name for f in dataclasses.fields(cls)}:
            raise TypeError(f"@event({name!r}): subject {subject!r} is not a field of {cls!r}")
        spec = EventSpec(
            name=name, version=version, subject=subject, aliases=tuple(aliases), forgets=forgets
        )
        setattr(cls, "__chronik_event__", spec)  # noqa: B010 - the attribute is not declared
        return cls

    return mark


class EventList(list[type]):
    """The events of one context, listed as they are declared, each declared once.

    ``EVENTS = EventList()`` then ``@EVENTS.event("shop.item_added")`` registers the
    class as ``event`` does and appends it here, so the service, the codec and the tests
    read one list instead of a second enumeration that can drift from the classes.
    """

    def event(
        self,
        name: str,
        *,
        version: int = 1,
        subject: str | None = None,
        aliases: Iterable[str] = (),
        forgets: bool = False,
    ) -> Callable[[type[T]], type[T]]:
        """``chronik.domain.event`` that also appends the class to this list."""
        mark = event(name, version=version, subject=subject, aliases=aliases, forgets=forgets)

        def register(cls: type[T]) -> type[T]:
            self.append(mark(cls))
            return cls

        return register


def event_spec(cls: type) -> EventSpec:
    """The registration of an event class; TypeError if it was not decorated with @event."""
    spec = cls.__dict__.get("__chronik_event__")
    if not isinstance(spec, EventSpec):
        raise TypeError(f"{cls.__qualname__} is not a registered event: decorate it with @event")
    return spec
