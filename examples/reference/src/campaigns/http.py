"""Campaigns over HTTP: each route translates a request into a command or a query, and back.

The use cases live in ``campaigns.handlers`` and the questions in ``campaigns.views``;
a broken rule (a ``DomainError`` subclass) answers 409 with the problem type it declares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from campaigns import commands, domain
from campaigns.handlers import BUDGETS, CAMPAIGNS, CampaignHandlers, Changed
from campaigns.partner import BEHAVIOUR_HEADER, Behaviour
from campaigns.views import CampaignViews
from chronik.eventstore import Metadata
from chronik.http.app import CommandResult, consistent_with, run_command
from chronik.http.fields import WholeNumber
from chronik.processes import ProcessesAdmin
from chronik.runtime.service import Runtime


class NewCampaign(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Spring sale"])
    cost_cents: WholeNumber = Field(gt=0, le=10**12)
    partner_behaviour: Behaviour = Field(
        "confirm",
        description=(
            "How the demo's fake partner answers (the unhappy paths on demand): a setting "
            "of the fake, kept beside the campaign's first event, never in it"
        ),
    )


class TopUp(BaseModel):
    amount_cents: WholeNumber = Field(gt=0, le=10**12)


class CampaignView(BaseModel):
    campaign_id: str
    name: str
    cost_cents: int
    status: domain.CampaignStatus
    partner_behaviour: Behaviour
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


def routes(runtime: Runtime, handlers: Callable[[Runtime], CampaignHandlers]) -> APIRouter:
    router = APIRouter()

    # Made when asked: the routes are made before the runtime opened its store.
    def views() -> CampaignViews:
        admin = ProcessesAdmin(runtime.database.projections(), runtime.store)
        return CampaignViews(runtime.engine.read_models, admin)

    consistent = consistent_with(["campaign_board"])

    def command(
        request: Request, response: Response, work: Callable[[], Awaitable[Changed]], prefix: str
    ) -> Awaitable[CommandResult]:
        return run_command(request, response, work, id_of=lambda s: s.removeprefix(prefix))

    @router.post("/campaigns", status_code=201, response_model=CommandResult)
    async def create(body: NewCampaign, request: Request, response: Response) -> CommandResult:
        c = commands.CreateCampaign(body.name, body.cost_cents)
        demo = Metadata(headers={BEHAVIOUR_HEADER: body.partner_behaviour})
        return await command(
            request,
            response,
            lambda: handlers(runtime).create_campaign(c, metadata=demo),
            CAMPAIGNS,
        )

    @router.post("/campaigns/{campaign_id}/activate", response_model=CommandResult)
    async def activate(campaign_id: str, request: Request, response: Response) -> CommandResult:
        """Start the publishing saga: reserve budget, ask the partner, compensate on no."""
        c = commands.ActivateCampaign(campaign_id)
        return await command(request, response, lambda: handlers(runtime).activate(c), CAMPAIGNS)

    @router.get("/campaigns", response_model=list[CampaignView], dependencies=[Depends(consistent)])
    async def list_campaigns(
        status: domain.CampaignStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[CampaignView]:
        return [CampaignView.model_validate(d) for d in await views().campaigns(status, limit)]

    @router.get(
        "/campaigns/{campaign_id}", response_model=CampaignView, dependencies=[Depends(consistent)]
    )
    async def get_campaign(campaign_id: str) -> CampaignView:
        return CampaignView.model_validate(await views().campaign(campaign_id))

    @router.get("/campaigns/{campaign_id}/publishing", response_model=ProcessView)
    async def publishing(campaign_id: str) -> ProcessView:
        """Where the publishing saga of this campaign stands."""
        p = await views().publishing(campaign_id)
        return ProcessView(status=p.status, finished=p.finished, steps=p.steps, timeouts=p.timeouts)

    @router.get("/budget", response_model=BudgetView, dependencies=[Depends(consistent)])
    async def budget() -> BudgetView:
        return BudgetView.model_validate(await views().budget())

    @router.post("/budget/top-up", response_model=CommandResult)
    async def top_up(body: TopUp, request: Request, response: Response) -> CommandResult:
        c = commands.TopUpBudget(body.amount_cents)
        return await command(request, response, lambda: handlers(runtime).top_up(c), BUDGETS)

    return router
