"""chronik: event-sourced, CQRS services built the domain-driven way.

The public API, in one place. Domain code imports ``chronik.domain`` only.
"""

from chronik.adapters import open_event_store
from chronik.domain import (
    Aggregate,
    Decider,
    Personal,
    ValueObject,
    applies,
    event,
)
from chronik.errors import (
    BrokerUnavailableError,
    ChronikError,
    ConcurrencyError,
    ConfigurationError,
    CorruptEventError,
    DomainError,
    DuplicateEventError,
    EventStoreError,
    InvalidInputError,
    InvalidValueError,
    StoreNotFoundError,
    StoreUnavailableError,
    StreamNotFoundError,
    SubjectForgottenError,
    UnknownEventTypeError,
)
from chronik.eventstore import (
    AppendResult,
    EventStore,
    EventTypes,
    ExpectedVersion,
    Metadata,
    NewEvent,
    RecordedEvent,
    Repository,
    Upcaster,
    handle_command,
)

__all__ = [
    "Aggregate",
    "AppendResult",
    "BrokerUnavailableError",
    "ChronikError",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptEventError",
    "Decider",
    "DomainError",
    "DuplicateEventError",
    "EventStore",
    "EventStoreError",
    "EventTypes",
    "ExpectedVersion",
    "InvalidInputError",
    "InvalidValueError",
    "Metadata",
    "NewEvent",
    "Personal",
    "RecordedEvent",
    "Repository",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "StreamNotFoundError",
    "SubjectForgottenError",
    "UnknownEventTypeError",
    "Upcaster",
    "ValueObject",
    "applies",
    "event",
    "handle_command",
    "open_event_store",
]

__version__ = "0.1.0"
