"""Sales' queries: the read models (search, funnel, promotions) and the leads' history.

Reads never change anything. The projections answer searches and lists; the event
store answers what only it knows: a lead as it was (time travel) and its history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chronik.errors import StreamNotFoundError
from chronik.eventstore import RecordedEvent, Repository
from chronik.projections import ReadModels
from sales import domain
from sales.handlers import PREFIX

Doc = dict[str, Any]

#: the most one page of leads holds
MAX_PAGE = 200


class LeadViews:
    """Answers sales' questions from the read models and the leads' streams."""

    def __init__(self, read_models: ReadModels, leads: Repository[domain.Lead]) -> None:
        self.read_models = read_models
        self.leads = leads

    async def find(self, q: str | None, status: domain.Status | None, limit: int) -> list[Doc]:
        """Leads whose name or phone holds ``q`` (any, newest first), of ``status`` if given."""
        rm = self.read_models
        if not q:
            where = {"status": status.value} if status else None
            return await rm.find(
                "lead_search",
                "leads",
                where=where,
                order_by="updated_at",
                descending=True,
                limit=limit,
            )
        # With a status the matches are filtered after the search: search them all
        # (the most a page may hold), or a lead of that status may be cut off.
        wide = MAX_PAGE if status else limit
        found = {
            d["lead_id"]: d for d in await rm.search("lead_search", "leads", "name", q, limit=wide)
        }
        for d in await rm.search("lead_search", "leads", "phone", q, limit=wide):
            found.setdefault(d["lead_id"], d)
        docs = list(found.values())
        if status:
            docs = [d for d in docs if d["status"] == status]
        return docs[:limit]

    async def get(self, lead_id: str) -> Doc:
        doc = await self.read_models.get("lead_search", "leads", lead_id)
        if doc is None:
            raise StreamNotFoundError(PREFIX + lead_id)
        return doc

    async def funnel(self) -> dict[str, int]:
        doc = await self.read_models.get("lead_analysis", "funnel", "all") or {}
        return {k: int(v) for k, v in doc.items()}

    async def promotions(self) -> list[Doc]:
        """The campaigns that went live, as campaigns told sales."""
        return await self.read_models.find("promotions", "live", order_by="since", limit=MAX_PAGE)

    async def state(
        self, lead_id: str, version: int | None = None, at: datetime | None = None
    ) -> domain.Lead:
        """The lead as the aggregate was: now, as of a version, or as of a time.

        Given both a version and a time, the lead as of whichever came first.
        """
        if version is not None and at is not None:
            stream_id = self.leads.stream_id(lead_id)
            version = min(version, await self.leads.store.version_at(stream_id, at))
            at = None
            if version == 0:
                raise StreamNotFoundError(stream_id, "at or before that time")
        return await self.leads.load(lead_id, version=version, at=at)

    async def history(self, lead_id: str) -> list[RecordedEvent]:
        records = await self.leads.store.read_stream(self.leads.stream_id(lead_id))
        if not records:
            raise StreamNotFoundError(self.leads.stream_id(lead_id))
        return list(records)
