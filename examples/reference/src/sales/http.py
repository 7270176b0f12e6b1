"""Sales over HTTP: each route translates a request into a command or a query, and back.

The use cases live in ``sales.handlers`` and the questions in ``sales.views``; a
broken rule (a ``DomainError`` subclass) answers 409 with the problem type it declares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from chronik.http.app import CommandResult, consistent_with, run_command
from chronik.http.auth import PERSONAL_DATA
from chronik.http.fields import WholeNumber
from chronik.runtime.service import Runtime
from sales import commands, domain
from sales.handlers import PREFIX, Changed, LeadHandlers, leads
from sales.views import MAX_PAGE, LeadViews

PROJECTIONS = ["lead_search", "lead_analysis", "promotions"]


class NewLead(BaseModel):
    # The same rules as ContactDetails, so the document promises what the domain takes.
    name: str = Field(
        min_length=1, max_length=200, pattern=domain.NAME_PATTERN, examples=["Ada Lovelace"]
    )
    phone: str = Field(pattern=r"^\+?[0-9 ()\-]{5,20}$", examples=["+44 20 7946 0958"])


class Note(BaseModel):
    note: str = Field("", max_length=2000)


class FollowUp(BaseModel):
    on: datetime = Field(
        description=(
            "When to follow up: in the future and at most "
            f"{domain.FOLLOW_UP_HORIZON.days} days ahead, else 409 (a time without a "
            "timezone is taken as UTC)"
        )
    )
    needs_visit: bool = False
    city: str = Field("", max_length=100)


class NewOrder(BaseModel):
    amount_cents: WholeNumber = Field(
        gt=0, le=domain.MAX_CENTS, description="In the currency's minor unit (yen for JPY)"
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])


class Payment(BaseModel):
    order_id: str = Field(min_length=1, max_length=100)


class Reason(BaseModel):
    reason: str = Field("", max_length=500)


class LeadView(BaseModel):
    lead_id: str
    name: str
    phone: str
    status: domain.Status
    contacts: int
    order_id: str | None = None
    visit: domain.Visit | None = None
    updated_at: str


class LeadState(BaseModel):
    lead_id: str
    version: int
    status: domain.Status
    name: str
    phone: str
    contacts: int
    follow_ups: int
    order_id: str | None
    order_cents: int
    visit: domain.Visit | None = None
    visit_trip: str | None = None


class HistoryEntry(BaseModel):
    version: int
    position: int
    type: str
    recorded_at: datetime
    data: dict[str, Any]


class Funnel(BaseModel):
    counts: dict[str, int]


class PromotionView(BaseModel):
    campaign_id: str
    name: str
    since: str


def _utc(moment: datetime) -> datetime:
    """A time without a timezone is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def routes(runtime: Runtime, handlers: Callable[[Runtime], LeadHandlers]) -> APIRouter:
    router = APIRouter()

    # Made when asked: the routes are made before the runtime opened its store.
    def views() -> LeadViews:
        return LeadViews(runtime.engine.read_models, leads(runtime.store))

    consistent = consistent_with(PROJECTIONS)

    def command(
        request: Request, response: Response, work: Callable[[], Awaitable[Changed]]
    ) -> Awaitable[CommandResult]:
        return run_command(request, response, work, id_of=lambda s: s.removeprefix(PREFIX))

    @router.post("/leads", status_code=201, response_model=CommandResult)
    async def create_lead(body: NewLead, request: Request, response: Response) -> CommandResult:
        c = commands.CreateLead(body.name, body.phone)
        return await command(request, response, lambda: handlers(runtime).create_lead(c))

    @router.post("/leads/{lead_id}/contact", response_model=CommandResult)
    async def contact(
        lead_id: str, body: Note, request: Request, response: Response
    ) -> CommandResult:
        c = commands.ContactLead(lead_id, body.note)
        return await command(request, response, lambda: handlers(runtime).contact(c))

    @router.put("/leads/{lead_id}/contact-details", response_model=CommandResult)
    async def contact_details(
        lead_id: str, body: NewLead, request: Request, response: Response
    ) -> CommandResult:
        c = commands.ChangeContactDetails(lead_id, body.name, body.phone)
        return await command(request, response, lambda: handlers(runtime).change_contact_details(c))

    @router.post("/leads/{lead_id}/follow-up", response_model=CommandResult)
    async def follow_up(
        lead_id: str, body: FollowUp, request: Request, response: Response
    ) -> CommandResult:
        c = commands.SetFollowUp(lead_id, _utc(body.on), body.needs_visit, body.city)
        return await command(request, response, lambda: handlers(runtime).set_follow_up(c))

    @router.post("/leads/{lead_id}/orders", response_model=CommandResult)
    async def submit_order(
        lead_id: str, body: NewOrder, request: Request, response: Response
    ) -> CommandResult:
        c = commands.SubmitOrder(lead_id, body.amount_cents, body.currency)
        return await command(request, response, lambda: handlers(runtime).submit_order(c))

    @router.post("/leads/{lead_id}/payment", response_model=CommandResult)
    async def confirm_payment(
        lead_id: str, body: Payment, request: Request, response: Response
    ) -> CommandResult:
        c = commands.ConfirmPayment(lead_id, body.order_id)
        return await command(request, response, lambda: handlers(runtime).confirm_payment(c))

    @router.post("/leads/{lead_id}/close", response_model=CommandResult)
    async def close(
        lead_id: str, body: Reason, request: Request, response: Response
    ) -> CommandResult:
        c = commands.CloseLead(lead_id, body.reason)
        return await command(request, response, lambda: handlers(runtime).close(c))

    @router.post("/leads/{lead_id}/anonymize", response_model=CommandResult)
    async def anonymize(lead_id: str, request: Request, response: Response) -> CommandResult:
        """Forget the lead's personal data: events keep their shape, names read as placeholders.

        LeadAnonymized forgets the lead in its own append: there is no second step to miss.
        """
        c = commands.AnonymizeLead(lead_id)
        return await command(request, response, lambda: handlers(runtime).anonymize(c))

    @router.get(
        "/leads",
        response_model=list[LeadView],
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def find_leads(
        q: Annotated[
            str | None, Query(max_length=100, description="Part of a name or phone")
        ] = None,
        status: domain.Status | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> list[LeadView]:
        return [LeadView.model_validate(d) for d in await views().find(q, status, limit)]

    @router.get(
        "/leads/{lead_id}",
        response_model=LeadView,
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def get_lead(lead_id: str) -> LeadView:
        return LeadView.model_validate(await views().get(lead_id))

    @router.get("/leads/{lead_id}/state", response_model=LeadState, dependencies=[PERSONAL_DATA])
    async def lead_state(
        lead_id: str,
        version: Annotated[
            int | None, Query(ge=1, le=2**31 - 1, description="As of this version")
        ] = None,
        at: Annotated[
            datetime | None, Query(description="As of this time (with a timezone)")
        ] = None,
    ) -> LeadState:
        """The lead as the aggregate was: now, as of a version, or as of a time.

        Given both a version and a time, the lead as of whichever came first.
        """
        lead = await views().state(lead_id, version, None if at is None else _utc(at))
        return LeadState(
            lead_id=lead.id,
            version=lead.version,
            status=lead.status,
            name=lead.name,
            phone=lead.phone,
            contacts=lead.contacts,
            follow_ups=lead.follow_ups,
            order_id=lead.order_id,
            order_cents=lead.order_cents,
            visit=lead.visit,
            visit_trip=lead.visit_trip,
        )

    @router.get(
        "/leads/{lead_id}/history",
        response_model=list[HistoryEntry],
        dependencies=[PERSONAL_DATA],
    )
    async def lead_history(lead_id: str) -> list[HistoryEntry]:
        return [
            HistoryEntry(
                version=r.version,
                position=r.position,
                type=r.type,
                recorded_at=r.recorded_at,
                data=msgspec.to_builtins(r.event),
            )
            for r in await views().history(lead_id)
        ]

    @router.get("/funnel", response_model=Funnel, dependencies=[Depends(consistent)])
    async def funnel() -> Funnel:
        return Funnel(counts=await views().funnel())

    @router.get(
        "/promotions", response_model=list[PromotionView], dependencies=[Depends(consistent)]
    )
    async def promotions() -> list[PromotionView]:
        """The campaigns that went live (campaigns publishes them; sales listens)."""
        return [PromotionView.model_validate(d) for d in await views().promotions()]

    return router
