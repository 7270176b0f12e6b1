"""The console's outbox and inbox: the backlog, the relay's and consumers' rates, dead letters.

The backlog (messages waiting for the relay, the oldest one's age) and the dead letters
come from ``MessagingAdmin``, as ``chronik outbox`` and ``chronik dead-letters`` read
them. The rates are those of the relay and the consumers this process runs: their
counters (``Relay.status().relayed``, ``Consumer.handled``, the same ``/metrics``
exports) read at two polls, over the time between them. A process that runs no relay or
no consumer says so: another process of the service does that work.

Redelivering a dead letter stores a request the running consumer takes; the page shows
the letter until the consumer has handled it (or shows its new error).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chronik.console.app import Console, Nav
from chronik.console.live import join_samples, parse_samples, rate, sparkline
from chronik.errors import NotFoundError
from chronik.messaging.admin import MessagingAdmin

__all__ = ["NAV", "admin", "routes"]

NAV = Nav("Outbox & inbox", "console_messaging")

#: how many dead letters the page lists (the newest first)
LETTERS_SHOWN = 50

Reading = Annotated[str | None, Query(max_length=200, description="COUNT@SECONDS before")]
Samples = Annotated[str | None, Query(max_length=2000, description="rate samples so far")]


def admin(console: Console) -> MessagingAdmin:
    """The messaging admin of the service's database."""
    return MessagingAdmin(console.runtime.messages)


def routes(console: Console) -> APIRouter:
    router = console.router()

    async def context(request: Request) -> dict[str, Any]:
        runtime = console.runtime
        found = admin(console)
        backlog = await found.outbox_backlog()
        now = datetime.now(UTC)
        oldest_age = (
            None
            if backlog.oldest_pending is None
            else max(0.0, (now - backlog.oldest_pending).total_seconds())
        )
        at = time.monotonic()
        query = request.query_params
        relay: dict[str, Any] | None = None
        if runtime.relay is not None:
            status = runtime.relay.status()
            per_second = rate(status.relayed, at, query.get("relayed"))
            samples = parse_samples(query.get("samples"))
            if per_second is not None:
                samples.append(per_second)
            relay = {
                "state": status.state,
                "error": status.error,
                "relayed": status.relayed,
                "rate": per_second,
                "reading": f"{status.relayed}@{at:.3f}",
                "chart": sparkline(samples),
                "samples": join_samples(samples),
            }
        letters = await found.dead_letters()
        letters.sort(key=lambda d: d.dead_at, reverse=True)
        dead_by_consumer: dict[str, int] = {}
        for letter in letters:
            dead_by_consumer[letter.consumer] = dead_by_consumer.get(letter.consumer, 0) + 1
        consumers = []
        for consumer in runtime.consumers:
            worker = consumer.worker_status()
            key = f"handled_{consumer.name}"
            consumers.append(
                {
                    "name": consumer.name,
                    "state": worker.state,
                    "reason": worker.reason,
                    "leading": worker.leading,
                    "handled": consumer.handled,
                    "dead": dead_by_consumer.get(consumer.name, 0),
                    "rate": rate(consumer.handled, at, query.get(key)),
                    "key": key,
                    "reading": f"{consumer.handled}@{at:.3f}",
                }
            )
        readings = {c["key"]: c["reading"] for c in consumers}
        if relay is not None:
            readings |= {"relayed": relay["reading"], "samples": relay["samples"]}
        return {
            "title": "Outbox and inbox",
            "backlog": backlog,
            "oldest_age": oldest_age,
            "relay": relay,
            "consumers": consumers,
            "letters": letters[:LETTERS_SHOWN],
            "letters_total": len(letters),
            "readings": readings,
            "actions": console.settings.console_actions,
            "notice": query.get("done"),
        }

    @router.get("/messaging", name="console_messaging", response_class=HTMLResponse)
    async def messaging(
        request: Request, relayed: Reading = None, samples: Samples = None
    ) -> HTMLResponse:
        return console.render(request, "messaging.html", await context(request))

    @router.get("/messaging/live", name="console_messaging_live", response_class=HTMLResponse)
    async def live(
        request: Request, relayed: Reading = None, samples: Samples = None
    ) -> HTMLResponse:
        return console.render(request, "messaging_live.html", await context(request))

    @router.post(
        "/messaging/dead-letters/{consumer}/{message_id}/redeliver", name="console_redeliver"
    )
    async def redeliver(request: Request, consumer: str, message_id: str) -> Response:
        console.check_action(request)
        try:
            await admin(console).redeliver(consumer, message_id)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        done = f"redelivery of {message_id} to {consumer} asked for"
        url = console.href(request, "console_messaging", {"done": done})
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    return router
