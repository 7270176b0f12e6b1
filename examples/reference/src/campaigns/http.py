"""Campaigns over HTTP: create and activate campaigns, watch the saga, see the budget."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from campaigns import handlers
from campaigns.domain import Campaign
from campaigns.processes import CampaignPublishing
from chronik.errors import StreamNotFoundError
from chronik.http.app import CommandResult, run_command, wait_consistent
from chronik.http.fields import WholeNumber
from chronik.processes import ProcessesAdmin, process_stream
from chronik.runtime.service import Runtime

Behaviour = Literal["confirm", "reject", "delay", "fail", "silent"]


class NewCampaign(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Spring sale"])
    cost_cents: WholeNumber = Field(gt=0, le=10**12)
    partner_behaviour: Behaviour = Field(
        "confirm", description="How the fake partner answers: the unhappy paths on demand"
    )


class TopUp(BaseModel):
    amount_cents: WholeNumber = Field(gt=0, le=10**12)


class CampaignView(BaseModel):
    campaign_id: str
    name: str
    cost_cents: int
    status: str
    partner_behaviour: str
    partner_reference: str | None = None
    reason: str | None = None


class BudgetView(BaseModel):
    total_cents: int = 0
    reserved_cents: int = 0
    available_cents: int = 0


class ProcessView(BaseModel):
    status: str
    finished: bool
    steps: int
    timeouts: dict[str, Any]


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    store = runtime.store

    def processes() -> ProcessesAdmin:
        # Made when asked: the routes are made before the runtime opened its database.
        return ProcessesAdmin(runtime.database.projections(), runtime.store)

    def id_of(stream_id: str) -> str:
        return stream_id.removeprefix("campaign-")

    async def consistent(request: Request) -> None:
        await wait_consistent(request, ["campaign_board"])

    @router.post("/campaigns", status_code=201, response_model=CommandResult)
    async def create(body: NewCampaign, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            campaign_id = uuid.uuid4().hex[:12]
            campaign = Campaign.create(
                campaign_id, body.name, body.cost_cents, body.partner_behaviour, datetime.now(UTC)
            )
            return campaign_id, await handlers.campaigns(store).save(campaign)

        return await run_command(request, response, work, id_of=id_of)

    @router.post("/campaigns/{campaign_id}/activate", response_model=CommandResult)
    async def activate(campaign_id: str, request: Request, response: Response) -> Any:
        """Start the publishing saga: reserve budget, ask the partner, compensate on no."""

        async def work() -> tuple[str, Any]:
            _, result = await handlers.campaigns(store).handle(
                campaign_id, lambda c: c.activate(datetime.now(UTC))
            )
            return campaign_id, result

        return await run_command(request, response, work, id_of=id_of)

    @router.get("/campaigns", response_model=list[CampaignView], dependencies=[Depends(consistent)])
    async def list_campaigns(
        status: Annotated[str | None, Query(max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Any:
        where = {"status": status} if status else None
        return await runtime.engine.read_models.find(
            "campaign_board", "campaigns", where=where, limit=limit
        )

    @router.get(
        "/campaigns/{campaign_id}", response_model=CampaignView, dependencies=[Depends(consistent)]
    )
    async def get_campaign(campaign_id: str) -> Any:
        doc = await runtime.engine.read_models.get("campaign_board", "campaigns", campaign_id)
        if doc is None:
            raise StreamNotFoundError(f"campaign-{campaign_id}")
        return doc

    @router.get("/campaigns/{campaign_id}/publishing", response_model=ProcessView)
    async def publishing(campaign_id: str) -> Any:
        """Where the publishing saga of this campaign stands."""
        process = await processes().instance(CampaignPublishing.name, campaign_id)
        if process is None:
            raise StreamNotFoundError(process_stream(CampaignPublishing.name, campaign_id))
        return ProcessView(
            status=process.status,
            finished=process.finished,
            steps=process.steps,
            timeouts=process.timeouts,
        )

    @router.get("/budget", response_model=BudgetView, dependencies=[Depends(consistent)])
    async def budget() -> Any:
        return await runtime.engine.read_models.get("campaign_board", "budget", "main") or {}

    @router.post("/budget/top-up", response_model=CommandResult)
    async def top_up(body: TopUp, request: Request, response: Response) -> Any:
        async def work() -> tuple[str, Any]:
            _, result = await handlers.budgets(store).handle(
                handlers.BUDGET,
                lambda b: b.increase(body.amount_cents, "top-up", datetime.now(UTC)),
                retries=20,
                create=True,
            )
            return handlers.BUDGET, result

        return await run_command(request, response, work, id_of=lambda s: s.removeprefix("budget-"))

    return router
