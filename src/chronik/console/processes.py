"""The console's processes: running sagas and process managers on their state diagrams.

The instances, their pending timeouts and their steps come from ``ProcessesAdmin``, as
``chronik processes`` reads them. Each process's diagram is derived from its class
(``chronik.processes.diagram``) and drawn here as server-rendered SVG, the instance's
current state marked. The running instances are read state by state (the process
index keeps an index on process and status): the states no handler finishes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from chronik.console.app import Console, Nav
from chronik.processes.admin import ProcessesAdmin
from chronik.processes.diagram import Diagram, diagram
from chronik.processes.index import InstanceView
from chronik.processes.process import ProcessManager
from chronik.processes.runner import Processes

__all__ = ["NAV", "Drawing", "draw", "routes"]

NAV = Nav("Processes", "console_processes")

#: how many instances of one process the list shows, and steps of one instance
INSTANCES_SHOWN = 50
STEPS_SHOWN = 20

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 170, 34, 150, 44, 20


@dataclass(frozen=True, slots=True)
class Box:
    state: str
    x: float
    y: float
    current: bool
    final: bool


@dataclass(frozen=True, slots=True)
class Arrow:
    label: str
    path: str
    label_x: float
    label_y: float
    loop: bool
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class Drawing:
    """A diagram laid out for SVG: state boxes and the arrows between them."""

    process: str
    width: float
    height: float
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    box_w: int = BOX_W
    box_h: int = BOX_H


def draw(found: Diagram, current: str | None = None) -> Drawing:
    """Lay ``found`` out left to right by distance from the start; mark ``current``."""
    depth: dict[str, int] = {found.states[0]: 0} if found.states else {}
    frontier = list(depth)
    while frontier:
        nxt = []
        for state in frontier:
            for t in found.transitions:
                if t.source == state and t.target not in depth:
                    depth[t.target] = depth[state] + 1
                    nxt.append(t.target)
        frontier = nxt
    last = max(depth.values(), default=0)
    for state in found.states:  # reached by no arrow from the start: a column at the end
        depth.setdefault(state, last + 1)
    columns: dict[int, list[str]] = {}
    for state in found.states:
        columns.setdefault(depth[state], []).append(state)
    places: dict[str, tuple[float, float]] = {}
    for column, states in columns.items():
        for row, state in enumerate(states):
            places[state] = (
                MARGIN + column * (BOX_W + GAP_X),
                MARGIN + 14 + row * (BOX_H + GAP_Y),
            )
    boxes = tuple(
        Box(s, *places[s], current=s == current, final=s in found.final) for s in found.states
    )
    labels: dict[tuple[str, str], list[str]] = {}
    for t in found.transitions:
        names = labels.setdefault((t.source, t.target), [])
        if t.trigger not in names:
            names.append(t.trigger)
    arrows = []
    for (source, target), names in labels.items():
        label = " / ".join(names)
        sx, sy = places[source]
        if source == target:
            x0, y0 = sx + BOX_W * 0.35, sy
            x1 = sx + BOX_W * 0.65
            path = (
                f"M{x0:.0f},{y0:.0f} C{x0:.0f},{y0 - 26:.0f} "
                f"{x1:.0f},{y0 - 26:.0f} {x1:.0f},{y0:.0f}"
            )
            arrows.append(Arrow(label, path, sx + BOX_W / 2, sy - 22, True))
            continue
        tx, ty = places[target]
        if tx > sx:
            x0, y0, x1, y1 = sx + BOX_W, sy + BOX_H / 2, tx, ty + BOX_H / 2
        elif tx < sx:
            x0, y0, x1, y1 = sx, sy + BOX_H / 2, tx + BOX_W, ty + BOX_H / 2
        else:  # same column: from one box's bottom to the other's top
            below = ty > sy
            x0, x1 = sx + BOX_W / 2, tx + BOX_W / 2
            y0 = sy + (BOX_H if below else 0)
            y1 = ty + (0 if below else BOX_H)
        path = f"M{x0:.0f},{y0:.0f} L{x1:.0f},{y1:.0f}"
        if y0 == y1:  # level: the label above the middle
            arrows.append(Arrow(label, path, (x0 + x1) / 2, y0 - 5, False))
        elif x0 == x1:  # straight down or up: beside the line
            arrows.append(Arrow(label, path, x0 + 5, (y0 + y1) / 2 + 4, False, "start"))
        else:  # slanted: near its start, where arrows into one state are still apart
            lx, ly = x0 + (x1 - x0) * 0.3, y0 + (y1 - y0) * 0.3
            arrows.append(Arrow(label, path, lx, ly - 5, False))
    width = MARGIN * 2 + (max(depth.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    rows = max((len(s) for s in columns.values()), default=1)
    height = MARGIN * 2 + 14 + rows * (BOX_H + GAP_Y)
    return Drawing(found.process, width, height, boxes, tuple(arrows))


_SHAPES: dict[type[ProcessManager], Diagram] = {}


def shape_of(process: type[ProcessManager]) -> Diagram:
    """The diagram of a process class, read once (its source does not change while the
    service runs)."""
    if process not in _SHAPES:
        _SHAPES[process] = diagram(process)
    return _SHAPES[process]


def admin(console: Console) -> ProcessesAdmin:
    """The processes admin of the service's database."""
    runtime = console.runtime
    return ProcessesAdmin(runtime.database.projections(), runtime.store)


def known(console: Console) -> dict[str, type[ProcessManager]]:
    """The process classes this service runs, by name (for their diagrams)."""
    found: dict[str, type[ProcessManager]] = {}
    for worker in console.runtime.workers:
        if isinstance(worker, Processes):
            for manager in worker.managers:
                found[manager.name] = type(manager)
    return found


def routes(console: Console) -> APIRouter:
    router = console.router()

    @router.get("/processes", name="console_processes", response_class=HTMLResponse)
    async def processes(
        request: Request,
        process: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        found = admin(console)
        classes = known(console)
        groups: list[dict[str, Any]] = []
        names = [process] if process else sorted(classes)
        for name in names:
            cls = classes.get(name)
            shape = shape_of(cls) if cls is not None else None
            if status:
                wanted = [status]
            elif shape is not None:  # the running ones: every state no handler ends in
                wanted = [s for s in shape.states if s not in shape.final]
            else:
                wanted = []
            instances: list[InstanceView] = []
            if wanted:
                for state in wanted:
                    left = INSTANCES_SHOWN - len(instances)
                    if left <= 0:
                        break
                    instances += await found.instances(process=name, status=state, limit=left)
            else:
                instances = await found.instances(process=name, limit=INSTANCES_SHOWN)
            groups.append(
                {
                    "name": name,
                    "drawing": draw(shape) if shape is not None else None,
                    "instances": [i for i in instances if not i.finished or status],
                }
            )
        return console.render(
            request,
            "processes.html",
            {
                "title": "Processes",
                "groups": groups,
                "indexed": await found.indexed(),
                "process": process or "",
                "status": status or "",
                "names": sorted(classes),
            },
        )

    @router.get(
        "/processes/{process}/{instance}",
        name="console_process",
        response_class=HTMLResponse,
    )
    async def instance(request: Request, process: str, instance: str) -> HTMLResponse:
        found = admin(console)
        view = await found.instance(process, instance)
        if view is None:
            raise HTTPException(404, f"no instance {instance!r} of process {process!r}")
        cls = known(console).get(process)
        steps = await found.steps(process, instance)
        timeouts = sorted(view.timeouts.values(), key=lambda t: t["due"])
        return console.render(
            request,
            "process.html",
            {
                "title": f"{process} {instance}",
                "view": view,
                "drawing": None if cls is None else draw(shape_of(cls), view.status),
                "timeouts": timeouts,
                "steps": steps[-STEPS_SHOWN:][::-1],
                "steps_total": len(steps),
            },
        )

    return router
