"""The published language: public events a context lets out, apart from its domain events.

A context declares its public events in its own ``contracts.py`` (frozen dataclasses
marked ``@public("sales.order_submitted.v1")``) and one pure function that decides
which domain events leave the context and in what shape. Other contexts import only
that module. A public type never changes shape: a new shape is a new ``.vN``.

What a field promises beyond its type is written on it, as
``Annotated[int, constraint(gt=0, description="...")]``: the JSON Schema (and so the
AsyncAPI document) states it, and a message that breaks it is refused when decoded.
Whatever the schema allows, a consumer must handle without failing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from chronik.errors import ConfigurationError

__all__ = ["PublicSpec", "PublishedLanguage", "constraint", "public", "public_spec"]

T = TypeVar("T")

_TYPE = re.compile(r"(?P<source>[a-z][a-z0-9_]*)(\.[a-z][a-z0-9_]*)+\.v(?P<version>[1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class PublicSpec:
    """A public event's stable type, the context it comes from and its version."""

    type: str
    source: str
    version: int


def public(type_name: str) -> Callable[[type[T]], type[T]]:
    """Mark a frozen dataclass as the public event ``type_name`` ("context.name.vN")."""
    match = _TYPE.fullmatch(type_name) if isinstance(type_name, str) else None
    if match is None:
        raise ValueError(
            f"public event type {type_name!r} must look like 'context.event_name.v1': lowercase "
            "words joined by '.', ending in a version"
        )
    spec = PublicSpec(type_name, match["source"], int(match["version"]))

    def mark(cls: type[T]) -> type[T]:
        params = getattr(cls, "__dataclass_params__", None)
        if not dataclasses.is_dataclass(cls) or params is None or not params.frozen:
            raise TypeError(f"@public({type_name!r}) needs a frozen dataclass: {cls.__qualname__}")
        setattr(cls, "__chronik_public__", spec)  # noqa: B010 - the attribute is not declared
        return cls

    return mark


def constraint(
    *,
    description: str | None = None,
    gt: int | None = None,
    ge: int | None = None,
    lt: int | None = None,
    le: int | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    tz: bool | None = None,
) -> Any:
    """What a public field promises, for ``Annotated[T, constraint(...)]``.

    The event's JSON Schema states it (JSON Schema has no keyword for ``tz=True``, a
    date-time with a timezone: say it in the description). Decoding a message that
    breaks it raises ``ValueError``: a consumer dead-letters it at once as undecodable
    rather than act on it.
    """
    given: dict[str, Any] = {
        "description": description,
        "gt": gt,
        "ge": ge,
        "lt": lt,
        "le": le,
        "pattern": pattern,
        "min_length": min_length,
        "max_length": max_length,
        "tz": tz,
    }
    return msgspec.Meta(**{k: v for k, v in given.items() if v is not None})


def public_spec(cls: type) -> PublicSpec:
    """The public type and constraints of a ``@public`` class (TypeError for another)."""
    spec = cls.__dict__.get("__chronik_public__")
    if not isinstance(spec, PublicSpec):
        raise TypeError(f"{cls.__qualname__} is not a public event: mark it @public(...)")
    return spec


class PublishedLanguage:
    """Public event classes by type: encode, decode, and their JSON Schemas."""

    def __init__(self, classes: Iterable[type]) -> None:
        self._by_type: dict[str, type] = {}
        self._decoders: dict[str, Callable[[Any], Any]] = {}
        for cls in classes:
            try:
                spec = public_spec(cls)
            except TypeError as exc:
                raise ConfigurationError(str(exc)) from None
            other = self._by_type.get(spec.type)
            if other is not None and other is not cls:
                raise ConfigurationError(
                    f"public type {spec.type!r} is used by {other.__qualname__} "
                    f"and {cls.__qualname__}"
                )
            self._by_type[spec.type] = cls

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def class_of(self, type_name: str) -> type | None:
        return self._by_type.get(type_name)

    def __add__(self, other: PublishedLanguage) -> PublishedLanguage:
        return PublishedLanguage([*self._by_type.values(), *other._by_type.values()])

    @staticmethod
    def spec_of(event: object) -> PublicSpec:
        return public_spec(type(event))

    @staticmethod
    def data_of(event: object) -> Any:
        """The event's fields as JSON-ready builtins."""
        return msgspec.to_builtins(event)

    def decode(self, type_name: str, data: Any) -> Any:
        """The public event object of ``type_name`` from its JSON data.

        Raises ValueError naming the type and what does not fit.
        """
        cls = self._by_type.get(type_name)
        if cls is None:
            raise ValueError(f"public event type {type_name!r} is not in this language")
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{type_name}: {exc}") from None

    def schema(self, type_name: str) -> dict[str, Any]:
        """The JSON Schema of a public event's data (self-contained)."""
        cls = self._by_type[type_name]
        schema: dict[str, Any] = msgspec.json.schema(cls)
        return schema
