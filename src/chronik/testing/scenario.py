"""Given / when / then, for aggregates, deciders and processes: tests that read like the case.

    Scenario(Lead).given(LeadInitialized(...)).when(lambda lead: lead.contact(at)) \\
        .then(LeadContacted("lead-1", at))

    Scenario(Lead).given(..., LeadClosed(...)).when(lambda lead: lead.contact(at)) \\
        .then_raises(DomainError, match="closed")

    ProcessScenario(TripBooking()).given(TripRequested("t1"), FlightBooked("t1")) \\
        .when(HotelBooked("t1")).then_commands(RequestApproval("t1")) \\
        .then_timeouts("approval").then_status("awaiting_approval")

    ProcessScenario(TripBooking()).given(...).when_time_passes(timedelta(hours=49)) \\
        .then_commands(CancelHotel("t1"), CancelFlight("t1")).then_status("cancelled")

No store, no clock, no sleeping: the process scenario runs on a virtual clock. A failed
expectation raises AssertionError with a diff of what was expected and what happened.
"""

from __future__ import annotations

import difflib
import pprint
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Self, TypeVar

import msgspec

from chronik.domain.aggregate import Aggregate
from chronik.domain.commands import command_name
from chronik.domain.decider import Decider
from chronik.processes.clock import VirtualClock
from chronik.processes.process import ProcessManager, ProcessState, Step, stepped

__all__ = ["DeciderScenario", "ProcessScenario", "Scenario"]

A = TypeVar("A", bound=Aggregate)
C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")


def _diff(what: str, expected: Sequence[object], actual: Sequence[object]) -> str:
    left = pprint.pformat(list(expected), width=90).splitlines()
    right = pprint.pformat(list(actual), width=90).splitlines()
    lines = difflib.unified_diff(left, right, "expected", "actual", lineterm="")
    return f"{what} differ:\n" + "\n".join(lines)


def _raises(outcome: BaseException | None, error: type[BaseException], match: str | None) -> None:
    if outcome is None:
        raise AssertionError(f"expected {error.__name__}, but nothing was raised")
    if not isinstance(outcome, error):
        raise AssertionError(
            f"expected {error.__name__}, but {type(outcome).__name__} was raised: {outcome}"
        ) from outcome
    if match is not None and not re.search(match, str(outcome)):
        raise AssertionError(
            f"{error.__name__} was raised, but {str(outcome)!r} does not match {match!r}"
        )


class Scenario(Generic[A]):
    """An aggregate given past events, when a command runs, then these events (or error)."""

    def __init__(self, cls: type[A], id: str = "test-1") -> None:
        self.cls = cls
        self.id = id
        self._given: list[object] = []
        self._aggregate: A | None = None
        self._outcome: BaseException | None = None
        self._ran = False

    def given(self, *events: object) -> Self:
        self._given.extend(events)
        return self

    def when(self, command: Callable[[A], object]) -> Self:
        """Run ``command`` on the aggregate rebuilt from the given events."""
        aggregate = self.cls.blank(self.id)
        aggregate.replay(self._given, len(self._given))
        return self._run(lambda: (command(aggregate), aggregate)[1])

    def when_created(self, factory: Callable[[], A]) -> Self:
        """Run a command that creates the aggregate (given no events)."""
        if self._given:
            raise AssertionError("when_created: an aggregate with a history is not new")
        return self._run(factory)

    def _run(self, work: Callable[[], A]) -> Self:
        self._ran = True
        try:
            self._aggregate = work()
        except Exception as exc:
            self._outcome = exc
        return self

    def _events(self) -> list[object]:
        if not self._ran:
            raise AssertionError("say when(...) before then(...)")
        if self._outcome is not None:
            raise AssertionError(
                f"the command raised {type(self._outcome).__name__}: {self._outcome}"
            ) from self._outcome
        assert self._aggregate is not None
        return list(self._aggregate.pending_events)

    def then(self, *events: object) -> Self:
        """The command recorded exactly these events, in order."""
        actual = self._events()
        if actual != list(events):
            raise AssertionError(_diff("events", events, actual))
        return self

    def then_nothing(self) -> Self:
        return self.then()

    def then_raises(self, error: type[BaseException], match: str | None = None) -> Self:
        _raises(self._outcome, error, match)
        return self

    def then_state(self, **attributes: object) -> Self:
        self._events()
        assert self._aggregate is not None
        actual = {name: getattr(self._aggregate, name) for name in attributes}
        if actual != attributes:
            raise AssertionError(_diff("state", [attributes], [actual]))
        return self


class DeciderScenario(Generic[C, S, E]):
    """A decider given past events, when a command, then these events (or error)."""

    def __init__(self, decider: Decider[C, S, E]) -> None:
        self.decider = decider
        self._given: list[E] = []
        self._events: list[E] | None = None
        self._outcome: BaseException | None = None

    def given(self, *events: E) -> Self:
        self._given.extend(events)
        return self

    def when(self, command: C) -> Self:
        state = self.decider.fold(self._given)
        try:
            self._events = list(self.decider.decide(command, state))
        except Exception as exc:
            self._outcome = exc
        return self

    def then(self, *events: E) -> Self:
        if self._outcome is not None:
            raise AssertionError(f"the command raised {self._outcome!r}") from self._outcome
        if self._events is None:
            raise AssertionError("then(...) needs a when(command) first")
        if self._events != list(events):
            raise AssertionError(_diff("events", list(events), self._events or []))
        return self

    def then_raises(self, error: type[BaseException], match: str | None = None) -> Self:
        _raises(self._outcome, error, match)
        return self


class ProcessScenario:
    """A process instance given past triggers, when an event or time passes, then..."""

    def __init__(
        self,
        process: ProcessManager,
        instance: str | None = None,
        *,
        start: datetime | None = None,
    ) -> None:
        self.process = process
        self.instance = instance
        self.clock = VirtualClock(start)
        self.state: ProcessState | None = None
        self._commands: list[object] = []
        self._steps = 0
        self._when_steps: int | None = None
        self._outcome: BaseException | None = None
        self._counter = 0

    def _state(self, event: object | None) -> ProcessState:
        if self.state is None:
            instance = self.instance
            if instance is None and event is not None:
                instance = self.process.correlate(event)
            if instance is None:
                raise AssertionError("cannot tell the instance: give instance=... or an event")
            self.instance = instance
            self.state = ProcessState(self.process.name, instance)
        return self.state

    def _apply(self, trigger: str, kind: str, run: Callable[[Step], None]) -> list[object]:
        state = self._state(None)
        step = Step(state, trigger, self.clock.now())
        run(step)
        record = stepped(self.process, state, step, trigger, kind)
        state.evolve(record)
        self._steps += 1
        types = {command_name(type(c)): type(c) for c in step.commands}
        compensations = []
        for item in step.compensations:  # as stored: a command's name and its data
            cls = types.get(item["type"]) or _command_classes(self.process).get(item["type"])
            compensations.append(msgspec.convert(item["data"], cls) if cls else item)
        at = step.compensate_at
        return [*step.commands[:at], *compensations, *step.commands[at:]]

    def _trigger(self, event: object) -> list[object]:
        state = self._state(event)
        if self.process.correlate(event) != state.instance:
            raise AssertionError(f"{event!r} belongs to another instance than {state.instance!r}")
        handler = self.process.handler_for(state, event)
        if handler is None:
            return []
        self._counter += 1
        return self._apply(
            f"event-{self._counter}", type(event).__qualname__, lambda s: handler(event, s)
        )

    def given(self, *events: object) -> Self:
        for event in events:
            self._trigger(event)
        return self

    def when(self, *events: object) -> Self:
        self._commands, before = [], self._steps
        try:
            for event in events:
                self._commands += self._trigger(event)
        except Exception as exc:
            self._outcome = exc
        self._when_steps = self._steps - before
        return self

    def when_time_passes(self, delta: timedelta) -> Self:
        """Move the clock; fire every timeout due by then, earliest first.

        The clock stops at each due time on the way, so a handler sees its own due time
        and a timeout it schedules fires too if it falls due within the window.
        """
        self._commands, before = [], self._steps
        until = self.clock.now() + delta
        state = self._state(None)
        try:
            while True:
                due = sorted(
                    (t["due"], tid, t["name"])
                    for tid, t in state.timeouts.items()
                    if datetime.fromisoformat(t["due"]) <= until
                )
                if not due:
                    break
                when, timeout_id, name = due[0]
                ahead = datetime.fromisoformat(when) - self.clock.now()
                if ahead > timedelta():
                    self.clock.advance(ahead)
                handler = self.process.timeout_handler(name)
                if handler is None:
                    raise AssertionError(f"{self.process.name} has no on_timeout({name!r})")
                self._commands += self._apply(timeout_id, f"timeout:{name}", handler)
        except AssertionError:
            raise
        except Exception as exc:
            self._outcome = exc
        if self.clock.now() < until:
            self.clock.advance(until - self.clock.now())
        self._when_steps = self._steps - before
        return self

    def _check(self) -> ProcessState:
        if self._outcome is not None:
            raise AssertionError(
                f"the step raised {type(self._outcome).__name__}: {self._outcome}"
            ) from self._outcome
        return self._state(None)

    def then_commands(self, *commands: object) -> Self:
        """The when-step(s) sent exactly these commands, in the order the handler sent them."""
        self._check()
        if self._commands != list(commands):
            raise AssertionError(_diff("commands", list(commands), self._commands))
        return self

    def then_status(self, status: str, *, finished: bool | None = None) -> Self:
        state = self._check()
        if state.status != status:
            raise AssertionError(f"status is {state.status!r}, expected {status!r}")
        if finished is not None and state.finished != finished:
            raise AssertionError(f"finished is {state.finished}, expected {finished}")
        return self

    def then_timeouts(self, *names: str) -> Self:
        """Exactly these timeouts are pending."""
        state = self._check()
        pending = sorted(t["name"] for t in state.timeouts.values())
        if pending != sorted(names):
            raise AssertionError(_diff("pending timeouts", sorted(names), pending))
        return self

    def then_due(self, name: str, at: datetime) -> Self:
        state = self._check()
        dues = [
            datetime.fromisoformat(t["due"]) for t in state.timeouts.values() if t["name"] == name
        ]
        if dues != [at]:
            raise AssertionError(f"timeout {name!r} is due at {dues}, expected {at}")
        return self

    def then_ignored(self) -> Self:
        """The process was not interested: no step was taken."""
        self._check()
        if self._when_steps is None:
            raise AssertionError("then_ignored() needs a when(...) or when_time_passes(...) first")
        if self._when_steps:
            raise AssertionError(f"expected no step, but {self._when_steps} were taken")
        return self

    def then_data(self, **values: Any) -> Self:
        state = self._check()
        actual = {k: state.data.get(k) for k in values}
        if actual != values:
            raise AssertionError(_diff("data", [values], [actual]))
        return self

    def then_raises(self, error: type[BaseException], match: str | None = None) -> Self:
        _raises(self._outcome, error, match)
        return self


def _command_classes(process: ProcessManager) -> dict[str, type]:
    """Command classes a process module defines (to show compensations as objects)."""
    import sys

    module = sys.modules.get(type(process).__module__)
    found: dict[str, type] = {}
    for value in vars(module).values() if module else ():
        name = getattr(value, "__dict__", {}).get("__chronik_command__")
        if isinstance(value, type) and isinstance(name, str):
            found[name] = value
    return found
