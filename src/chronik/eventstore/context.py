"""Ambient metadata: what every append in the current task inherits.

An HTTP request or a message handler sets it once (correlation id, causation id,
``traceparent``, an inbox tag); appends made while it is set carry it without the
code in between passing it along. It is read when an append is prepared, in the
caller's task, so it travels with the append even when another task commits it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

from chronik.eventstore.port import Metadata

__all__ = [
    "IdempotencyScope",
    "ambient_metadata",
    "current_idempotency",
    "current_metadata",
    "idempotency_scope",
    "merge_metadata",
]

_ambient: ContextVar[Metadata | None] = ContextVar("chronik_ambient_metadata", default=None)


class IdempotencyScope:
    """Event ids derived from a request's idempotency key: a retry reproduces them.

    The n-th event appended in the scope gets ``uuid5(namespace, f"{key}/{n}")``: a
    retried request appends the same ids, which the store refuses as duplicates, so
    its effect happens once and its outcome can be read back from the stored events.

    With ``resume``, an append whose events are all already stored, in the same
    stream, under these ids returns the stored outcome instead of raising
    DuplicateEventError: a retried handler that appends several times skips what it
    did before and goes on with the rest.
    """

    NAMESPACE = uuid.UUID("5b0c1f36-7a52-4c9e-9a0b-3d1f0e0c6c11")

    def __init__(self, key: str, fingerprint: str, *, resume: bool = False) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self.resume = resume
        self.count = 0  # events appended in the scope, new or found stored
        self.found = 0  # of which were found stored (resume)

    def next_ids(self, n: int) -> list[uuid.UUID]:
        """The ids of the next ``n`` events; ``rewind`` takes them back if none is stored."""
        ids = [self.event_id(self.count + i) for i in range(n)]
        self.count += n
        return ids

    def rewind(self, count: int) -> None:
        """Back to ``count`` events: the ids taken since were not stored and are free again.

        The store calls it when an append fails (a version conflict, a refused argument,
        a lost connection), so that the n-th event the scope stores always has id n: a
        retry finds its first effect under id 0, and a command run again after a
        conflict reuses the ids it would have written. Should a failed append have been
        stored after all (a commit whose answer was lost), reusing its ids is refused
        as a duplicate: the effect still happens once. Appends in one scope run one
        after another; ids taken concurrently would depend on their order anyway.
        """
        self.count = min(self.count, count)

    def event_id(self, index: int) -> uuid.UUID:
        return uuid.uuid5(self.NAMESPACE, f"{self.key}/{index}")


_idempotency: ContextVar[IdempotencyScope | None] = ContextVar("chronik_idempotency", default=None)


@contextlib.contextmanager
def idempotency_scope(
    key: str, fingerprint: str, *, resume: bool = False
) -> Iterator[IdempotencyScope]:
    """Appends in this block get ids derived from ``key``; see IdempotencyScope."""
    scope = IdempotencyScope(key, fingerprint, resume=resume)
    token = _idempotency.set(scope)
    try:
        with ambient_metadata(Metadata(headers={"chronik-idempotency": fingerprint})):
            yield scope
    finally:
        _idempotency.reset(token)


def current_idempotency() -> IdempotencyScope | None:
    return _idempotency.get()


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
