"""The process index: every instance of every process and its pending timeouts.

An inline projection of the ``ProcessStepped`` events, kept in the transaction of each
step: the timer reads its due timeouts from it, and ``ProcessesAdmin`` (the command
line, HTTP routes) reads its instances. ``InstanceView`` is an instance as the index
shows it; ``instance_view`` is the one place that reads its stored documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from chronik.eventstore.base import BaseEventStore
from chronik.processes.process import ProcessStepped
from chronik.projections import InlineProjections, Projection, ReadModelTx, handles
from chronik.projections.port import Doc, ProjectionBackend

__all__ = ["InstanceView", "ProcessIndex", "instance_view", "process_index"]


class ProcessIndex(Projection):
    """Instances and pending timeouts of every process, updated with each step."""

    name = "process_index"
    tables = ("instances", "timeouts")
    indexes: ClassVar[dict[str, tuple[str, ...]]] = {"instances": ("process", "status")}

    @handles(ProcessStepped)
    async def _stepped(self, e: ProcessStepped, tx: ReadModelTx) -> None:
        key = f"{e.process}/{e.instance}"
        doc = await tx.get("instances", key) or {"steps": 0, "timeouts": {}}
        timeouts: dict[str, Any] = doc["timeouts"]
        for timeout_id in [e.trigger, *e.cancelled]:
            if timeout_id in timeouts:
                del timeouts[timeout_id]
                tx.delete("timeouts", timeout_id)
        if e.finished:
            for timeout_id in timeouts:
                tx.delete("timeouts", timeout_id)
            timeouts = {}
        for t in e.scheduled:
            timeouts[t["id"]] = {"name": t["name"], "due": t["due"]}
            tx.put(
                "timeouts",
                t["id"],
                {
                    "id": t["id"],
                    "process": e.process,
                    "instance": e.instance,
                    "name": t["name"],
                    "due": t["due"],
                },
            )
        tx.put(
            "instances",
            key,
            {
                "process": e.process,
                "instance": e.instance,
                "status": e.status,
                "finished": e.finished,
                "steps": doc["steps"] + 1,
                "last_trigger": e.trigger_type,
                "last_step": e.at.isoformat() if e.at else None,
                "timeouts": timeouts,
                "data": {k: v for k, v in e.data.items() if not k.startswith("_")},
            },
        )


def process_index(store: BaseEventStore, backend: ProjectionBackend) -> InlineProjections:
    """The index of every process on ``store``, kept in the append of each step.

    One per store, however many ``Processes`` run on it (embedded mode runs several
    contexts on one store): give each the same. The runtime makes it once.
    """
    return InlineProjections(store, [ProcessIndex()], backend=backend)


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One process instance as the index shows it."""

    process: str
    instance: str
    status: str
    finished: bool
    #: how many steps it took
    steps: int
    #: what triggered its last step: an event's class name or ``timeout:NAME``
    last_trigger: str
    #: when it last stepped, by the process's clock (ISO 8601), if it knows
    last_step: str | None
    #: its pending timeouts: id -> {"name": ..., "due": ISO 8601}
    timeouts: dict[str, dict[str, str]]
    #: its data, without the fields whose name starts with "_" (kept inside)
    data: dict[str, Any]


def instance_view(doc: Doc) -> InstanceView:
    """The view of an instance stored by ``ProcessIndex``."""
    return InstanceView(
        process=doc["process"],
        instance=doc["instance"],
        status=doc["status"],
        finished=doc["finished"],
        steps=doc["steps"],
        last_trigger=doc["last_trigger"],
        last_step=doc["last_step"],
        timeouts=doc["timeouts"],
        data=doc["data"],
    )
