"""Campaigns' published language: the only module other contexts may import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chronik.messaging import PublishedLanguage, public


@public("campaigns.campaign_live.v1")
@dataclass(frozen=True)
class CampaignLive:
    """A campaign went live: the partner published it."""

    campaign_id: str
    name: str
    live_at: datetime


LANGUAGE = PublishedLanguage([CampaignLive])
