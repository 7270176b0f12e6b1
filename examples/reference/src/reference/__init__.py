"""The reference system: sales, campaigns and travel, three bounded contexts in one service.

``CHRONIK_APP=reference:specs`` runs all three (embedded); ``sales:spec``,
``campaigns:spec`` or ``travel:spec`` runs one (the split deployment). Beside them:
the demo (``reference.demo``), the event store's tour (``reference.tour``) and the
smallest complete service (``reference.tickets``).
"""

from __future__ import annotations

from typing import Any


def specs() -> list[Any]:
    import campaigns
    import sales
    import travel

    return [sales.spec(), campaigns.spec(), travel.spec()]
