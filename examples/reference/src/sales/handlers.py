"""Sales' application layer: one handler per use case, over the leads' repository.

Each handler takes a typed command (``sales.commands``), loads one lead, runs one domain
method and saves: one command, one aggregate, one append. The time comes from the
injected clock and new ids from the injected id factory, so a unit test runs a handler
on the memory store with a virtual clock (tests/reference/test_sales_handlers.py). HTTP
routes, the consumer of travel's events and tests call the same handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

from campaigns import contracts as campaigns
from chronik.eventstore import AppendResult, BaseEventStore, RecordedEvent, Repository
from chronik.messaging import MessageContext
from chronik.processes import Clock, SystemClock
from sales import commands, contracts, domain
from travel import contracts as travel

#: the stream of lead X is ``lead-X``: the one place sales spells it
PREFIX = "lead-"
#: the campaigns that went live, one stream: ``promotions-live``
PROMOTIONS = "promotions-"
PROMOTIONS_ID = "live"

NewId = Callable[[], str]


def new_id() -> str:
    """A lead's id: 12 hex digits of a random UUID."""
    return uuid.uuid4().hex[:12]


def leads(store: BaseEventStore) -> Repository[domain.Lead]:
    return Repository(store, domain.Lead, prefix=PREFIX, snapshot_every=50)


def promotions(store: BaseEventStore) -> Repository[domain.Promotions]:
    return Repository(store, domain.Promotions, prefix=PROMOTIONS, snapshot_every=50)


class Changed(NamedTuple):
    """Which lead a command changed and where its append landed (or where it stands)."""

    id: str
    result: AppendResult


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


class LeadHandlers:
    """The use cases of sales, each one change to one aggregate (a lead, mostly)."""

    def __init__(
        self,
        store: BaseEventStore,
        *,
        clock: Clock | None = None,
        new_id: NewId = new_id,
    ) -> None:
        self.leads = leads(store)
        self.promotions = promotions(store)
        self.clock = clock or SystemClock()
        self.new_id = new_id

    async def create_lead(self, c: commands.CreateLead) -> Changed:
        lead_id = self.new_id()
        details = domain.ContactDetails(c.name, c.phone)
        result = await self.leads.save(domain.Lead.initialize(lead_id, details, self.clock.now()))
        assert result is not None  # a new lead always has an event
        return Changed(lead_id, result)

    async def change_contact_details(self, c: commands.ChangeContactDetails) -> Changed:
        details = domain.ContactDetails(c.name, c.phone)
        return await self._change(
            c.lead_id, lambda lead: lead.change_contact_details(details, self.clock.now())
        )

    async def contact(self, c: commands.ContactLead) -> Changed:
        return await self._change(c.lead_id, lambda lead: lead.contact(c.note, self.clock.now()))

    async def set_follow_up(self, c: commands.SetFollowUp) -> Changed:
        return await self._change(
            c.lead_id,
            lambda lead: lead.set_follow_up(c.on, c.needs_visit, c.city, self.clock.now()),
        )

    async def submit_order(self, c: commands.SubmitOrder) -> Changed:
        amount = domain.Money(c.amount_cents, c.currency)
        order_id = f"order-{self.new_id()[:8]}"
        return await self._change(
            c.lead_id, lambda lead: lead.submit_order(order_id, amount, self.clock.now())
        )

    async def confirm_payment(self, c: commands.ConfirmPayment) -> Changed:
        return await self._change(
            c.lead_id, lambda lead: lead.confirm_payment(c.order_id, self.clock.now())
        )

    async def close(self, c: commands.CloseLead) -> Changed:
        return await self._change(c.lead_id, lambda lead: lead.close(c.reason, self.clock.now()))

    async def anonymize(self, c: commands.AnonymizeLead) -> Changed:
        """Forget the lead's personal data; LeadAnonymized forgets it in its own append."""
        return await self._change(c.lead_id, lambda lead: lead.anonymize(self.clock.now()))

    async def record_visit_booked(self, c: commands.RecordVisitBooked) -> Changed:
        return await self._change(
            c.lead_id, lambda lead: lead.visit_booked(c.trip_id, self.clock.now())
        )

    async def record_visit_cancelled(self, c: commands.RecordVisitCancelled) -> Changed:
        return await self._change(
            c.lead_id, lambda lead: lead.visit_cancelled(c.trip_id, c.reason, self.clock.now())
        )

    async def note_live_campaign(self, c: commands.NoteLiveCampaign) -> None:
        await self.promotions.handle(
            PROMOTIONS_ID,
            lambda p: p.went_live(c.campaign_id, c.name, self.clock.now()),
            retries=20,
            create=True,
        )

    async def _change(self, lead_id: str, act: Callable[[domain.Lead], object]) -> Changed:
        """Run ``act`` on the lead and save (retried on a conflict); where it stands."""
        _, result = await self.leads.handle(lead_id, act)
        if result is None:  # nothing new: answer where the lead stands
            store = self.leads.store
            version = await store.stream_version(self.leads.stream_id(lead_id))
            head = await store.head_position()
            result = AppendResult(self.leads.stream_id(lead_id), version, head, head)
        return Changed(lead_id, result)

    # -- travel's and campaigns' published languages ---------------------------------------

    async def on_visit_trip_confirmed(
        self, trip: travel.VisitTripConfirmed, ctx: MessageContext
    ) -> None:
        """Inbound translation: the visit's trip is booked."""
        await self.record_visit_booked(commands.RecordVisitBooked(trip.lead_id, trip.trip_id))

    async def on_visit_trip_cancelled(
        self, trip: travel.VisitTripCancelled, ctx: MessageContext
    ) -> None:
        """Inbound translation: no trip after all; the lead is to be followed up again."""
        await self.record_visit_cancelled(
            commands.RecordVisitCancelled(trip.lead_id, trip.trip_id, trip.reason)
        )

    async def on_campaign_live(self, campaign: campaigns.CampaignLive, ctx: MessageContext) -> None:
        """Inbound translation: a campaign sales staff may pitch."""
        await self.note_live_campaign(
            commands.NoteLiveCampaign(campaign.campaign_id, campaign.name)
        )
