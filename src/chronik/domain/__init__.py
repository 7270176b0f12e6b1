"""Domain building blocks: plain Python, standard library only.

Domain code imports from here and from nothing outside the standard library: no
database, no clock, no id generator. Time and ids are passed in by the caller.
"""

from chronik.domain.aggregate import Aggregate, applies
from chronik.domain.commands import command, command_name
from chronik.domain.decider import Decider
from chronik.domain.events import EventList, EventSpec, Personal, event, event_spec
from chronik.domain.values import ValueObject
from chronik.errors import DomainError, InvalidValueError

__all__ = [
    "Aggregate",
    "Decider",
    "DomainError",
    "EventList",
    "EventSpec",
    "InvalidValueError",
    "Personal",
    "ValueObject",
    "applies",
    "command",
    "command_name",
    "event",
    "event_spec",
]
