"""The transactional outbox: public events written in the same transaction as the events."""

from __future__ import annotations

from collections.abc import Callable

from chronik.errors import ConfigurationError
from chronik.eventstore.base import BaseEventStore
from chronik.eventstore.port import RecordedEvent
from chronik.messaging.contracts import PublishedLanguage
from chronik.messaging.envelope import encode_envelope, envelope
from chronik.messaging.port import MessageStorage, OutboxRow

__all__ = ["Outbox", "Translate"]

#: Decides what leaves the context: the public event for a domain event, or None.
Translate = Callable[[RecordedEvent], object | None]


class Outbox:
    """Translates each appended event and stores what leaves the context, atomically.

    ``translate`` is the context's pure function from its domain events to its public
    events (``None``: the event stays inside). Domain events themselves never leave.
    Each outbox message carries its event's id (the broker's deduplication key) and
    position (the relay's order). ``storage`` is the message storage of the store's
    database (``Database.messages()``): the rows commit with the events.
    """

    def __init__(
        self,
        store: BaseEventStore,
        translate: Translate,
        language: PublishedLanguage,
        *,
        source: str,
        storage: MessageStorage,
    ) -> None:
        self.store = store
        self.translate = translate
        self.language = language
        self.source = source
        self.storage = storage
        self._installed = False

    async def setup(self) -> None:
        await self.storage.setup()
        if not self._installed:
            self.store.add_append_hook(self._hook)
            self._installed = True

    async def _hook(self, conn: object, events: list[RecordedEvent]) -> Callable[[], None] | None:
        rows = []
        for recorded in events:
            message = self.translate(recorded)
            if message is None:
                continue
            spec = self.language.spec_of(message)
            if self.language.class_of(spec.type) is not type(message):
                raise ConfigurationError(
                    f"{type(message).__qualname__} is not in the published language of "
                    f"{self.source!r}"
                )
            if spec.source != self.source:
                raise ConfigurationError(
                    f"{self.source!r} may only publish its own events, not {spec.type!r}"
                )
            headers = recorded.metadata.headers or {}
            body = envelope(
                id=str(recorded.id),
                source=self.source,
                type=spec.type,
                subject=recorded.stream_id,
                time=recorded.recorded_at,
                data=self.language.data_of(message),
                correlationid=recorded.metadata.correlation_id,
                causationid=recorded.metadata.causation_id,
                traceparent=headers.get("traceparent"),
                tracestate=headers.get("tracestate"),
            )
            rows.append(
                OutboxRow(
                    recorded.position,
                    str(recorded.id),
                    recorded.stream_id,
                    spec.type,
                    encode_envelope(body),
                )
            )
        if not rows:
            return None
        return await self.storage.add_outbox(conn, rows)
