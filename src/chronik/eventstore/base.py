"""What every adapter shares: checking input, encoding, decoding. Adapters only move rows."""

from __future__ import annotations

import abc
import copy
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import MAXYEAR, UTC, datetime
from typing import Any, Self
from uuid import UUID

import msgspec

from chronik import tracing
from chronik.errors import (
    CorruptEventError,
    DuplicateEventError,
    InvalidInputError,
    SubjectForgottenError,
)
from chronik.eventstore.codec import _ENCRYPTED as ENCRYPTED_KEY
from chronik.eventstore.codec import _SLOW, EventTypes, _TypeInfo, masked
from chronik.eventstore.context import current_idempotency, current_metadata, merge_metadata
from chronik.eventstore.ids import uuid7s
from chronik.eventstore.port import (
    AllPage,
    AppendResult,
    ExpectedVersion,
    Metadata,
    NewEvent,
    RecordedEvent,
    Snapshot,
    Undecodable,
)
from chronik.eventstore.signal import HeadSignal
from chronik.instruments import NO_INSTRUMENTS, Instruments

__all__ = [
    "AppendHook",
    "AppendRequest",
    "BaseEventStore",
    "EncodedEvent",
    "Row",
    "ShownEvent",
    "check_stream_id",
    "recorded_events",
]

MAX_STREAM_ID_BYTES = 1000
MAX_PAGE = 100_000

# position, stream_id, version, id, type, schema_version, recorded_at, data,
# correlation_id, causation_id, headers (JSON or None)
Row = tuple[int, str, int, Any, str, int, Any, bytes, str | None, str | None, bytes | None]

_headers_decode = msgspec.json.Decoder(dict[str, str]).decode
_json_encode = msgspec.json.Encoder().encode


class ShownEvent(msgspec.Struct, frozen=True):
    """An event as a person inspects it (the console, tools): its data as plain JSON
    values, and what became of each personal field.

    ``personal`` names each personal field: ``"shown"`` (decrypted into ``data``),
    ``"hidden"`` (not decrypted for this reader: ``data`` holds ``"[encrypted]"``) or
    ``"forgotten"`` (its subject was forgotten: ``data`` holds the placeholder, never the
    ciphertext). ``error`` says why an event could not be decoded (``data`` is then as
    stored, personal fields masked).
    """

    id: str
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    recorded_at: datetime
    correlation_id: str | None
    causation_id: str | None
    headers: dict[str, str] | None
    data: Any
    personal: dict[str, str]
    error: str | None = None


# msgspec Structs, not dataclasses: built once per event on every append, and a Struct's
# __init__ is C (a dataclass's is Python, about 1 us with seven fields).
class EncodedEvent(msgspec.Struct, gc=False):
    """One event ready to store."""

    id: UUID
    type: str
    schema_version: int
    data: bytes
    correlation_id: str
    causation_id: str
    headers: bytes | None


class AppendRequest(msgspec.Struct, gc=False):
    """One append: its events go in together or not at all."""

    stream_id: str
    expected: int  # -1 any, 0 no stream, n exactly n
    events: list[EncodedEvent]
    originals: list[object] = msgspec.field(default_factory=list)  # the domain events
    #: subjects whose keys sealed personal fields: they must still have them at commit
    sealed: tuple[str, ...] = ()
    #: subjects forgotten by the append's events (``forgets=True``), in its transaction
    forgets: tuple[str, ...] = ()


#: Runs inside an append's transaction, on the adapter's own connection (a
#: sqlite3.Connection, a psycopg AsyncConnection, or None in memory), with the
#: events as recorded. Raising fails the append: nothing of it is written. It may
#: return a callable that the memory store calls once the append is applied.
AppendHook = Callable[[Any, list[RecordedEvent]], Awaitable[Callable[[], None] | None]]


def recorded_events(
    request: AppendRequest, result: AppendResult, at: datetime
) -> list[RecordedEvent]:
    """The events of an append as they were recorded, for hooks in its transaction."""
    first_version = result.version - len(request.events) + 1
    return [
        RecordedEvent(
            e.id,
            request.stream_id,
            first_version + i,
            result.first_position + i,
            e.type,
            e.schema_version,
            at,
            original,
            Metadata(
                e.correlation_id,
                e.causation_id,
                None if e.headers is None else _headers_decode(e.headers),
            ),
        )
        for i, (e, original) in enumerate(zip(request.events, request.originals, strict=True))
    ]


def check_stream_id(stream_id: object) -> str:
    """The stream id if the store can keep it as given, else InvalidInputError saying why."""
    if not isinstance(stream_id, str):
        raise InvalidInputError(f"a stream id must be a str, got {type(stream_id).__name__}")
    if not stream_id:
        raise InvalidInputError("a stream id must not be empty")
    if "\x00" in stream_id:
        raise InvalidInputError("a stream id must not contain the NUL character")
    if stream_id.isascii() and len(stream_id) <= MAX_STREAM_ID_BYTES:
        return stream_id  # one byte a character, no surrogates: no need to encode it
    try:
        size = len(stream_id.encode())
    except UnicodeEncodeError:
        raise InvalidInputError("a stream id must be valid Unicode (no lone surrogates)") from None
    if size > MAX_STREAM_ID_BYTES:
        raise InvalidInputError(
            f"a stream id is at most {MAX_STREAM_ID_BYTES} bytes in UTF-8; this one is {size}"
        )
    return stream_id


def _check_version(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be an int from 1 to {MAX_PAGE}, got {limit!r}")
    return limit


def _check_names(name: str, values: object) -> list[str] | None:
    """A filter's names, sorted and distinct; None for no filter."""
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Collection):
        raise InvalidInputError(f"{name} must be a collection of strings, got {values!r}")
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise InvalidInputError(f"{name} must hold strings only, got {bad[0]!r}")
    return sorted(set(values))


def _check_headers(headers: object) -> bytes | None:
    if headers is None:
        return None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidInputError("metadata headers must be a dict of str to str")
    return _json_encode(headers) if headers else None


class BaseEventStore(abc.ABC):
    """The public event store API, built on a few row-moving methods per adapter."""

    #: converts the stored id / time to UUID / aware datetime; None when the driver does.
    _load_id: Callable[[Any], UUID] | None = None
    _load_time: Callable[[Any], datetime] | None = None
    #: converts a page's stored ids at once (one call, not one per row); None: as stored.
    _load_ids: Callable[[list[Any]], list[UUID]] | None = None
    #: where repositories report append timings and retries (the runtime sets its metrics)
    instruments: Instruments = NO_INSTRUMENTS

    def __init__(
        self,
        types: EventTypes,
        *,
        signal: HeadSignal | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``signal``: the head of the database the store is in, shared by its readers;
        ``on_close``: what closing the store closes besides (its database, if it owns it).
        """
        self.types = types
        self._signal = signal or HeadSignal()
        self._on_close = on_close
        self._hooks: list[AppendHook] = []
        #: events appended through this store object (for metrics)
        self.appended_events = 0

    def add_append_hook(self, hook: AppendHook) -> None:
        """Run ``hook`` in the transaction of every append (inline projections, outboxes)."""
        self._hooks.append(hook)

    def remove_append_hook(self, hook: AppendHook) -> None:
        """Stop running ``hook`` (nothing if it is not installed)."""
        if hook in self._hooks:
            self._hooks.remove(hook)

    @property
    def append_hooks(self) -> tuple[AppendHook, ...]:
        """The hooks every append runs, in the order they run."""
        return tuple(self._hooks)

    async def _run_hooks(
        self, conn: Any, request: AppendRequest, result: AppendResult, at: datetime
    ) -> list[Callable[[], None]]:
        records = recorded_events(request, result, at)
        after: list[Callable[[], None]] = []
        for hook in self._hooks:
            done = await hook(conn, records)
            if done is not None:
                after.append(done)
        return after

    def with_types(self, types: EventTypes) -> Self:
        """A view of the same storage that reads and writes through another registry.

        It shares connections with this store: close only one of them.
        """
        view = copy.copy(self)
        view.types = types
        return view

    # -- the adapter's part ------------------------------------------------------------

    @abc.abstractmethod
    async def _append(self, request: AppendRequest) -> AppendResult: ...

    @abc.abstractmethod
    async def _stream_rows(
        self, stream_id: str, start: int, stop: int | None, limit: int | None, backwards: bool
    ) -> list[Row]:
        """Rows with start <= version (<= stop), ascending, or descending from start."""

    async def _payload_rows(
        self, stream_id: str, start: int, stop: int | None
    ) -> list[tuple[int, str, int, bytes]]:
        """(version, type, schema_version, data) of the rows ``start <= version (<= stop)``.

        What loading an aggregate needs and no more; adapters override it with a query
        of those four columns.
        """
        rows = await self._stream_rows(stream_id, start, stop, None, False)
        return [(r[2], r[4], r[5], r[7]) for r in rows]

    @abc.abstractmethod
    async def _all_rows(
        self,
        after: int,
        limit: int,
        types: list[str] | None = None,
        upto: int | None = None,
        categories: list[str] | None = None,
    ) -> list[Row]:
        """Rows above ``after`` (and at most ``upto``), by position; of ``types`` and of
        streams in ``categories`` when given (each a non-empty sorted list, read through
        an index: an adapter must not scan the events it does not return)."""

    async def _filtered_rows(
        self, after: int, limit: int, types: list[str] | None, categories: list[str] | None
    ) -> tuple[list[Row], int]:
        """The head, then the rows of a filtered read up to it (an adapter may do both in
        one statement, seeing one snapshot)."""
        head = await self.head_position()
        if head <= after:
            return [], head
        return await self._all_rows(after, limit, types, head, categories), head

    @abc.abstractmethod
    async def _event_row(self, event_id: UUID) -> Row | None:
        """The stored row of the event with this id, if any."""

    @abc.abstractmethod
    async def _stream_list(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """(stream id, version) of streams whose id starts with ``prefix``, by id."""

    async def list_streams(
        self,
        prefix: str = "",
        limit: int = 100,
        *,
        after: str = "",
        event_type: str | None = None,
    ) -> list[tuple[str, int]]:
        """Stream ids starting with ``prefix`` and their versions, in id order.

        A page: ``after`` is the last id of the page before (the next page starts past
        it); ``event_type`` (a stored type name) keeps the streams that have an event of
        that type. Each page is a range on an index, whatever the store's size.
        """
        _check_limit(limit)
        if not isinstance(after, str) or not isinstance(prefix, str):
            raise InvalidInputError("a stream id prefix and 'after' must be strings")
        if event_type is None:
            if not after:
                return await self._stream_list(prefix, limit)
            return await self._stream_page(prefix, after, None, limit)
        if not isinstance(event_type, str) or not event_type:
            raise InvalidInputError(f"an event type must be a non-empty string, got {event_type!r}")
        return await self._stream_page(prefix, after, event_type, limit)

    @abc.abstractmethod
    async def _stream_page(
        self, prefix: str, after: str, event_type: str | None, limit: int
    ) -> list[tuple[str, int]]:
        """(stream id, version) of the streams with ``prefix``, ids above ``after``, with an
        event of ``event_type`` if given, by id; at most ``limit``."""

    async def correlated(
        self, correlation_id: str, *, limit: int = 500, decrypt: bool = True
    ) -> list[ShownEvent]:
        """The events of one correlation (all that one request or message set off), in
        position order, at most ``limit``: what the console draws causation from."""
        if not isinstance(correlation_id, str) or not correlation_id:
            raise InvalidInputError("a correlation id must be a non-empty string")
        _check_limit(limit)
        return await self.shown(
            await self._correlation_rows(correlation_id, limit), decrypt=decrypt
        )

    @abc.abstractmethod
    async def _correlation_rows(self, correlation_id: str, limit: int) -> list[Row]:
        """Rows with this correlation id, by position; at most ``limit``."""

    async def read_stream_raw(self, stream_id: str) -> list[dict[str, Any]]:
        """A stream's events as stored (JSON data not decoded into classes): for tools.

        Personal fields show as ``"[encrypted]"``, not as their ciphertext.
        """
        check_stream_id(stream_id)
        rows = await self._stream_rows(stream_id, 1, None, None, False)
        load_id, load_time = self._load_id, self._load_time
        out = []
        for position, _, version, event_id, type_name, schema, at, data, corr, caus, hdr in rows:
            out.append(
                {
                    "version": version,
                    "position": position,
                    "id": str(event_id if load_id is None else load_id(event_id)),
                    "type": type_name,
                    "schema_version": schema,
                    "recorded_at": (at if load_time is None else load_time(at)).isoformat(),
                    "data": masked(msgspec.json.decode(data)),
                    "correlation_id": corr,
                    "causation_id": caus,
                    "headers": None if hdr is None else _headers_decode(hdr),
                }
            )
        return out

    async def inspect_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        *,
        limit: int | None = None,
        decrypt: bool = True,
    ) -> list[ShownEvent]:
        """A stream's events for a person to inspect (the console): see ``ShownEvent``.

        ``decrypt``: personal fields are decrypted (else shown as ``"[encrypted]"``);
        either way a forgotten subject's fields say so.
        """
        check_stream_id(stream_id)
        _check_version("from_version", from_version, 1)
        if limit is not None:
            _check_limit(limit)
        rows = await self._stream_rows(stream_id, from_version, None, limit, False)
        return await self.shown(rows, decrypt=decrypt)

    async def shown(self, rows: list[Row], *, decrypt: bool) -> list[ShownEvent]:
        """Rows of this store as ``ShownEvent``s (the adapters' admin queries use it)."""
        stored = [msgspec.json.decode(row[7]) for row in rows]
        personal = [
            {
                k: v[ENCRYPTED_KEY][0]
                for k, v in data.items()
                if type(v) is dict and ENCRYPTED_KEY in v and v[ENCRYPTED_KEY]
            }
            if type(data) is dict
            else {}
            for data in stored
        ]
        subjects = {str(s) for fields in personal for s in fields.values()}
        forgotten = await self._forgotten_among(subjects) if subjects else set()
        out: list[ShownEvent] = []
        for row, data, fields in zip(rows, stored, personal, strict=True):
            position, stream_id, version, event_id, type_name, schema, at, _, corr, caus, hdr = row
            error: str | None = None
            value: Any = masked(data)
            if decrypt:
                try:
                    [decoded] = await self._decode([row])
                    value = msgspec.to_builtins(decoded.event)
                except CorruptEventError as exc:
                    error = str(exc)
            marks = {
                name: "forgotten" if subject in forgotten else "shown" if decrypt else "hidden"
                for name, subject in fields.items()
            }
            if error is not None:
                marks = {k: "forgotten" if v == "forgotten" else "hidden" for k, v in marks.items()}
            out.append(
                ShownEvent(
                    str(event_id if self._load_id is None else self._load_id(event_id)),
                    stream_id,
                    version,
                    position,
                    type_name,
                    schema,
                    at if self._load_time is None else self._load_time(at),
                    corr,
                    caus,
                    None if hdr is None else _headers_decode(hdr),
                    value,
                    marks,
                    error,
                )
            )
        return out

    async def find_event(self, event_id: UUID) -> RecordedEvent | None:
        """The event with this id, or None."""
        row = await self._event_row(event_id)
        return None if row is None else (await self._decode([row]))[0]

    @abc.abstractmethod
    async def _keys(self, subjects: set[str], *, create: bool) -> dict[str, bytes]:
        """The keys of the subjects that have one; with ``create``, make the missing ones.

        A forgotten subject never gets a key again: they are left out, even with create.
        """

    @abc.abstractmethod
    async def _forget(self, subject: str) -> None:
        """Delete the subject's key and every snapshot that holds their data, and record
        the subject as forgotten (the tombstone), in one transaction."""

    @abc.abstractmethod
    async def _forgotten_among(self, subjects: set[str]) -> set[str]:
        """Those of ``subjects`` recorded as forgotten."""

    @abc.abstractmethod
    async def _stream_version(self, stream_id: str) -> int: ...

    @abc.abstractmethod
    async def _version_at(self, stream_id: str, when: datetime) -> int:
        """The highest version recorded at or before ``when`` (in UTC)."""

    @abc.abstractmethod
    async def head_position(self) -> int: ...

    @abc.abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    @abc.abstractmethod
    async def load_snapshot(
        self, stream_id: str, *, max_version: int | None = None
    ) -> Snapshot | None: ...

    async def close(self) -> None:
        """Close the database this store owns (``open_event_store``'s): a store its
        database handed out is closed with that database."""
        if self._on_close is not None:
            await self._on_close()

    # -- writing -----------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[object],
        *,
        expected: ExpectedVersion | int = ExpectedVersion.ANY,
        metadata: Metadata | None = None,
    ) -> AppendResult:
        """Append ``events`` atomically if the stream is at ``expected``.

        Raises ConcurrencyError (nothing written) when it is not, InvalidInputError
        for an argument the store refuses. Events may be domain events or NewEvent
        wrappers carrying their own id and metadata.
        """
        if not tracing.active():  # no provider: not even the span's context manager
            return await self._append_untraced(stream_id, events, expected, metadata)
        with tracing.appending(self, stream_id, len(events)) as traced:
            result = await self._append_untraced(stream_id, events, expected, metadata)
            traced.landed(result)
        return result

    async def _append_untraced(
        self,
        stream_id: str,
        events: Sequence[object],
        expected: ExpectedVersion | int,
        metadata: Metadata | None,
    ) -> AppendResult:
        scope = current_idempotency()
        if scope is None:
            request = await self.prepare(stream_id, events, expected, metadata)
            result = await self._append(request)
        else:
            taken = scope.count
            try:
                request = await self.prepare(stream_id, events, expected, metadata)
                try:
                    result = await self._append(request)
                except DuplicateEventError:
                    done = await self._done(request) if scope.resume else None
                    if done is None:
                        raise
                    scope.found += len(request.events)
                    return done
            except BaseException:
                scope.rewind(taken)  # nothing was written: the next append gets these ids
                raise
        self._signal.advance(result.position)
        self.appended_events += len(events)
        return result

    async def _done(self, request: AppendRequest) -> AppendResult | None:
        """The stored outcome of ``request`` if every one of its events is stored as is."""
        found = [await self._event_row(e.id) for e in request.events]
        if any(row is None for row in found):
            return None
        recorded = await self._decode([row for row in found if row is not None])
        versions = [r.version for r in recorded]
        if any(r.stream_id != request.stream_id for r in recorded) or versions != list(
            range(versions[0], versions[0] + len(versions))
        ):
            return None
        return AppendResult(
            request.stream_id, versions[-1], recorded[0].position, recorded[-1].position
        )

    async def prepare(
        self,
        stream_id: str,
        events: Sequence[object],
        expected: ExpectedVersion | int = ExpectedVersion.ANY,
        metadata: Metadata | None = None,
    ) -> AppendRequest:
        """Check and encode an append without writing it."""
        check_stream_id(stream_id)
        try:
            expected_value = ExpectedVersion.of(expected).value
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(str(exc)) from None
        if isinstance(events, str | bytes) or not isinstance(events, Sequence) or not events:
            raise InvalidInputError("append needs a non-empty sequence of events")
        # The current span (the append's) is the context whatever the events cause goes on.
        metadata = tracing.carried(merge_metadata(metadata, current_metadata()), Metadata)
        lookup = self.types.lookup
        encode = self.types.encode_data
        scope = current_idempotency()
        ids = uuid7s(len(events)) if scope is None else scope.next_ids(len(events))
        head = events[0]
        first_id = str(head.id if type(head) is NewEvent and head.id is not None else ids[0])
        default = (first_id, first_id, None)
        encoded: list[EncodedEvent] = []
        personal: list[tuple[int, _TypeInfo, object, str]] = []
        subjects: set[str] = set()
        forgets: list[str] = []
        for item, new_id in zip(events, ids, strict=True):
            if type(item) is NewEvent:
                event, event_id = item.event, item.id or new_id
                meta = merge_metadata(item.metadata, metadata)
            else:
                event, event_id, meta = item, new_id, metadata
            info = lookup(type(event))
            if info is None:
                raise InvalidInputError(
                    f"stream {stream_id!r}: {type(event).__qualname__} is not a registered "
                    "event type of this store"
                )
            if meta is None:
                correlation, causation, headers = default
            else:
                correlation = meta.correlation_id or first_id
                causation = meta.causation_id or first_id
                headers = _check_headers(meta.headers)
            if info.personal:
                # Encrypted below, once the subjects' keys are at hand.
                subject = stream_id if info.subject is None else str(getattr(event, info.subject))
                if subject in forgets:  # forgotten by an earlier event of this append
                    raise SubjectForgottenError(subject)
                subjects.add(subject)
                personal.append((len(encoded), info, event, subject))
                data = b""
            else:
                data = encode(info, event, stream_id, {})
                if info.forgets:
                    subject = (
                        stream_id if info.subject is None else str(getattr(event, info.subject))
                    )
                    if not subject:
                        raise InvalidInputError(
                            f"stream {stream_id!r}: {type(event).__qualname__} forgets an "
                            "empty data subject"
                        )
                    if subject not in forgets:
                        forgets.append(subject)
            encoded.append(
                EncodedEvent(
                    event_id, info.name, info.version, data, correlation, causation, headers
                )
            )
        if personal:
            keys = await self._keys(subjects, create=True)
            for subject in sorted(subjects):
                if subject not in keys:
                    raise SubjectForgottenError(subject)
            for index, info, event, _ in personal:
                encoded[index].data = encode(info, event, stream_id, keys)
        originals = [e.event if type(e) is NewEvent else e for e in events]
        return AppendRequest(
            stream_id, expected_value, encoded, originals, tuple(sorted(subjects)), tuple(forgets)
        )

    async def forget(self, subject: str) -> None:
        """Forget a data subject: their personal fields read as placeholders from now on.

        Deletes their key and the snapshots holding their data, and records them as
        forgotten: personal data for them is refused from then on (SubjectForgottenError).
        An event type declared ``forgets=True`` does the same in its append's transaction.
        """
        if not isinstance(subject, str) or not subject:
            raise InvalidInputError("a data subject must be a non-empty str")
        await self._forget(subject)

    async def check_forgetting(self, *, repair: bool = False) -> list[str]:
        """Subjects that a stored forgetting event names but who are not forgotten.

        Only stores written before forgetting was atomic with its event can hold them
        (the event was appended, the separate forget never ran). With ``repair`` each is
        forgotten now. The forgetting event types are those of this store's registry.
        """
        names = sorted(self.types.forgetting_names)
        named: set[str] = set()
        after, head = 0, await self.head_position()
        while names:
            rows = await self._all_rows(after, 1000, names, head)
            if not rows:
                break
            for record in await self._decode(rows):
                subject = self.types.forgotten_by(record.event, record.stream_id)
                if subject:
                    named.add(subject)
            after = rows[-1][0]
        pending = sorted(named - await self._forgotten_among(named)) if named else []
        if repair:
            for subject in pending:
                await self.forget(subject)
        return pending

    # -- reading -----------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        *,
        to_version: int | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        check_stream_id(stream_id)
        _check_version("from_version", from_version, 1)
        if to_version is not None:
            _check_version("to_version", to_version, 0)
        if limit is not None:
            _check_limit(limit)
        rows = await self._stream_rows(stream_id, from_version, to_version, limit, False)
        return await self._decode(rows)

    async def load_events(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> tuple[list[object], int]:
        """The domain events of a stream from ``from_version`` (to ``to_version``), and
        the version of the last one (0 if there is none): what an aggregate is folded from.

        ``read_stream`` without ids, times and metadata: it reads four columns a row and
        builds no ``RecordedEvent``. Decrypting and upcasting are the same.
        """
        check_stream_id(stream_id)
        _check_version("from_version", from_version, 1)
        if to_version is not None:
            _check_version("to_version", to_version, 0)
        rows = await self._payload_rows(stream_id, from_version, to_version)
        if not rows:
            return [], 0
        types = self.types
        fast = types.fast_decoders
        events: list[object] = []
        slow: list[tuple[int, int, str, int, dict[str, Any]]] = []
        for version, type_name, schema, data in rows:
            entry = fast.get(type_name)
            if entry is not None and entry[0] == schema:
                try:
                    events.append(entry[1](data))
                except msgspec.DecodeError as exc:
                    raise types.undecodable(stream_id, version, type_name, exc) from None
                continue
            event = types.decode_fast(stream_id, version, type_name, schema, data)
            if event is _SLOW:
                obj = types.parse(stream_id, version, data)
                slow.append((len(events), version, type_name, schema, obj))
            events.append(event)
        if slow:
            subjects: set[str] = set()
            for *_, obj in slow:
                subjects |= types.subjects_in(obj)
            keys = await self._keys(subjects, create=False) if subjects else {}
            for index, version, type_name, schema, obj in slow:
                events[index] = types.decode_slow(stream_id, version, type_name, schema, obj, keys)
        return events, rows[-1][0]

    async def read_stream_backwards(
        self, stream_id: str, from_version: int | None = None, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        check_stream_id(stream_id)
        if from_version is not None:
            _check_version("from_version", from_version, 1)
        if limit is not None:
            _check_limit(limit)
        rows = await self._stream_rows(stream_id, from_version or 0, None, limit, True)
        return await self._decode(rows)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it has no events."""
        return await self._stream_version(check_stream_id(stream_id))

    async def version_at(self, stream_id: str, when: datetime) -> int:
        """The stream's version as it was at ``when``; 0 if it had no events then."""
        check_stream_id(stream_id)
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise InvalidInputError("a point in time must be a timezone-aware datetime")
        try:
            utc = when.astimezone(UTC)
        except OverflowError:
            # Within a day of datetime's ends, an instant may have no UTC datetime: it is
            # after every event (or before every one), never an error.
            return await self._stream_version(stream_id) if when.year == MAXYEAR else 0
        return await self._version_at(stream_id, utc)

    async def read_all(self, after: int = 0, *, limit: int = 1000) -> list[RecordedEvent]:
        _check_version("after", after, 0)
        _check_limit(limit)
        return await self._decode(await self._all_rows(after, limit))

    async def read_all_page(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: Collection[str] | None = None,
        categories: Collection[str] | None = None,
        tolerant: bool = False,
    ) -> AllPage:
        """Like ``read_all``, only events of ``types`` (stored names) if given, and of
        streams in ``categories`` (``category_of``) if given: both, when both are.

        Filtered, the head is read first and the page bounded by it: every position up
        to a visible head is committed or never will be (guarantee 2), so a reader may
        move past the events it did not ask for, and ``scanned_to`` reaches the head
        even when nothing in it matched. With ``tolerant``, an event that cannot
        be decoded does not fail the page: it comes back in its place with an
        ``Undecodable`` (holding the CorruptEventError) as its event.
        """
        _check_version("after", after, 0)
        _check_limit(limit)
        names = _check_names("types", types)
        cats = _check_names("categories", categories)
        if names is None and cats is None:
            rows = await self._all_rows(after, limit)
            scanned = rows[-1][0] if rows else after
        elif names == [] or cats == []:
            rows, scanned = [], max(await self.head_position(), after)
        else:
            rows, head = await self._filtered_rows(after, limit, names, cats)
            scanned = rows[-1][0] if len(rows) == limit else max(head, after)
        try:
            return AllPage(await self._decode(rows), scanned)
        except CorruptEventError:
            if not tolerant:
                raise
        # Some event of the page does not decode: find it (them) one by one.
        events: list[RecordedEvent] = []
        for row in rows:
            try:
                events.extend(await self._decode([row]))
            except CorruptEventError as exc:
                events.append(self._undecodable(row, exc))
        return AllPage(events, scanned)

    def _undecodable(self, row: Row, error: CorruptEventError) -> RecordedEvent:
        position, stream_id, version, event_id, type_name, schema, at, _, corr, caus, hdr = row
        return RecordedEvent(
            event_id if self._load_id is None else self._load_id(event_id),
            stream_id,
            version,
            position,
            type_name,
            schema,
            at if self._load_time is None else self._load_time(at),
            Undecodable(error),
            Metadata(corr, caus, None if hdr is None else _headers_decode(hdr)),
        )

    async def recorded_at_after(self, after: int) -> datetime | None:
        """When the first event above ``after`` was recorded (None if there is none).

        Reads no event data: it works whatever types the store was opened with.
        """
        _check_version("after", after, 0)
        rows = await self._all_rows(after, 1)
        if not rows:
            return None
        at = rows[0][6]
        return at if self._load_time is None else self._load_time(at)

    async def wait_for_events(self, after: int, max_wait: float) -> None:
        """Return when events beyond ``after`` may exist, or after ``max_wait`` seconds.

        Appends through this store wake waiters at once; other writers are seen when
        ``max_wait`` runs out (PostgreSQL also listens for them: see its adapter).
        """
        await self._signal.wait(after, max_wait)

    async def _decode(self, rows: list[Row]) -> list[RecordedEvent]:
        # The hot path of every reader: events written together share their time and
        # metadata, so the last ones are reused; current-version events without personal
        # fields decode straight into their class; ids are converted in one call.
        types = self.types
        fast = types.fast_decoders
        load_time = self._load_time
        load_ids = self._load_ids
        ids = [row[3] for row in rows] if load_ids is None else load_ids([row[3] for row in rows])
        out: list[RecordedEvent] = []
        append = out.append
        slow: list[tuple[int, Row, dict[str, Any]]] = []
        last_at_raw: Any = None
        last_at: Any = None
        last_corr: Any = None
        last_caus: Any = None
        last_hdr: Any = None
        last_meta = Metadata()
        last_type: Any = None
        last_entry: tuple[int, Callable[[bytes], Any]] | None = None
        for row, event_id in zip(rows, ids, strict=True):
            position, stream_id, version, _, type_name, schema, at, data, corr, caus, hdr = row
            if type_name != last_type:
                last_type, last_entry = type_name, fast.get(type_name)
            if last_entry is not None and last_entry[0] == schema:
                try:
                    event = last_entry[1](data)
                except msgspec.DecodeError as exc:
                    raise types.undecodable(stream_id, version, type_name, exc) from None
            else:
                event = types.decode_fast(stream_id, version, type_name, schema, data)
                if event is _SLOW:
                    slow.append((len(out), row, types.parse(stream_id, version, data)))
            if load_time is not None:
                if at != last_at_raw:
                    last_at_raw, last_at = at, load_time(at)
                at = last_at
            if corr != last_corr or caus != last_caus or hdr != last_hdr:
                last_corr, last_caus, last_hdr = corr, caus, hdr
                last_meta = Metadata(corr, caus, None if hdr is None else _headers_decode(hdr))
            append(
                RecordedEvent(
                    event_id, stream_id, version, position, type_name, schema, at, event, last_meta
                )
            )
        if slow:
            await self._decode_slow(out, slow)
        return out

    async def _decode_slow(
        self, out: list[RecordedEvent], slow: list[tuple[int, Row, dict[str, Any]]]
    ) -> None:
        subjects: set[str] = set()
        for _, _, obj in slow:
            subjects |= self.types.subjects_in(obj)
        keys = await self._keys(subjects, create=False) if subjects else {}
        for index, row, obj in slow:
            _, stream_id, version, _, type_name, schema, *_ = row
            event = self.types.decode_slow(stream_id, version, type_name, schema, obj, keys)
            out[index] = msgspec.structs.replace(out[index], event=event)
