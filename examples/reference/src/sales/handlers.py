"""Sales' application layer: commands on leads, and what leaves the context."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from chronik.eventstore import AppendResult, BaseEventStore, RecordedEvent, Repository
from sales import contracts, domain

PREFIX = "lead-"


def leads(store: BaseEventStore) -> Repository[domain.Lead]:
    return Repository(store, domain.Lead, prefix=PREFIX, snapshot_every=50)


def publish(recorded: RecordedEvent) -> object | None:
    """The translation out: orders, and follow-ups that need a visit. Nothing personal."""
    event = recorded.event
    if isinstance(event, domain.OrderSubmitted):
        return contracts.OrderSubmitted(
            event.lead_id, event.order_id, event.amount_cents, event.currency, event.at
        )
    if isinstance(event, domain.FollowUpSet) and event.needs_visit:
        return contracts.VisitNeeded(event.lead_id, event.city, event.on)
    return None


async def initialize(
    store: BaseEventStore, lead_id: str, details: domain.ContactDetails, at: datetime
) -> AppendResult:
    result = await leads(store).save(domain.Lead.initialize(lead_id, details, at))
    assert result is not None
    return result


async def change(
    store: BaseEventStore, lead_id: str, command: Callable[[domain.Lead], object]
) -> AppendResult:
    """Run ``command`` on the lead and save (retried on a conflict); where it stands."""
    repo = leads(store)
    _, result = await repo.handle(lead_id, command)
    if result is not None:
        return result
    version = await store.stream_version(repo.stream_id(lead_id))
    head = await store.head_position()
    return AppendResult(repo.stream_id(lead_id), version, head, head)
