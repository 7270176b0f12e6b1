"""``chronik.processes.diagram``: a process's states and transitions, read from its code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from chronik.domain import event
from chronik.processes import ProcessManager, Step, on_timeout, starts, when
from chronik.processes.diagram import START, UNKNOWN, Transition, diagram


@event("diagram_test.opened")
@dataclass(frozen=True)
class Opened:
    id: str


@event("diagram_test.paid")
@dataclass(frozen=True)
class Paid:
    id: str


@event("diagram_test.noted")
@dataclass(frozen=True)
class Noted:
    id: str


@event("diagram_test.aborted")
@dataclass(frozen=True)
class Aborted:
    id: str


class Checkout(ProcessManager):
    name = "checkout"

    @starts(Opened)
    def opened(self, e: Opened, step: Step) -> None:
        step.schedule("payment", after=timedelta(minutes=5))
        step.goto("awaiting_payment")

    @when("awaiting_payment", Paid)
    def paid(self, e: Paid, step: Step) -> None:
        step.cancel("payment")
        step.goto("paid")
        step.finish()

    @when(["awaiting_payment", "paid"], Noted)
    def noted(self, e: Noted, step: Step) -> None:
        step.data["notes"] = step.data.get("notes", 0) + 1  # stays where it is

    @when("*", Aborted)
    def aborted(self, e: Aborted, step: Step) -> None:
        step.goto("failed" if e.id else "cancelled")
        step.goto(step.status.upper())  # not a literal: shown as unknown

    @on_timeout("payment")
    def expired(self, step: Step) -> None:
        step.goto("expired")
        step.finish()


def test_a_process_diagram_has_its_declared_and_reached_states_in_order() -> None:
    found = diagram(Checkout)
    assert found.process == "checkout"
    assert found.states == (
        *(START, "awaiting_payment", "paid"),
        *("failed", "cancelled", UNKNOWN, "expired"),
    )
    assert found.final == frozenset({"paid", "expired"})


def test_each_handler_goes_where_its_gotos_say_or_stays() -> None:
    arrows = {(t.source, t.trigger, t.target) for t in diagram(Checkout).transitions}
    assert (START, "Opened", "awaiting_payment") in arrows
    assert ("awaiting_payment", "Paid", "paid") in arrows
    assert ("awaiting_payment", "Noted", "awaiting_payment") in arrows
    assert ("paid", "Noted", "paid") in arrows
    # "*" means every state a @when names; each goto of the handler is one arrow
    for source in ("awaiting_payment", "paid"):
        for target in ("failed", "cancelled", UNKNOWN):
            assert (source, "Aborted", target) in arrows
    assert (START, "Aborted", "failed") not in arrows


def test_a_timeout_fires_from_the_states_its_scheduling_handler_goes_to() -> None:
    timeouts = [t for t in diagram(Checkout).transitions if t.trigger.startswith("timeout:")]
    assert timeouts == [
        Transition("awaiting_payment", "timeout:payment", "expired", "expired", finishes=True)
    ]


def test_the_reference_trip_booking_waits_for_approval_with_a_timeout() -> None:
    from travel.processes import TripBooking

    found = diagram(TripBooking)
    assert found.states[:4] == (START, "booking_flight", "booking_hotel", "awaiting_approval")
    assert {"confirmed", "cancelled"} <= set(found.states)
    arrows = {(t.source, t.trigger, t.target) for t in found.transitions}
    assert ("awaiting_approval", "TripApproved", "confirmed") in arrows
    assert ("awaiting_approval", "timeout:approval", "cancelled") in arrows
    assert found.final == frozenset({"confirmed", "cancelled"})
