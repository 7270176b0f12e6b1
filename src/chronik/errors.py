"""The errors chronik raises: one root, a few precise leaves.

    ChronikError
    ├── DomainError                 a command broke a business rule (raised by domain code)
    │   └── InvalidValueError       a value object refused a field; names the field
    ├── ConfigurationError          bad URL, bad option, bad event registration, or
    │   │                           credentials or a database a server refused
    │   ├── StoreNotFoundError      opening without creating, and no store is there
    │   └── MigrationsPendingError  a service that may not migrate (CHRONIK_AUTO_MIGRATE=false)
    │                               found its tables missing or behind: run `chronik migrate`
    ├── BrokerUnavailableError      the broker could not be reached (within the wait allowed)
    ├── DuplicateMessageError       a consumer already handled this message: not applied again
    ├── LostLeadershipError         another runner moved a checkpoint this runner was moving
    ├── NotFoundError               an admin request names a projection, a process instance or
    │                               a dead letter that is not there
    ├── TokenRequiredError          an HTTP request that needs the API token came without it
    └── EventStoreError
        ├── InvalidInputError       a stream id, version or payload the store refuses
        ├── ConcurrencyError        the stream was not at the expected version
        ├── DuplicateEventError     an event id that is already stored
        ├── StreamNotFoundError     loading a stream or aggregate that has no events
        ├── SubjectForgottenError   personal data for a data subject who was forgotten
        ├── CorruptEventError       a stored event that cannot be decoded; names stream and version
        │   └── UnknownEventTypeError   its type name is not registered
        └── StoreUnavailableError   the database cannot be reached or stays locked

Errors carry the facts as attributes as well as in the message, so that callers
(an HTTP adapter turning a conflict into a 409, say) never parse text.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

__all__ = [
    "BrokerUnavailableError",
    "ChronikError",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptEventError",
    "DomainError",
    "DuplicateEventError",
    "DuplicateMessageError",
    "EventStoreError",
    "InvalidInputError",
    "InvalidValueError",
    "LostLeadershipError",
    "MigrationsPendingError",
    "NotFoundError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "StreamNotFoundError",
    "SubjectForgottenError",
    "TokenRequiredError",
    "UnknownEventTypeError",
]


class ChronikError(Exception):
    """Root of every error chronik raises on purpose."""


#: an absolute URI, as RFC 9457 recommends for a problem type (``tag:``, ``https:``, ``urn:``)
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


class DomainError(ChronikError):
    """A command would break a business rule. Domain code raises it or a subclass.

    A subclass may name the problem an HTTP adapter answers it with (RFC 9457), as plain
    class attributes, so the domain stays free of HTTP: ``problem_type`` (an absolute
    URI clients branch on), ``problem_title`` and ``problem_status`` (a 4xx). Undeclared,
    a rule is ``about:blank``, "Not allowed now", 409. They are checked as the class is
    defined: a malformed one is a ``ConfigurationError`` naming the class.
    """

    problem_type: ClassVar[str] = "about:blank"
    problem_title: ClassVar[str] = "Not allowed now"
    problem_status: ClassVar[int] = 409

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = f"{cls.__module__}.{cls.__qualname__}"
        kind, title, status = cls.problem_type, cls.problem_title, cls.problem_status
        if not isinstance(kind, str) or not _ABSOLUTE_URI.fullmatch(kind):
            raise ConfigurationError(
                f"{name}.problem_type must be an absolute URI such as "
                f"'tag:example.com,2026:orders/closed', not {kind!r}"
            )
        if not isinstance(title, str) or not title.strip():
            raise ConfigurationError(
                f"{name}.problem_title must be a non-empty string, not {title!r}"
            )
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 499:
            raise ConfigurationError(
                f"{name}.problem_status must be a 4xx status (a broken rule is the "
                f"client's to fix), not {status!r}"
            )


class InvalidValueError(DomainError, ValueError):
    """A value object (or command field) was given a value it does not accept."""

    problem_title = "Invalid value"
    problem_status = 422

    def __init__(self, owner: str, field: str, reason: str) -> None:
        self.owner = owner
        self.field = field
        self.reason = reason
        super().__init__(f"{owner}.{field}: {reason}")


class ConfigurationError(ChronikError, ValueError):
    """A URL, option or registration is malformed; the message says which and why."""


class StoreNotFoundError(ConfigurationError):
    """A store opened only if it exists (``create=False``) is not there: no file, no tables.

    A configuration problem: the URL or data directory names the wrong place.
    """


class MigrationsPendingError(ConfigurationError):
    """The store's tables are missing or behind, and this process may not migrate them.

    With ``CHRONIK_AUTO_MIGRATE=false`` a service runs no DDL: ``chronik migrate`` (the
    migration Job) creates and migrates the tables. The message names what is pending.
    """


class BrokerUnavailableError(ChronikError):
    """The broker could not be reached: refused, unknown host, no answer; the message says which.

    A broker that answers and refuses (a wrong password) is a ``ConfigurationError``
    instead: waiting longer would not help.
    """


class DuplicateMessageError(ChronikError):
    """This consumer already handled this message: its effect is not applied again.

    Raised in the transaction of the append that would have recorded it a second time,
    which then writes nothing.
    """


class LostLeadershipError(ChronikError):
    """Another runner moved the checkpoint this one was about to move: this one must stop.

    Nothing of the page was written; the runner stands by and tries to lead again.
    """


class NotFoundError(ChronikError, LookupError):
    """An admin request (``chronik.projections.admin`` and its kin) names something that
    is not there: a projection that never ran, a process instance, a dead letter."""


class TokenRequiredError(ChronikError):
    """A request that needs the API token came without it (or with another): HTTP 401."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class EventStoreError(ChronikError):
    """Something went wrong in an event store operation."""


class InvalidInputError(EventStoreError, ValueError):
    """The store refuses an argument (a stream id, a version, a page size, a payload)."""


class ConcurrencyError(EventStoreError):
    """An append found the stream at another version than the one expected.

    Nothing of the append was written. ``actual`` is the stream's version as the
    store saw it (0 when the stream does not exist).
    """

    def __init__(self, stream_id: str, expected: str, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, but it is at version {actual}"
        )


class DuplicateEventError(EventStoreError):
    """An appended event carries an id that is already stored. Nothing was written."""

    def __init__(self, stream_id: str, event_id: str) -> None:
        self.stream_id = stream_id
        self.event_id = event_id
        super().__init__(f"stream {stream_id!r}: an event with id {event_id} is already stored")


class StreamNotFoundError(EventStoreError, LookupError):
    """The stream has no events (or none up to the requested version or time)."""

    def __init__(self, stream_id: str, detail: str = "") -> None:
        self.stream_id = stream_id
        suffix = f" {detail}" if detail else ""
        super().__init__(f"stream {stream_id!r} has no events{suffix}")


class SubjectForgottenError(EventStoreError):
    """An append carries personal data of a data subject who was forgotten.

    A forgotten subject stays forgotten: the store never makes them a new key, so their
    old events keep reading as placeholders. Nothing of the append was written.
    """

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(
            f"data subject {subject!r} was forgotten: their personal data is not stored again"
        )


class CorruptEventError(EventStoreError):
    """A stored event cannot be turned back into an event object."""

    def __init__(self, stream_id: str, version: int, reason: str) -> None:
        self.stream_id = stream_id
        self.version = version
        self.reason = reason
        super().__init__(f"stream {stream_id!r} version {version}: {reason}")


class UnknownEventTypeError(CorruptEventError):
    """A stored event's type name is not in the registry the store was opened with."""

    def __init__(self, stream_id: str, version: int, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            stream_id,
            version,
            f"event type {type_name!r} is not registered (register its class, or an alias)",
        )


class StoreUnavailableError(EventStoreError):
    """The database could not be reached, or stayed locked past the timeout."""
