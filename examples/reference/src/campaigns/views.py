"""Campaigns' queries: the campaign board, the budget, and where a publishing saga stands."""

from __future__ import annotations

from typing import Any

from campaigns.domain import CampaignStatus
from campaigns.handlers import CAMPAIGNS
from campaigns.processes import CampaignPublishing
from chronik.errors import StreamNotFoundError
from chronik.processes import InstanceView, ProcessesAdmin, process_stream
from chronik.projections import ReadModels

Doc = dict[str, Any]


class CampaignViews:
    def __init__(self, read_models: ReadModels, processes: ProcessesAdmin) -> None:
        self.read_models = read_models
        self.processes = processes

    async def campaigns(self, status: CampaignStatus | None, limit: int) -> list[Doc]:
        where = {"status": status.value} if status else None
        return await self.read_models.find("campaign_board", "campaigns", where=where, limit=limit)

    async def campaign(self, campaign_id: str) -> Doc:
        doc = await self.read_models.get("campaign_board", "campaigns", campaign_id)
        if doc is None:
            raise StreamNotFoundError(CAMPAIGNS + campaign_id)
        return doc

    async def budget(self) -> Doc:
        return await self.read_models.get("campaign_board", "budget", "main") or {}

    async def publishing(self, campaign_id: str) -> InstanceView:
        """Where the publishing saga of this campaign stands."""
        process = await self.processes.instance(CampaignPublishing.name, campaign_id)
        if process is None:
            raise StreamNotFoundError(process_stream(CampaignPublishing.name, campaign_id))
        return process
