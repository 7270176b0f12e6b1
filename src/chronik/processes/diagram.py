"""A process manager's state diagram, read from its declarations and its handlers' code.

``@starts`` and ``@when`` say in which states a handler runs and on which events;
``@on_timeout`` which timeout it answers. Where a handler goes is in its body:
``p.goto("status")`` with a literal status (or ``a if c else b`` of two literals),
``p.schedule("name", ...)`` for the timeouts it arms, ``p.finish()`` when it ends.
``diagram`` reads those calls from the handler's source (``inspect`` and ``ast``, nothing
runs), so the diagram is the code's, not a second description kept beside it. A ``goto``
whose status is computed shows as the target ``?``; a handler that goes nowhere stays in
its state (a loop).

A timeout's transitions start from the states its scheduling handlers go to: a pending
timeout fires while the instance waits there.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chronik.processes.process import ProcessManager

__all__ = ["START", "UNKNOWN", "Diagram", "Transition", "diagram"]

#: the status of an instance before its first step (``ProcessState.status``)
START = "new"
#: the target of a ``goto`` whose status the code computes
UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class Transition:
    """One arrow: in ``source``, on ``trigger``, the handler goes to ``target``."""

    source: str
    #: an event class's name, or ``timeout:NAME``
    trigger: str
    target: str
    handler: str
    #: the handler finishes the process
    finishes: bool = False


@dataclass(frozen=True, slots=True)
class Diagram:
    """The states and transitions of one process, in declaration order."""

    process: str
    states: tuple[str, ...]
    transitions: tuple[Transition, ...]
    #: states some handler finishes the process in
    final: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class _Body:
    targets: tuple[str, ...]
    scheduled: tuple[str, ...]
    finishes: bool


def _literals(node: ast.expr) -> list[str]:
    """The strings an argument can be: a literal, or either branch of ``a if c else b``
    (each a literal); [] when the code computes it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _literals(node.body), _literals(node.orelse)
        return body + orelse if body and orelse else []
    return []


def _body(method: Callable[..., Any]) -> _Body:
    """The ``goto``/``schedule``/``finish`` calls on the handler's step parameter."""
    function = inspect.unwrap(method)
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):  # no source (built at run time): nothing to read
        return _Body((), (), False)
    tree = ast.parse(source)
    params = list(inspect.signature(function).parameters)
    step = params[-1] if params else "p"
    targets: list[str] = []
    scheduled: list[str] = []
    finishes = False
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == step
        ):
            continue
        literals = _literals(node.args[0]) if node.args else []
        if node.func.attr == "goto":
            for target in literals or [UNKNOWN]:
                if target not in targets:
                    targets.append(target)
        elif node.func.attr == "schedule":
            scheduled.extend(literals)
        elif node.func.attr == "finish":
            finishes = True
    return _Body(tuple(targets), tuple(scheduled), finishes)


def diagram(process: type[ProcessManager]) -> Diagram:
    """The state diagram of ``process``: a pure function of its class and its source."""
    transitions: list[Transition] = []
    bodies: dict[str, _Body] = {}

    def body(name: str) -> _Body:
        if name not in bodies:
            bodies[name] = _body(getattr(process, name))
        return bodies[name]

    def add(source: str, trigger: str, handler: str) -> None:
        found = body(handler)
        for target in found.targets or (source,):
            transitions.append(Transition(source, trigger, target, handler, found.finishes))

    for event_type, handler in process._starts.items():
        add(START, event_type.__name__, handler)
    declared: list[str] = [START]
    for entries in process._when.values():
        for states, _handler in entries:
            for state in states:
                if state != "*" and state not in declared:
                    declared.append(state)
    for event_type, entries in process._when.items():
        for states, handler in entries:
            for state in states:
                for source in declared[1:] if state == "*" else [state]:
                    add(source, event_type.__name__, handler)
    for name, handler in process._timeouts.items():
        waiting = [
            t.target
            for t in list(transitions)
            if name in body(t.handler).scheduled and t.target != UNKNOWN
        ]
        for source in dict.fromkeys(waiting):
            add(source, f"timeout:{name}", handler)
    shown = list(declared)
    for t in transitions:
        for state in (t.source, t.target):
            if state not in shown:
                shown.append(state)
    final = frozenset(t.target for t in transitions if t.finishes)
    return Diagram(process.name, tuple(shown), tuple(transitions), final)
