"""Projections: plain code that turns events into a read model."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

__all__ = ["Projection", "handles"]

F = TypeVar("F", bound=Callable[..., Any])

_NAME = re.compile(r"[a-z][a-z0-9_]{0,29}")
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,19}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def handles(*event_types: type) -> Callable[[F], F]:
    """Mark a projection method as the handler of these event types.

    The method is ``async def on_x(self, event, tx)``: ``tx`` is the read model's
    transaction (``tx.current`` is the RecordedEvent being applied).
    """
    if not event_types:
        raise TypeError("@handles needs at least one event class")

    def mark(method: F) -> F:
        method.__chronik_handles__ = event_types  # type: ignore[attr-defined]
        return method

    return mark


Handler = Callable[[Any, Any], Awaitable[None]]


class Projection:
    """A read model: a name, its tables, a version, and handlers for events.

    Subclasses set ``name`` (lowercase, digits, '_'), ``tables`` (the document tables
    it owns) and optionally ``indexes`` (table -> fields looked up by equality) and
    ``version``. Bumping ``version`` rebuilds the read model beside the old one, which
    keeps serving until the new one has caught up.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ()
    indexes: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    _handlers: ClassVar[dict[type, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: dict[type, str] = {}
        for base in reversed(cls.__mro__):
            for attr_name, attr in vars(base).items():
                for event_type in getattr(attr, "__chronik_handles__", ()):
                    if not inspect.iscoroutinefunction(attr):
                        raise TypeError(
                            f"{cls.__qualname__}.{attr_name} handles events: make it async def"
                        )
                    names[event_type] = attr_name
        cls._handlers = names

    @classmethod
    def check(cls) -> None:
        """Raise TypeError if the class is not a usable projection; say what is wrong."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise TypeError(
                f"{cls.__qualname__}.name must be 1-30 lowercase letters, digits or '_', "
                f"starting with a letter; got {name!r}"
            )
        if not cls.tables:
            raise TypeError(f"projection {name!r} declares no tables")
        for table in cls.tables:
            if not _TABLE.fullmatch(table):
                raise TypeError(
                    f"projection {name!r}: table name {table!r} must be 1-20 lowercase "
                    "letters, digits or '_', starting with a letter"
                )
        for table, fields in cls.indexes.items():
            if table not in cls.tables:
                raise TypeError(f"projection {name!r} indexes unknown table {table!r}")
            for field in fields:
                check_field(field)
        if isinstance(cls.version, bool) or not isinstance(cls.version, int) or cls.version < 1:
            raise TypeError(f"projection {name!r}: version must be an int >= 1")
        if not cls._handlers:
            raise TypeError(f"projection {name!r} handles no events: mark methods @handles(...)")

    def handler_for(self, event_type: type) -> Handler | None:
        name = self._handlers.get(event_type)
        return None if name is None else getattr(self, name)

    @property
    def event_types(self) -> tuple[type, ...]:
        return tuple(self._handlers)


def check_field(field: str) -> str:
    """A document field name that is safe to put in a JSON path."""
    if not isinstance(field, str) or not _FIELD.fullmatch(field):
        raise ValueError(
            f"field name {field!r} must be letters, digits or '_', not starting with a digit"
        )
    return field
