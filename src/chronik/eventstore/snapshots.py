"""Aggregate snapshots: the annotated state of an aggregate, as JSON, tagged with its schema.

The schema tag is a digest of the state's field names and types (plus an optional
``snapshot_version`` class attribute to bump by hand). A snapshot whose tag no
longer matches the class is ignored and the aggregate is rebuilt from its
events; nothing has to be migrated.
"""

from __future__ import annotations

import hashlib
import logging
import typing
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from chronik.domain.aggregate import Aggregate

__all__ = ["SnapshotCodec"]

A = TypeVar("A", bound=Aggregate)

log = logging.getLogger(__name__)


class SnapshotCodec(Generic[A]):
    """Encodes and restores the state of one aggregate class."""

    def __init__(self, cls: type[A]) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls)
        fields = {
            name: hint
            for name, hint in hints.items()
            if not name.startswith("_")
            and name != "id"
            and typing.get_origin(hint) is not ClassVar
            and hint is not ClassVar
        }
        self.fields = tuple(sorted(fields))
        extra = getattr(cls, "snapshot_version", 0)
        shape = repr([(name, repr(fields[name])) for name in self.fields]) + f"#{extra}"
        self.schema = hashlib.sha256(shape.encode()).hexdigest()[:16]
        state_type = msgspec.defstruct(
            f"{cls.__name__}State", [(name, fields[name]) for name in self.fields]
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(state_type)
        self._encoder = msgspec.json.Encoder()
        self._warned = False

    def encode(self, aggregate: A) -> bytes | None:
        """The state as JSON, or None when the aggregate holds state it did not annotate."""
        unknown = [
            name
            for name in vars(aggregate)
            if not name.startswith("_") and name != "id" and name not in self.fields
        ]
        if unknown:
            if not self._warned:
                log.warning(
                    "not snapshotting: attributes not annotated on the class",
                    extra={"aggregate": self.cls.__qualname__, "attributes": sorted(unknown)},
                )
                self._warned = True
            return None
        return self._encoder.encode({name: getattr(aggregate, name) for name in self.fields})

    def restore(self, id: str, version: int, state: bytes) -> A | None:
        """The aggregate at ``version`` from its state, or None if the state does not fit."""
        try:
            decoded = self._decoder.decode(state)
        except msgspec.MsgspecError as exc:
            log.warning(
                "ignoring snapshot", extra={"stream": id, "version": version, "error": str(exc)}
            )
            return None
        aggregate = self.cls.blank(id)
        for name in self.fields:
            setattr(aggregate, name, getattr(decoded, name))
        aggregate.replay((), version)
        return aggregate
