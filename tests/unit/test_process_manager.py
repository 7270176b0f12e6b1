"""Process managers without a runner: routing triggers, the step's decisions, stored steps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chronik.domain import command, event
from chronik.processes import ProcessManager, ProcessState, ProcessStepped, Step, starts, when
from chronik.processes.process import decode_commands, rebuild, stepped

T0 = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)


@event("process_unit.parcel_sent")
@dataclass(frozen=True)
class ParcelSent:
    parcel: str


@event("process_unit.parcel_scanned")
@dataclass(frozen=True)
class ParcelScanned:
    parcel: str
    hub: str


@event("process_unit.parcel_lost")
@dataclass(frozen=True)
class ParcelLost:
    parcel: str


@command("process_unit.notify_sender")
@dataclass(frozen=True)
class NotifySender:
    parcel: str
    text: str


@command("process_unit.refund_postage")
@dataclass(frozen=True)
class RefundPostage:
    parcel: str


@dataclass(frozen=True)
class NotACommand:
    parcel: str


class Delivery(ProcessManager):
    name = "delivery"
    correlation_key = "parcel"

    @starts(ParcelSent)
    def sent(self, e: ParcelSent, p: Step) -> None:
        p.goto("in_transit")
        p.schedule("lost", after=timedelta(days=10))

    @when("in_transit", ParcelScanned)
    def scanned(self, e: ParcelScanned, p: Step) -> None:
        p.send(NotifySender(e.parcel, f"seen at {e.hub}"))

    @when("*", ParcelLost)
    def lost(self, e: ParcelLost, p: Step) -> None:
        p.finish()


def _state(*steps: ProcessStepped) -> ProcessState:
    return rebuild(Delivery(), "p1", steps)


def _step_of(state: ProcessState, event: object, trigger: str, now: datetime = T0) -> Step:
    handler = Delivery().handler_for(state, event)
    assert handler is not None
    step = Step(state, trigger, now)
    handler(event, step)
    return step


def _take(state: ProcessState, event: object, trigger: str) -> ProcessStepped:
    step = _step_of(state, event, trigger)
    record = stepped(Delivery(), state, step, trigger, type(event).__qualname__)
    state.evolve(record)
    return record


def test_a_new_instance_is_started_only_by_a_starting_event() -> None:
    process, state = Delivery(), _state()
    assert process.handler_for(state, ParcelScanned("p1", "hub")) is None
    assert process.handler_for(state, ParcelSent("p1")) is not None


def test_an_event_is_handled_only_in_the_states_its_handler_names() -> None:
    state = _state()
    _take(state, ParcelSent("p1"), "e1")
    process = Delivery()
    assert process.handler_for(state, ParcelSent("p1")) is None, "started already"
    assert process.handler_for(state, ParcelScanned("p1", "hub")) is not None
    state.status = "delivered"
    assert process.handler_for(state, ParcelScanned("p1", "hub")) is None
    assert process.handler_for(state, ParcelLost("p1")) is not None, "'*' is any state"


def test_a_finished_instance_handles_nothing_and_drops_its_timeouts() -> None:
    state = _state()
    _take(state, ParcelSent("p1"), "e1")
    assert [t["name"] for t in state.timeouts.values()] == ["lost"]
    _take(state, ParcelLost("p1"), "e2")
    assert state.finished and state.timeouts == {}
    assert Delivery().handler_for(state, ParcelLost("p1")) is None


def test_the_correlation_key_names_the_instance() -> None:
    assert Delivery().correlate(ParcelScanned("p7", "hub")) == "p7"
    assert Delivery().correlate(NotACommand("p8")) == "p8"
    assert Delivery().correlate(object()) is None
    assert Delivery().stream_id("p7") == "process-delivery-p7"


def test_a_timeout_is_scheduled_after_a_delay_or_at_a_time_not_both() -> None:
    step = Step(_state(), "e1", T0)
    step.schedule("a", after=timedelta(hours=1))
    step.schedule("b", at=datetime(2026, 2, 2, 14, 0, tzinfo=UTC))
    assert [(t["name"], t["due"]) for t in step.scheduled] == [
        ("a", "2026-02-02T13:00:00.000000+00:00"),
        ("b", "2026-02-02T14:00:00.000000+00:00"),
    ]
    with pytest.raises(ValueError, match="either after a delay or at a time"):
        step.schedule("c")
    with pytest.raises(ValueError, match="either after a delay or at a time"):
        step.schedule("c", after=timedelta(1), at=T0)


def test_a_due_time_in_another_zone_is_stored_in_utc() -> None:
    step = Step(_state(), "e1", T0)
    in_cairo = datetime(2026, 2, 2, 17, 0, tzinfo=timezone(timedelta(hours=2)))
    step.schedule("a", at=in_cairo)
    assert step.scheduled[0]["due"] == "2026-02-02T15:00:00.000000+00:00"


def test_a_timeout_id_depends_on_the_instance_the_trigger_and_the_name() -> None:
    def timeout_id(trigger: str, name: str) -> str:
        step = Step(_state(), trigger, T0)
        step.schedule(name, after=timedelta(1))
        return str(step.scheduled[0]["id"])

    assert timeout_id("e1", "lost") == timeout_id("e1", "lost"), "a retried step: same id"
    assert len({timeout_id("e1", "lost"), timeout_id("e2", "lost"), timeout_id("e1", "x")}) == 3


def test_cancelling_a_timeout_cancels_the_pending_one_and_one_scheduled_in_the_same_step() -> None:
    state = _state()
    _take(state, ParcelSent("p1"), "e1")
    (pending,) = state.timeouts
    step = Step(state, "e2", T0)
    step.schedule("lost", after=timedelta(days=1))
    step.cancel("lost")
    step.cancel("never_scheduled")
    assert step.cancelled == [pending] and step.scheduled == []


def test_only_registered_commands_can_be_sent_or_remembered_as_compensations() -> None:
    step = Step(_state(), "e1", T0)
    with pytest.raises(TypeError, match="not a registered command"):
        step.send(NotACommand("p1"))
    with pytest.raises(TypeError, match="not a registered command"):
        step.on_failure(NotACommand("p1"))


def test_compensations_are_sent_latest_first_once_then_forgotten() -> None:
    state = _state()
    first = Step(state, "e1", T0)
    first.on_failure(RefundPostage("p1"))
    first.on_failure(NotifySender("p1", "undo"))
    state.evolve(stepped(Delivery(), state, first, "e1", "X"))
    failing = Step(state, "e2", T0)
    failing.send(NotifySender("p1", "failed"))
    failing.compensate()
    record = stepped(Delivery(), state, failing, "e2", "Y")
    assert [c["type"] for c in record.commands] == [
        "process_unit.notify_sender",
        "process_unit.notify_sender",
        "process_unit.refund_postage",
    ]
    assert [c["data"].get("text") for c in record.commands] == ["failed", "undo", None]
    assert record.data["_compensations"] == []


def test_command_ids_are_the_same_when_a_step_is_decided_again() -> None:
    state = _state()
    _take(state, ParcelSent("p1"), "e1")
    once = stepped(Delivery(), state, _step_of(state, ParcelScanned("p1", "h"), "e2"), "e2", "S")
    again = stepped(Delivery(), state, _step_of(state, ParcelScanned("p1", "h"), "e2"), "e2", "S")
    assert once.commands == again.commands and once.commands[0]["id"]
    _take(state, ParcelScanned("p1", "h"), "e2")
    later = stepped(Delivery(), state, _step_of(state, ParcelScanned("p1", "h"), "e3"), "e3", "S")
    assert later.commands[0]["id"] != once.commands[0]["id"], "the next step's command is new"


def test_a_stored_step_decodes_to_its_commands_by_registered_name() -> None:
    state = _state()
    _take(state, ParcelSent("p1"), "e1")
    record = _take(state, ParcelScanned("p1", "hub-3"), "e2")
    (decoded,) = decode_commands(record, {"process_unit.notify_sender": NotifySender})
    assert decoded == (record.commands[0]["id"], NotifySender("p1", "seen at hub-3"))
    with pytest.raises(KeyError, match="no handler registered"):
        decode_commands(record, {})


def test_the_state_rebuilt_from_steps_knows_the_handled_triggers_and_the_version() -> None:
    state = _state()
    records = [_take(state, ParcelSent("p1"), "e1"), _take(state, ParcelScanned("p1", "h"), "e2")]
    rebuilt = rebuild(Delivery(), "p1", [*records, "not a step"])
    assert (rebuilt.version, rebuilt.handled, rebuilt.status) == (2, {"e1", "e2"}, "in_transit")
    assert rebuilt.last_step == T0
