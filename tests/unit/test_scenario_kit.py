"""The test kit's own tests: Scenario, DeciderScenario and ProcessScenario, passing and failing.

A kit that passes what it should fail is worse than none, so each expectation is also
shown failing, with the message a reader gets: a unified diff of what was expected and
what happened, each side named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from chronik.domain import Aggregate, Decider, DomainError, applies, command, event
from chronik.processes import ProcessManager, Step, on_timeout, starts, when
from chronik.testing.scenario import DeciderScenario, ProcessScenario, Scenario

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)

# -- an aggregate ------------------------------------------------------------------------------


@event("scenario_kit.ticket_opened")
@dataclass(frozen=True)
class TicketOpened:
    ticket_id: str
    title: str


@event("scenario_kit.ticket_assigned")
@dataclass(frozen=True)
class TicketAssigned:
    ticket_id: str
    to: str


@event("scenario_kit.ticket_closed")
@dataclass(frozen=True)
class TicketClosed:
    ticket_id: str


class Ticket(Aggregate):
    title: str
    assignee: str | None
    closed: bool

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.title, self.assignee, self.closed = "", None, False

    @classmethod
    def open(cls, id: str, title: str) -> Ticket:
        ticket = cls(id)
        ticket.record(TicketOpened(id, title))
        return ticket

    def assign(self, to: str) -> None:
        if self.closed:
            raise DomainError(f"ticket {self.id} is closed")
        if to != self.assignee:
            self.record(TicketAssigned(self.id, to))

    def close(self) -> None:
        self.record(TicketClosed(self.id))

    @applies(TicketOpened)
    def _opened(self, e: TicketOpened) -> None:
        self.title = e.title

    @applies(TicketAssigned)
    def _assigned(self, e: TicketAssigned) -> None:
        self.assignee = e.to

    @applies(TicketClosed)
    def _closed(self, e: TicketClosed) -> None:
        self.closed = True


OPENED = TicketOpened("test-1", "printer on fire")


def test_then_passes_when_the_command_records_exactly_these_events() -> None:
    Scenario(Ticket).given(OPENED).when(lambda t: t.assign("ann")).then(
        TicketAssigned("test-1", "ann")
    )


def test_then_nothing_passes_when_the_command_records_no_event() -> None:
    Scenario(Ticket).given(OPENED, TicketAssigned("test-1", "ann")).when(
        lambda t: t.assign("ann")
    ).then_nothing()


def test_a_failing_then_shows_a_unified_diff_of_expected_and_actual_events() -> None:
    scenario = Scenario(Ticket).given(OPENED).when(lambda t: t.assign("ann"))
    with pytest.raises(AssertionError) as failed:
        scenario.then(TicketAssigned("test-1", "bob"))
    message = str(failed.value)
    assert message.startswith("events differ:\n")
    assert "--- expected\n+++ actual\n" in message
    assert "-[TicketAssigned(ticket_id='test-1', to='bob')]" in message
    assert "+[TicketAssigned(ticket_id='test-1', to='ann')]" in message


def test_a_failing_then_shows_an_extra_event_in_the_actual_side() -> None:
    def assign_and_close(ticket: Ticket) -> None:
        ticket.assign("ann")
        ticket.close()

    scenario = Scenario(Ticket).given(OPENED).when(assign_and_close)
    with pytest.raises(AssertionError) as failed:
        scenario.then(TicketAssigned("test-1", "ann"))
    lines = str(failed.value).splitlines()
    assert "-[TicketAssigned(ticket_id='test-1', to='ann')]" in lines
    assert (
        "+[TicketAssigned(ticket_id='test-1', to='ann'), TicketClosed(ticket_id='test-1')]" in lines
    )
    with pytest.raises(AssertionError, match="events differ"):
        scenario.then_nothing()


def test_then_raises_passes_on_the_error_whose_message_matches() -> None:
    closed = Scenario(Ticket).given(OPENED, TicketClosed("test-1")).when(lambda t: t.assign("x"))
    closed.then_raises(DomainError)
    closed.then_raises(DomainError, match=r"ticket test-1 is closed")
    closed.then_raises(Exception, match="closed$")


def test_then_raises_fails_on_another_message_another_error_or_no_error() -> None:
    closed = Scenario(Ticket).given(OPENED, TicketClosed("test-1")).when(lambda t: t.assign("x"))
    with pytest.raises(AssertionError, match="does not match 'still open'"):
        closed.then_raises(DomainError, match="still open")
    with pytest.raises(AssertionError, match="expected KeyError, but DomainError was raised"):
        closed.then_raises(KeyError)
    fine = Scenario(Ticket).given(OPENED).when(lambda t: t.assign("x"))
    with pytest.raises(AssertionError, match="expected DomainError, but nothing was raised"):
        fine.then_raises(DomainError)


def test_then_fails_naming_the_error_when_the_command_raised() -> None:
    closed = Scenario(Ticket).given(OPENED, TicketClosed("test-1")).when(lambda t: t.assign("x"))
    with pytest.raises(AssertionError, match="the command raised DomainError: ticket test-1"):
        closed.then(TicketAssigned("test-1", "x"))
    with pytest.raises(AssertionError, match="the command raised DomainError"):
        closed.then_state(assignee="x")


def test_then_state_checks_attributes_and_shows_a_diff_when_they_differ() -> None:
    scenario = Scenario(Ticket).given(OPENED).when(lambda t: t.assign("ann"))
    scenario.then_state(assignee="ann", title="printer on fire", closed=False)
    with pytest.raises(AssertionError) as failed:
        scenario.then_state(assignee="bob", closed=False)
    message = str(failed.value)
    assert message.startswith("state differ:\n")
    assert "--- expected\n+++ actual" in message
    assert "-[{'assignee': 'bob', 'closed': False}]" in message
    assert "+[{'assignee': 'ann', 'closed': False}]" in message


def test_when_created_checks_the_events_of_a_new_aggregate_and_refuses_a_history() -> None:
    Scenario(Ticket, "t-9").when_created(lambda: Ticket.open("t-9", "no coffee")).then(
        TicketOpened("t-9", "no coffee")
    ).then_state(title="no coffee", version=1)
    with pytest.raises(AssertionError, match="an aggregate with a history is not new"):
        Scenario(Ticket).given(OPENED).when_created(lambda: Ticket.open("test-1", "again"))


def test_then_before_when_says_when_is_missing() -> None:
    with pytest.raises(AssertionError, match=r"say when\(\.\.\.\) before then"):
        Scenario(Ticket).given(OPENED).then(OPENED)


def test_the_given_events_rebuild_the_aggregate_at_their_version() -> None:
    Scenario(Ticket).given(OPENED, TicketAssigned("test-1", "ann")).when(lambda t: t.close()).then(
        TicketClosed("test-1")
    ).then_state(version=3, assignee="ann", closed=True)


# -- a decider ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Deposited:
    amount: int


def _decide(c: Deposit, balance: int) -> list[Deposited]:
    if c.amount <= 0:
        raise DomainError(f"cannot deposit {c.amount}")
    if balance + c.amount > 100:
        raise DomainError("the limit is 100")
    return [Deposited(c.amount)]


PIGGY: Decider[Deposit, int, Deposited] = Decider(0, _decide, lambda s, e: s + e.amount)


def test_a_decider_scenario_passes_on_the_decided_events() -> None:
    DeciderScenario(PIGGY).given(Deposited(40)).when(Deposit(60)).then(Deposited(60))


def test_a_decider_scenario_folds_the_given_events_before_deciding() -> None:
    DeciderScenario(PIGGY).given(Deposited(40), Deposited(50)).when(Deposit(11)).then_raises(
        DomainError, match="limit is 100"
    )


def test_a_failing_decider_scenario_shows_a_diff_of_the_events() -> None:
    scenario = DeciderScenario(PIGGY).when(Deposit(5))
    with pytest.raises(AssertionError) as failed:
        scenario.then(Deposited(6))
    message = str(failed.value)
    assert "events differ:" in message
    assert "--- expected\n+++ actual" in message
    assert "-[Deposited(amount=6)]" in message and "+[Deposited(amount=5)]" in message


def test_a_decider_scenario_names_the_error_when_then_expected_events() -> None:
    scenario = DeciderScenario(PIGGY).when(Deposit(0))
    with pytest.raises(AssertionError, match="the command raised DomainError"):
        scenario.then(Deposited(0))
    scenario.then_raises(DomainError, match="cannot deposit 0")
    with pytest.raises(AssertionError, match="does not match"):
        scenario.then_raises(DomainError, match="limit")


# -- a process manager ---------------------------------------------------------------------------


@event("scenario_kit.trial_started")
@dataclass(frozen=True)
class TrialStarted:
    account: str


@event("scenario_kit.subscribed")
@dataclass(frozen=True)
class Subscribed:
    account: str
    plan: str


@event("scenario_kit.card_charged")
@dataclass(frozen=True)
class CardCharged:
    account: str
    amount: int


@event("scenario_kit.plan_refused")
@dataclass(frozen=True)
class PlanRefused:
    account: str


@command("scenario_kit.send_reminder")
@dataclass(frozen=True)
class SendReminder:
    account: str


@command("scenario_kit.suspend_account")
@dataclass(frozen=True)
class SuspendAccount:
    account: str


@command("scenario_kit.charge_card")
@dataclass(frozen=True)
class ChargeCard:
    account: str
    plan: str


@command("scenario_kit.activate_plan")
@dataclass(frozen=True)
class ActivatePlan:
    account: str
    plan: str


@command("scenario_kit.refund_card")
@dataclass(frozen=True)
class RefundCard:
    account: str
    amount: int


@command("scenario_kit.release_seat")
@dataclass(frozen=True)
class ReleaseSeat:
    account: str


class Trial(ProcessManager):
    """A trial: a reminder after five days, suspension after seven, unless subscribed.

    Subscribing charges the card, then activates the plan; a plan refused refunds the
    charge and releases the seat taken when subscribing, latest first.
    """

    name = "trial"
    correlation_key = "account"

    @starts(TrialStarted)
    def started(self, e: TrialStarted, p: Step) -> None:
        # Scheduled out of due order on purpose: they must fire in due order.
        p.schedule("expiry", after=timedelta(days=7))
        p.schedule("reminder", after=timedelta(days=5))
        p.goto("trial")

    @when("trial", Subscribed)
    def subscribed(self, e: Subscribed, p: Step) -> None:
        if e.plan == "bogus":
            raise ValueError("no such plan: bogus")
        p.cancel("reminder")
        p.cancel("expiry")
        p.on_failure(ReleaseSeat(e.account))
        p.send(ChargeCard(e.account, e.plan))
        p.data["plan"] = e.plan
        p.goto("charging")

    @when("charging", CardCharged)
    def charged(self, e: CardCharged, p: Step) -> None:
        p.on_failure(RefundCard(e.account, e.amount))
        p.send(ActivatePlan(e.account, p.data["plan"]))
        p.goto("activating")

    @when("activating", PlanRefused)
    def refused(self, e: PlanRefused, p: Step) -> None:
        p.send(SendReminder(e.account))
        p.compensate()
        p.goto("refused")
        p.finish()

    @on_timeout("reminder")
    def remind(self, p: Step) -> None:
        p.send(SendReminder(p.instance))

    @on_timeout("expiry")
    def expire(self, p: Step) -> None:
        p.send(SuspendAccount(p.instance))
        p.goto("expired")
        p.finish()


def _trial() -> ProcessScenario:
    return ProcessScenario(Trial(), start=T0).given(TrialStarted("acme"))


def test_a_process_scenario_checks_status_pending_timeouts_and_their_due_times() -> None:
    _trial().then_status("trial", finished=False).then_timeouts("reminder", "expiry").then_due(
        "reminder", T0 + timedelta(days=5)
    ).then_due("expiry", T0 + timedelta(days=7))


def test_a_process_scenario_checks_the_commands_of_the_when_step_only() -> None:
    _trial().when(Subscribed("acme", "pro")).then_commands(ChargeCard("acme", "pro")).then_status(
        "charging"
    ).then_timeouts().then_data(plan="pro")


def test_when_time_passes_fires_the_due_timeouts_in_due_order() -> None:
    _trial().when_time_passes(timedelta(days=8)).then_commands(
        SendReminder("acme"), SuspendAccount("acme")
    ).then_status("expired", finished=True).then_timeouts()


def test_when_time_passes_short_of_a_due_time_fires_nothing() -> None:
    trial = _trial().when_time_passes(timedelta(days=5) - timedelta(microseconds=1))
    trial.then_commands().then_timeouts("reminder", "expiry").then_ignored()
    trial.when_time_passes(timedelta(microseconds=1)).then_commands(SendReminder("acme"))
    trial.then_timeouts("expiry").then_status("trial")


def test_a_timeout_cancelled_by_an_event_does_not_fire_when_time_passes() -> None:
    _trial().given(Subscribed("acme", "pro")).when_time_passes(
        timedelta(days=30)
    ).then_ignored().then_commands().then_status("charging")


def test_then_ignored_passes_for_an_event_the_process_does_not_expect_in_its_state() -> None:
    _trial().when(CardCharged("acme", 10)).then_ignored().then_status("trial")
    ProcessScenario(Trial(), "acme").when(Subscribed("acme", "pro")).then_ignored()


def test_then_ignored_fails_when_a_step_was_taken() -> None:
    with pytest.raises(AssertionError, match="expected no step, but 1 were taken"):
        _trial().when(Subscribed("acme", "pro")).then_ignored()


def test_compensations_come_after_the_steps_own_commands_latest_first() -> None:
    _trial().given(Subscribed("acme", "pro"), CardCharged("acme", 30)).when(
        PlanRefused("acme")
    ).then_commands(SendReminder("acme"), RefundCard("acme", 30), ReleaseSeat("acme")).then_status(
        "refused", finished=True
    )


def test_a_failing_then_commands_shows_a_diff_of_expected_and_actual_commands() -> None:
    scenario = _trial().when(Subscribed("acme", "pro"))
    with pytest.raises(AssertionError) as failed:
        scenario.then_commands(ChargeCard("acme", "basic"))
    message = str(failed.value)
    assert message.startswith("commands differ:\n")
    assert "--- expected\n+++ actual" in message
    assert "-[ChargeCard(account='acme', plan='basic')]" in message
    assert "+[ChargeCard(account='acme', plan='pro')]" in message


def test_failing_status_timeouts_due_and_data_expectations_say_what_differs() -> None:
    trial = _trial()
    with pytest.raises(AssertionError, match="status is 'trial', expected 'expired'"):
        trial.then_status("expired")
    with pytest.raises(AssertionError, match="finished is False, expected True"):
        trial.then_status("trial", finished=True)
    with pytest.raises(AssertionError) as timeouts:
        trial.then_timeouts("reminder")
    assert "pending timeouts differ:" in str(timeouts.value)
    assert "+['expiry', 'reminder']" in str(timeouts.value)
    with pytest.raises(AssertionError, match="timeout 'reminder' is due at"):
        trial.then_due("reminder", T0 + timedelta(days=6))
    with pytest.raises(AssertionError, match="data differ"):
        trial.when(Subscribed("acme", "pro")).then_data(plan="basic")


def test_a_handler_that_raises_is_reported_by_the_expectations_after_it() -> None:
    scenario = _trial().when(Subscribed("acme", "bogus"))
    scenario.then_raises(ValueError, match="no such plan")
    with pytest.raises(AssertionError, match="the step raised ValueError: no such plan: bogus"):
        scenario.then_commands()


def test_an_event_of_another_instance_is_refused() -> None:
    scenario = _trial().when(Subscribed("globex", "pro"))
    with pytest.raises(AssertionError, match="belongs to another instance than 'acme'"):
        scenario.then_ignored()


def test_a_scenario_without_instance_or_event_cannot_tell_the_instance() -> None:
    with pytest.raises(AssertionError, match="cannot tell the instance"):
        ProcessScenario(Trial()).when_time_passes(timedelta(days=1))


def test_a_timeout_without_a_handler_fails_when_it_falls_due() -> None:
    class Forgetful(Trial):
        name = "forgetful"

        @starts(TrialStarted)
        def started(self, e: TrialStarted, p: Step) -> None:
            p.schedule("nudge", after=timedelta(hours=1))

    scenario = ProcessScenario(Forgetful()).given(TrialStarted("acme"))
    with pytest.raises(AssertionError, match=r"forgetful has no on_timeout\('nudge'\)"):
        scenario.when_time_passes(timedelta(hours=2))


# -- what the kit gets wrong -----------------------------------------------------------------------


class Dunning(ProcessManager):
    """Reminds an unpaid invoice every day, three times."""

    name = "dunning"
    correlation_key = "account"

    @starts(TrialStarted)
    def started(self, e: TrialStarted, p: Step) -> None:
        p.data["reminders"] = 0
        p.schedule("reminder", after=timedelta(days=1))

    @on_timeout("reminder")
    def remind(self, p: Step) -> None:
        p.send(SendReminder(p.instance))
        p.data["reminders"] += 1
        p.data.setdefault("reminded_at", []).append(p.now.isoformat())
        if p.data["reminders"] < 3:
            p.schedule("reminder", after=timedelta(days=1))


def test_a_timeout_scheduled_by_a_fired_timeout_fires_in_the_same_pass_when_due() -> None:
    ProcessScenario(Dunning(), start=T0).given(TrialStarted("acme")).when_time_passes(
        timedelta(days=4)
    ).then_commands(SendReminder("acme"), SendReminder("acme"), SendReminder("acme")).then_data(
        reminders=3,
        reminded_at=[(T0 + timedelta(days=d)).isoformat() for d in (1, 2, 3)],
    )


def test_then_ignored_before_any_when_says_when_is_missing() -> None:
    with pytest.raises(AssertionError):
        ProcessScenario(Trial()).given(TrialStarted("acme")).then_ignored()
