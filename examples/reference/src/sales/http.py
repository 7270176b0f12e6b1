"""Sales over HTTP: thin routes turning requests into commands on leads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from chronik.errors import StreamNotFoundError
from chronik.http.app import CommandResult, run_command, wait_consistent
from chronik.http.auth import PERSONAL_DATA
from chronik.http.fields import WholeNumber
from chronik.runtime.service import Runtime
from sales import domain, handlers

PROJECTIONS = ["lead_search", "lead_analysis"]


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
    status: str
    contacts: int
    order_id: str | None = None
    updated_at: str


class LeadState(BaseModel):
    lead_id: str
    version: int
    status: str
    name: str
    phone: str
    contacts: int
    follow_ups: int
    order_id: str | None
    order_cents: int


class HistoryEntry(BaseModel):
    version: int
    position: int
    type: str
    recorded_at: datetime
    data: dict[str, Any]


class Funnel(BaseModel):
    counts: dict[str, int]


def _now() -> datetime:
    return datetime.now(UTC)


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    store = runtime.store

    def id_of(stream_id: str) -> str:
        return stream_id.removeprefix(handlers.PREFIX)

    async def consistent(request: Request) -> None:
        await wait_consistent(request, PROJECTIONS)

    @router.post("/leads", status_code=201, response_model=CommandResult)
    async def create_lead(body: NewLead, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            lead_id = uuid.uuid4().hex[:12]
            details = domain.ContactDetails(body.name, body.phone)
            return lead_id, await handlers.initialize(store, lead_id, details, _now())

        return await run_command(request, response, work, id_of=id_of)

    async def change(
        request: Request, response: Response, lead_id: str, act: Callable[[domain.Lead], object]
    ) -> CommandResult:
        """Load the lead, run the domain method, save: one command, one aggregate."""

        async def work() -> tuple[str, Any]:
            return lead_id, await handlers.change(store, lead_id, act)

        return await run_command(request, response, work, id_of=id_of)

    @router.post("/leads/{lead_id}/contact", response_model=CommandResult)
    async def contact(lead_id: str, body: Note, request: Request, response: Response) -> Any:
        return await change(
            request, response, lead_id, lambda lead: lead.contact(body.note, _now())
        )

    @router.put("/leads/{lead_id}/contact-details", response_model=CommandResult)
    async def contact_details(
        lead_id: str, body: NewLead, request: Request, response: Response
    ) -> Any:
        details = domain.ContactDetails(body.name, body.phone)
        return await change(
            request, response, lead_id, lambda lead: lead.change_contact_details(details, _now())
        )

    @router.post("/leads/{lead_id}/follow-up", response_model=CommandResult)
    async def follow_up(lead_id: str, body: FollowUp, request: Request, response: Response) -> Any:
        on = body.on if body.on.tzinfo else body.on.replace(tzinfo=UTC)
        return await change(
            request,
            response,
            lead_id,
            lambda lead: lead.set_follow_up(on, body.needs_visit, body.city, _now()),
        )

    @router.post("/leads/{lead_id}/orders", response_model=CommandResult)
    async def submit_order(
        lead_id: str, body: NewOrder, request: Request, response: Response
    ) -> Any:
        amount = domain.Money(body.amount_cents, body.currency)
        order_id = f"order-{uuid.uuid4().hex[:8]}"
        return await change(
            request, response, lead_id, lambda lead: lead.submit_order(order_id, amount, _now())
        )

    @router.post("/leads/{lead_id}/payment", response_model=CommandResult)
    async def confirm_payment(
        lead_id: str, body: Payment, request: Request, response: Response
    ) -> Any:
        return await change(
            request, response, lead_id, lambda lead: lead.confirm_payment(body.order_id, _now())
        )

    @router.post("/leads/{lead_id}/close", response_model=CommandResult)
    async def close(lead_id: str, body: Reason, request: Request, response: Response) -> Any:
        return await change(
            request, response, lead_id, lambda lead: lead.close(body.reason, _now())
        )

    @router.post("/leads/{lead_id}/anonymize", response_model=CommandResult)
    async def anonymize(lead_id: str, request: Request, response: Response) -> Any:
        """Forget the lead's personal data: events keep their shape, names read as placeholders.

        LeadAnonymized forgets the lead in its own append: there is no second step to miss.
        """
        return await change(request, response, lead_id, lambda lead: lead.anonymize(_now()))

    @router.get(
        "/leads",
        response_model=list[LeadView],
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def find_leads(
        q: Annotated[
            str | None, Query(max_length=100, description="Part of a name or phone")
        ] = None,
        status: Annotated[str | None, Query(max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Any:
        rm = runtime.engine.read_models
        if q:
            # With a status the matches are filtered after the search: search them all
            # (the most a page may hold), or a lead of that status may be cut off.
            wide = 200 if status else limit
            found = {
                d["lead_id"]: d
                for d in await rm.search("lead_search", "leads", "name", q, limit=wide)
            }
            for d in await rm.search("lead_search", "leads", "phone", q, limit=wide):
                found.setdefault(d["lead_id"], d)
            docs = list(found.values())
            if status:
                docs = [d for d in docs if d["status"] == status]
            return docs[:limit]
        where = {"status": status} if status else None
        return await rm.find(
            "lead_search", "leads", where=where, order_by="updated_at", descending=True, limit=limit
        )

    @router.get(
        "/leads/{lead_id}",
        response_model=LeadView,
        dependencies=[PERSONAL_DATA, Depends(consistent)],
    )
    async def get_lead(lead_id: str) -> Any:
        doc = await runtime.engine.read_models.get("lead_search", "leads", lead_id)
        if doc is None:
            raise StreamNotFoundError(handlers.PREFIX + lead_id)
        return doc

    @router.get("/leads/{lead_id}/state", response_model=LeadState, dependencies=[PERSONAL_DATA])
    async def lead_state(
        lead_id: str,
        version: Annotated[
            int | None, Query(ge=1, le=2**31 - 1, description="As of this version")
        ] = None,
        at: Annotated[
            datetime | None, Query(description="As of this time (with a timezone)")
        ] = None,
    ) -> Any:
        """The lead as the aggregate was: now, as of a version, or as of a time.

        Given both a version and a time, the lead as of whichever came first.
        """
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        leads = handlers.leads(store)
        if version is not None and at is not None:
            version = min(version, await store.version_at(leads.stream_id(lead_id), at))
            at = None
            if version == 0:
                raise StreamNotFoundError(leads.stream_id(lead_id), "at or before that time")
        lead = await leads.load(lead_id, version=version, at=at)
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
        )

    @router.get(
        "/leads/{lead_id}/history",
        response_model=list[HistoryEntry],
        dependencies=[PERSONAL_DATA],
    )
    async def lead_history(lead_id: str) -> Any:
        import msgspec

        records = await store.read_stream(handlers.PREFIX + lead_id)
        if not records:
            raise StreamNotFoundError(handlers.PREFIX + lead_id)
        return [
            HistoryEntry(
                version=r.version,
                position=r.position,
                type=r.type,
                recorded_at=r.recorded_at,
                data=msgspec.to_builtins(r.event),
            )
            for r in records
        ]

    @router.get("/funnel", response_model=Funnel, dependencies=[Depends(consistent)])
    async def funnel() -> Any:
        doc = await runtime.engine.read_models.get("lead_analysis", "funnel", "all") or {}
        return Funnel(counts={k: int(v) for k, v in doc.items()})

    return router
