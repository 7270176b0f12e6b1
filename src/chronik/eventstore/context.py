"""Ambient metadata: what every append in the current task inherits.

An HTTP request or a message handler sets it once (correlation id, causation id,
``traceparent``, an inbox tag); appends made while it is set carry it without the
code in between passing it along. It is read when an append is prepared, in the
caller's task, so it travels with the append even when another task commits it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from chronik.eventstore.port import Metadata

__all__ = ["ambient_metadata", "current_metadata", "merge_metadata"]

_ambient: ContextVar[Metadata | None] = ContextVar("chronik_ambient_metadata", default=None)


@contextlib.contextmanager
def ambient_metadata(metadata: Metadata, *, replace: bool = False) -> Iterator[None]:
    """Appends in this block inherit ``metadata``, refined by any they are given.

    Nested blocks refine the outer one, unless ``replace`` (a new request or message
    handled in a task that inherited another's).
    """
    outer = None if replace else _ambient.get()
    token = _ambient.set(merge_metadata(metadata, outer))
    try:
        yield
    finally:
        _ambient.reset(token)


def current_metadata() -> Metadata | None:
    return _ambient.get()


def merge_metadata(specific: Metadata | None, general: Metadata | None) -> Metadata | None:
    """``specific`` wins field by field; headers are merged."""
    if general is None:
        return specific
    if specific is None:
        return general
    headers = {**(general.headers or {}), **(specific.headers or {})}
    return Metadata(
        specific.correlation_id or general.correlation_id,
        specific.causation_id or general.causation_id,
        headers or None,
    )
