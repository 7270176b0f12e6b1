"""Value objects: frozen dataclasses that check their own fields when built."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, NoReturn

from chronik.errors import InvalidValueError

__all__ = ["ValueObject"]


class ValueObject:
    """Base for value objects written as ``@dataclass(frozen=True)`` subclasses.

    On construction each field is checked against its annotation (plain classes,
    ``X | None``, and the container type of generics), then ``validate()`` runs for
    the rules of the domain. A refused value raises ``InvalidValueError`` naming the
    class and the field, never the value itself (it may be personal data).
    """

    __slots__ = ()
    _field_checks: ClassVar[dict[type, tuple[_Check, ...]]] = {}

    def __post_init__(self) -> None:
        cls = type(self)
        checks = ValueObject._field_checks.get(cls)
        if checks is None:
            checks = _field_checks(cls)
            ValueObject._field_checks[cls] = checks
        for name, allowed, literals in checks:
            value = getattr(self, name)
            if not isinstance(value, allowed) or (
                isinstance(value, bool) and bool not in allowed and int in allowed
            ):
                self.refuse(name, f"expected {_describe(allowed)}, got {type(value).__name__}")
            if literals is not None and value not in literals:
                choices = ", ".join(repr(v) for v in literals)
                self.refuse(name, f"must be one of {choices}")
        self.validate()

    def validate(self) -> None:
        """Check the domain's rules; call ``self.refuse(field, reason)`` to reject."""

    def refuse(self, field: str, reason: str) -> NoReturn:
        raise InvalidValueError(type(self).__qualname__, field, reason)


# (field, the classes isinstance accepts, the values a Literal allows or None)
_Check = tuple[str, tuple[type, ...], tuple[object, ...] | None]


def _field_checks(cls: type) -> tuple[_Check, ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} must be a dataclass to be a ValueObject")
    hints = typing.get_type_hints(cls)
    checks: list[_Check] = []
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, Any)
        allowed = _runtime_types(hint)
        if allowed is not None:
            checks.append((f.name, allowed, _literal_values(hint)))
    return tuple(checks)


def _literal_values(hint: Any) -> tuple[object, ...] | None:
    """The values a Literal (possibly optional or annotated) allows; None if not a Literal."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _literal_values(typing.get_args(hint)[0])
    if origin is typing.Literal:
        return typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        values: list[object] = []
        for arg in typing.get_args(hint):
            if arg is type(None):
                values.append(None)
                continue
            part = _literal_values(arg)
            if part is None:
                return None
            values.extend(part)
        return tuple(values)
    return None


def _runtime_types(hint: Any) -> tuple[type, ...] | None:
    """The classes isinstance can check for an annotation, or None when it cannot."""
    if hint is Any:
        return None
    if hint is None or hint is type(None):
        return (type(None),)
    if hint is float:
        return (float, int)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _runtime_types(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[type] = []
        for arg in typing.get_args(hint):
            part = _runtime_types(arg)
            if part is None:
                return None
            found.extend(part)
        return tuple(found)
    if origin is typing.Literal:
        return tuple({type(a) for a in typing.get_args(hint)})
    if isinstance(origin, type):
        return (origin,)
    if isinstance(hint, type):
        return (hint,)
    return None


def _describe(allowed: tuple[type, ...]) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
