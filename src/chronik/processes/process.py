"""Process managers and sagas: explicit state, steps, commands, durable timeouts.

A process manager is a state machine you can read in the code::

    class TripBooking(ProcessManager):
        name = "trip_booking"
        correlation_key = "trip_id"

        @starts(TripRequested)
        def requested(self, e: TripRequested, p: Step) -> None:
            p.send(BookFlight(e.trip_id))
            p.goto("booking_flight")

        @when("booking_flight", FlightBooked)
        def flight_booked(self, e: FlightBooked, p: Step) -> None: ...

        @on_timeout("approval")
        def approval_expired(self, p: Step) -> None: ...

Each handled trigger (an event or a fired timeout) is one *step*: the handler reads the
state (``p.status``, ``p.data``) and decides: the next status, commands to send,
timeouts to schedule or cancel, compensations to remember. The step is stored as one
``ProcessStepped`` event on the instance's stream, so the new state, the commands (a
command outbox) and the timeouts commit together. A saga is a process manager that
remembers a compensating command for each step done (``p.on_failure``) and sends
them in reverse order (``p.compensate()``) when a later step fails.

The contract, as Commanded writes it down: *interested* (``@starts``/``@when`` and
``correlate``), *handle* (the handler's commands), *apply* (its new status and data),
*error* (``policy``: retry, then skip, park or stop).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

from chronik.domain.commands import command_name
from chronik.domain.events import event

__all__ = [
    "FailurePolicy",
    "ProcessManager",
    "ProcessState",
    "ProcessStepped",
    "Step",
    "on_timeout",
    "process_stream",
    "starts",
    "when",
]

F = TypeVar("F", bound=Callable[..., None])


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What to do when a handler keeps failing: retry with backoff, then skip, park or stop."""

    retries: int = 3
    backoff: float = 0.2
    then: Literal["skip", "park", "stop"] = "park"


@event("chronik.process_stepped")
@dataclass(frozen=True)
class ProcessStepped:
    """One step of a process instance: what triggered it and everything it decided."""

    process: str
    instance: str
    trigger: str  # the event id or the timeout id that caused the step
    trigger_type: str
    status: str
    data: dict[str, Any]
    commands: list[dict[str, Any]] = field(default_factory=list)  # {"id", "type", "data"}
    scheduled: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "due"}
    cancelled: list[str] = field(default_factory=list)  # timeout ids
    finished: bool = False
    at: datetime | None = None


@dataclass
class ProcessState:
    """A process instance rebuilt from its steps."""

    process: str
    instance: str
    status: str = "new"
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    finished: bool = False
    handled: set[str] = field(default_factory=set)
    timeouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"name", "due"}
    last_step: datetime | None = None

    def evolve(self, step: ProcessStepped) -> None:
        self.status, self.data, self.finished = step.status, dict(step.data), step.finished
        self.handled.add(step.trigger)
        self.timeouts.pop(step.trigger, None)  # a fired timeout
        for timeout_id in step.cancelled:
            self.timeouts.pop(timeout_id, None)
        for timeout in step.scheduled:
            self.timeouts[timeout["id"]] = {"name": timeout["name"], "due": timeout["due"]}
        if step.finished:
            self.timeouts.clear()
        self.last_step = step.at
        self.version += 1

    def timeout_named(self, name: str) -> str | None:
        for timeout_id, timeout in self.timeouts.items():
            if timeout["name"] == name:
                return timeout_id
        return None


class Step:
    """What a handler sees of its instance, and what it decides."""

    def __init__(self, state: ProcessState, trigger: str, now: datetime) -> None:
        self.instance = state.instance
        self.status = state.status
        self.data: dict[str, Any] = dict(state.data)
        self.now = now
        self._state = state
        self._trigger = trigger
        self.commands: list[object] = []
        self.scheduled: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.compensations: list[dict[str, Any]] = []
        self.compensate_at = 0  # the compensations go out after this many sent commands
        self.finished = False

    def goto(self, status: str) -> None:
        """Move to ``status``."""
        self.status = status

    def send(self, command: object) -> None:
        """Send a command (dispatched at least once after the step is stored)."""
        command_name(type(command))
        self.commands.append(command)

    def schedule(
        self, name: str, *, after: timedelta | None = None, at: datetime | None = None
    ) -> None:
        """A durable timeout: fires ``on_timeout(name)`` unless cancelled first."""
        if (after is None) == (at is None):
            raise ValueError("schedule a timeout either after a delay or at a time")
        due = at if at is not None else self.now + (after or timedelta())
        key = f"{self._state.process}/{self.instance}/{self._trigger}/{name}"
        timeout_id = str(uuid.uuid5(_IDS, key))
        due_utc = due.astimezone(UTC).isoformat(timespec="microseconds")
        self.scheduled.append({"id": timeout_id, "name": name, "due": due_utc})

    def cancel(self, name: str) -> None:
        """Cancel the pending timeout called ``name`` (nothing if there is none)."""
        timeout_id = self._state.timeout_named(name)
        if timeout_id is not None:
            self.cancelled.append(timeout_id)
        self.scheduled = [t for t in self.scheduled if t["name"] != name]

    def on_failure(self, compensation: object) -> None:
        """Remember how to undo what this step started (a saga's compensation)."""
        command_name(type(compensation))
        stack = list(self.data.get("_compensations", []))
        stack.append(_command_dict(compensation, ""))
        self.data["_compensations"] = stack

    def compensate(self) -> None:
        """Send every remembered compensation, the latest first, once."""
        stack = list(self.data.get("_compensations", []))
        self.compensations = list(reversed(stack))
        self.compensate_at = len(self.commands)
        self.data["_compensations"] = []

    def finish(self) -> None:
        """The process is over: later triggers are ignored, pending timeouts dropped."""
        self.finished = True


_IDS = uuid.UUID("8d6f5c1e-2b0a-4e47-9c1e-6c6f1a2b3c4d")


def process_stream(process: str, instance: str) -> str:
    """The stream that keeps the steps of one instance of a process."""
    return f"process-{process}-{instance}"


def _command_dict(command: object, command_id: str) -> dict[str, Any]:
    return {
        "id": command_id,
        "type": command_name(type(command)),
        "data": msgspec.to_builtins(command),
    }


def starts(*event_types: type) -> Callable[[F], F]:
    """This handler starts a new instance when one of these events arrives."""

    def mark(method: F) -> F:
        method.__chronik_starts__ = event_types  # type: ignore[attr-defined]
        return method

    return mark


def when(states: str | Iterable[str], *event_types: type) -> Callable[[F], F]:
    """This handler handles these events while the instance is in one of ``states``."""
    names = (states,) if isinstance(states, str) else tuple(states)

    def mark(method: F) -> F:
        method.__chronik_when__ = (names, event_types)  # type: ignore[attr-defined]
        return method

    return mark


def on_timeout(name: str) -> Callable[[F], F]:
    """This handler runs when the timeout ``name`` fires (it was not cancelled)."""

    def mark(method: F) -> F:
        method.__chronik_timeout__ = name  # type: ignore[attr-defined]
        return method

    return mark


Handler = Callable[[Any, Step], None]
TimeoutHandler = Callable[[Step], None]


class ProcessManager:
    """Base of process managers and sagas. Handlers are plain, synchronous decisions."""

    name: ClassVar[str]
    #: the field of a trigger event that names the instance (override correlate for more)
    correlation_key: ClassVar[str] = "id"
    policy: ClassVar[FailurePolicy] = FailurePolicy()
    _starts: ClassVar[dict[type, str]] = {}
    _when: ClassVar[dict[type, list[tuple[tuple[str, ...], str]]]] = {}
    _timeouts: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        starts_: dict[type, str] = {}
        when_: dict[type, list[tuple[tuple[str, ...], str]]] = {}
        timeouts: dict[str, str] = {}
        for base in reversed(cls.__mro__):
            for attr_name, attr in vars(base).items():
                for event_type in getattr(attr, "__chronik_starts__", ()):
                    starts_[event_type] = attr_name
                marked = getattr(attr, "__chronik_when__", None)
                if marked is not None:
                    states, types = marked
                    for event_type in types:
                        when_.setdefault(event_type, []).append((states, attr_name))
                timeout = getattr(attr, "__chronik_timeout__", None)
                if timeout is not None:
                    timeouts[timeout] = attr_name
        cls._starts, cls._when, cls._timeouts = starts_, when_, timeouts

    @property
    def event_types(self) -> tuple[type, ...]:
        return tuple({*self._starts, *self._when})

    def correlate(self, event: object) -> str | None:
        """The instance an event belongs to, or None."""
        value = getattr(event, self.correlation_key, None)
        return None if value is None else str(value)

    def stream_id(self, instance: str) -> str:
        return process_stream(self.name, instance)

    def handler_for(self, state: ProcessState, event: object) -> Handler | None:
        """The handler for this event in this state, if the process is interested."""
        if state.finished:
            return None
        if state.version == 0:
            name = self._starts.get(type(event))
            return None if name is None else getattr(self, name)
        for states, name in self._when.get(type(event), ()):
            if "*" in states or state.status in states:
                handler: Handler = getattr(self, name)
                return handler
        return None

    def timeout_handler(self, name: str) -> TimeoutHandler | None:
        attr = self._timeouts.get(name)
        return None if attr is None else getattr(self, attr)


def stepped(
    process: ProcessManager, state: ProcessState, step: Step, trigger: str, trigger_type: str
) -> ProcessStepped:
    """The stored step: the handler's decisions, with deterministic command ids.

    A command's id depends on the instance, the step and its place in the step, so a
    step retried after a conflict or a crash sends commands with the same ids, and a
    handler that is idempotent by command id does its work once.
    """
    prefix = f"{state.process}/{state.instance}/{state.version + 1}"
    dicts = [
        _command_dict(command, str(uuid.uuid5(_IDS, f"{prefix}/{index}")))
        for index, command in enumerate(step.commands)
    ]
    # In the order the handler asked: commands sent before compensate() go first.
    dicts[step.compensate_at : step.compensate_at] = [
        {**compensation, "id": str(uuid.uuid5(_IDS, f"{prefix}/c{offset}"))}
        for offset, compensation in enumerate(step.compensations)
    ]
    return ProcessStepped(
        process=process.name,
        instance=state.instance,
        trigger=trigger,
        trigger_type=trigger_type,
        status=step.status,
        data=step.data,
        commands=dicts,
        scheduled=step.scheduled,
        cancelled=step.cancelled,
        finished=step.finished,
        at=step.now,
    )


def rebuild(process: ProcessManager, instance: str, steps: Iterable[object]) -> ProcessState:
    state = ProcessState(process.name, instance)
    for step in steps:
        if isinstance(step, ProcessStepped):
            state.evolve(step)
    return state


def decode_commands(step: ProcessStepped, types: Mapping[str, type]) -> list[tuple[str, object]]:
    """(command id, command object) of a stored step, for the dispatcher."""
    out: list[tuple[str, object]] = []
    for item in step.commands:
        cls = types.get(item["type"])
        if cls is None:
            raise KeyError(f"no handler registered for command {item['type']!r}")
        out.append((item["id"], msgspec.convert(item["data"], cls)))
    return out
