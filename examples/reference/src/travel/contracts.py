"""Travel's published language: what other contexts may import (nothing is public yet)."""

from __future__ import annotations

from chronik.messaging import PublishedLanguage

LANGUAGE = PublishedLanguage([])
