"""Streams: find a stream, read its events as a timeline, step through its versions.

The state as of a version is the aggregate the service registered for the stream's
category (``ServiceSpec.aggregates``, by stream id prefix), loaded by its repository as
``chronik streams show --at`` loads it, and shown by its public attributes, with what
the version changed highlighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from chronik.console.app import Console, Nav
from chronik.domain import Aggregate
from chronik.errors import ChronikError, StreamNotFoundError
from chronik.eventstore import Repository

NAV = Nav("Streams", "console_streams")
PAGE = 50
#: the events of a stream's timeline shown at once, around the version in focus
WINDOW = 50


@dataclass(frozen=True)
class Field:
    """One attribute of an aggregate's state, and how the shown version changed it."""

    name: str
    value: str
    change: str  # "", "changed", "added", "removed"
    before: str | None = None


def show(value: Any) -> str:
    """A value as readable JSON (what the API would answer), or its repr."""
    try:
        return msgspec.json.encode(msgspec.to_builtins(value)).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def public_state(aggregate: Aggregate) -> dict[str, str]:
    """The aggregate's public attributes, shown: the generic view of any aggregate."""
    return {k: show(v) for k, v in sorted(vars(aggregate).items()) if not k.startswith("_")}


def changes(before: dict[str, str] | None, after: dict[str, str]) -> list[Field]:
    """The state ``after``, each attribute marked by how it differs from ``before``."""
    if before is None:
        return [Field(k, v, "") for k, v in after.items()]
    fields = []
    for name, value in after.items():
        if name not in before:
            fields.append(Field(name, value, "added"))
        elif before[name] != value:
            fields.append(Field(name, value, "changed", before[name]))
        else:
            fields.append(Field(name, value, ""))
    fields += [Field(k, v, "removed") for k, v in before.items() if k not in after]
    return fields


def aggregate_of(console: Console, stream_id: str) -> tuple[str, type[Aggregate]] | None:
    """The registered (prefix, aggregate class) of the stream's category; the longest
    prefix wins. None: no context of this service registered one."""
    found = [
        (prefix, cls)
        for spec in console.runtime.specs
        for prefix, cls in spec.aggregates.items()
        if stream_id.startswith(prefix)
    ]
    return max(found, key=lambda pair: len(pair[0])) if found else None


def routes(console: Console) -> APIRouter:
    router = console.router()

    @router.get("/streams", name="console_streams")
    async def streams(
        request: Request,
        prefix: str = "",
        category: str = "",
        event_type: Annotated[str, Query(alias="type")] = "",
        after: str = "",
    ) -> HTMLResponse:
        store = console.runtime.store
        types = store.types
        # A category is a stream id prefix (an aggregate's, as registered); a prefix typed
        # in narrows it further.
        start = prefix if prefix.startswith(category) else category + prefix
        page = await store.list_streams(start, PAGE + 1, after=after, event_type=event_type or None)
        rows = [{"stream_id": s, "version": v} for s, v in page[:PAGE]]
        more = rows[-1]["stream_id"] if len(page) > PAGE else None
        categories = sorted({p for spec in console.runtime.specs for p in spec.aggregates})
        known = sorted(types.name_of(cls) for cls in types.classes)
        return console.render(
            request,
            "streams.html",
            {
                "rows": rows,
                "prefix": prefix,
                "category": category,
                "type": event_type,
                "after": after,
                "next_after": more,
                "categories": categories,
                "event_types": known,
            },
        )

    @router.get("/streams/{stream_id:path}", name="console_stream")
    async def stream(request: Request, stream_id: str, at: int | None = None) -> HTMLResponse:
        store = console.runtime.store
        version = await store.stream_version(stream_id)
        if version == 0:
            raise HTTPException(404, f"stream {stream_id!r} has no events")
        at = version if at is None else at
        if not 1 <= at <= version:
            raise HTTPException(422, f"at={at}: the stream's versions are 1 to {version}")
        # A window of the timeline around the version shown: a long stream is paged.
        first = max(1, at - WINDOW // 2)
        events = await store.inspect_stream(
            stream_id, first, limit=WINDOW, decrypt=console.shows_personal_data(request)
        )
        state: list[Field] | None = None
        state_error: str | None = None
        aggregate_name: str | None = None
        found = aggregate_of(console, stream_id)
        if found is not None and console.shows_personal_data(request):
            prefix, cls = found
            aggregate_name = cls.__name__
            repository = Repository(store, cls, prefix=prefix)
            aggregate_id = stream_id.removeprefix(prefix)
            try:
                after = public_state(await repository.load(aggregate_id, version=at))
                before = (
                    public_state(await repository.load(aggregate_id, version=at - 1))
                    if at > 1
                    else None
                )
                state = changes(before, after)
            except (StreamNotFoundError, ChronikError) as exc:
                state_error = str(exc)
        return console.render(
            request,
            "stream.html",
            {
                "stream_id": stream_id,
                "version": version,
                "at": at,
                "events": events,
                "earlier": first - 1 if first > 1 else None,
                "later": first + WINDOW if first + WINDOW <= version else None,
                "state": state,
                "state_error": state_error,
                "aggregate": aggregate_name,
                "personal_hidden": not console.shows_personal_data(request),
            },
        )

    return router
