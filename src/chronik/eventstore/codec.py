"""Turns domain events into stored bytes and back: registry, upcasting, personal fields.

Events are stored as JSON (msgspec). The common case, an event stored at its
class's current schema version with no personal fields, decodes straight into
the class. Otherwise the stored object goes through the slow path: personal
fields are decrypted (or replaced by their placeholder once the subject is
forgotten), upcasters lift it version by version, and it is converted into the
class. Stored bytes are never rewritten.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chronik.domain.events import Personal, event_spec
from chronik.errors import ConfigurationError, CorruptEventError, UnknownEventTypeError

__all__ = ["ENCRYPTED", "EventTypes", "Upcaster", "masked", "new_subject_key"]

Upcast = Callable[[dict[str, Any]], dict[str, Any]]

_ENCRYPTED = "$enc"
_NONCE_BYTES = 12
_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


#: what tools show for a personal field they read without decrypting it
ENCRYPTED = "[encrypted]"


def masked(data: Any) -> Any:
    """Stored event data with each encrypted personal field shown as ``ENCRYPTED``.

    For tools that show events as stored: the ciphertext means nothing to a reader.
    """
    if not isinstance(data, dict):
        return data
    return {k: ENCRYPTED if type(v) is dict and _ENCRYPTED in v else v for k, v in data.items()}


def new_subject_key() -> bytes:
    """A fresh AES-256 key for one data subject."""
    return AESGCM.generate_key(bit_length=256)


@dataclass(frozen=True, slots=True)
class Upcaster:
    """Lifts a stored event of ``type`` from ``from_version`` to ``from_version + 1``.

    ``upcast`` receives the stored JSON object as a dict and returns the new one;
    it must be pure. Chain one per version step.
    """

    type: str
    from_version: int
    upcast: Upcast


class _TypeInfo:
    __slots__ = (
        "cls",
        "decoder",
        "forgets",
        "name",
        "personal",
        "subject",
        "upcasters",
        "version",
    )

    def __init__(self, cls: type, upcasters: dict[int, Upcast]) -> None:
        spec = event_spec(cls)
        self.cls = cls
        self.name = spec.name
        self.version = spec.version
        self.subject = spec.subject
        self.forgets = spec.forgets
        self.personal = _personal_fields(cls)
        if self.forgets and self.personal:
            raise ConfigurationError(
                f"{cls.__qualname__} forgets its subject, so it cannot carry personal fields "
                f"({', '.join(self.personal)}): they would be unreadable as soon as stored"
            )
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(cls)
        self.upcasters = upcasters


def _personal_fields(cls: type) -> dict[str, Personal]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot read the annotations of {cls.__qualname__}: {exc}"
        ) from exc
    found: dict[str, Personal] = {}
    for field in dataclasses.fields(cls):
        hint = hints.get(field.name)
        if hint is None or typing.get_origin(hint) is not typing.Annotated:
            continue
        marks = [m for m in hint.__metadata__ if isinstance(m, Personal)]
        if not marks:
            continue
        try:
            msgspec.convert(marks[0].placeholder, typing.get_args(hint)[0])
        except msgspec.ValidationError as exc:
            raise ConfigurationError(
                f"{cls.__qualname__}.{field.name} is personal, but its placeholder "
                f"{marks[0].placeholder!r} does not fit its type ({exc}): give "
                "Personal(placeholder=...) a value of that type"
            ) from exc
        found[field.name] = marks[0]
    return found


class EventTypes:
    """The event classes a store can write and read, by stored name, with upcasters.

    Built once in the composition root and handed to the store. Nothing is
    registered globally: two services in one process can hold different registries.
    """

    def __init__(self, classes: Iterable[type], *, upcasters: Iterable[Upcaster] = ()) -> None:
        chains: dict[str, dict[int, Upcast]] = {}
        for up in upcasters:
            steps = chains.setdefault(up.type, {})
            if up.from_version in steps:
                raise ConfigurationError(
                    f"two upcasters for {up.type!r} from version {up.from_version}"
                )
            steps[up.from_version] = up.upcast
        self._by_class: dict[type, _TypeInfo] = {}
        self._by_name: dict[str, _TypeInfo] = {}
        for cls in classes:
            if cls in self._by_class:
                continue
            try:
                spec = event_spec(cls)
            except TypeError as exc:
                raise ConfigurationError(str(exc)) from None
            info = _TypeInfo(cls, chains.pop(spec.name, {}))
            for step in info.upcasters:
                if not 1 <= step < info.version:
                    raise ConfigurationError(
                        f"upcaster for {spec.name!r} from version {step}: the class is at "
                        f"version {info.version}, so steps run from 1 to {info.version - 1}"
                    )
            self._by_class[cls] = info
            for name in (spec.name, *spec.aliases):
                other = self._by_name.get(name)
                if other is not None:
                    raise ConfigurationError(
                        f"event type name {name!r} is used by both {other.cls.__qualname__} "
                        f"and {cls.__qualname__}"
                    )
                self._by_name[name] = info
        if chains:
            raise ConfigurationError(
                f"upcasters for unregistered event types: {', '.join(sorted(chains))}"
            )
        #: name -> (current schema version, decode) for events that need neither keys nor
        #: upcasting at that version: the read hot path.
        self.fast_decoders: dict[str, tuple[int, Callable[[bytes], Any]]] = {
            name: (info.version, info.decoder.decode)
            for name, info in self._by_name.items()
            if not info.personal
        }
        #: stored names (aliases too) of the event types that forget their subject
        self.forgetting_names: set[str] = {
            name for name, info in self._by_name.items() if info.forgets
        }
        #: the event classes with personal fields (whose events have a data subject)
        self.personal_classes: set[type] = {
            cls for cls, info in self._by_class.items() if info.personal
        }

    def include(self, *classes: type) -> None:
        """Register more event classes (the framework's own, like ``ProcessStepped``)."""
        for cls in classes:
            if cls in self._by_class:
                continue
            info = _TypeInfo(cls, {})
            for name in (info.name, *event_spec(cls).aliases):
                if name in self._by_name:
                    raise ConfigurationError(f"event type name {name!r} is already registered")
            self._by_class[cls] = info
            for name in (info.name, *event_spec(cls).aliases):
                self._by_name[name] = info
                if not info.personal:
                    self.fast_decoders[name] = (info.version, info.decoder.decode)
                if info.forgets:
                    self.forgetting_names.add(name)
            if info.personal:
                self.personal_classes.add(cls)

    @property
    def classes(self) -> tuple[type, ...]:
        return tuple(self._by_class)

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_class

    def name_of(self, cls: type) -> str:
        return self._info(cls).name

    def names_of(self, cls: type) -> tuple[str, ...]:
        """Every stored name of an event class: its name and its aliases."""
        info = self._info(cls)
        return tuple(name for name, other in self._by_name.items() if other is info)

    def lookup(self, cls: type) -> _TypeInfo | None:
        """The registration of an event class, or None."""
        return self._by_class.get(cls)

    def _info(self, cls: type) -> _TypeInfo:
        info = self._by_class.get(cls)
        if info is None:
            raise ConfigurationError(
                f"{cls.__qualname__} is not in this store's EventTypes: add it where the "
                "store is opened"
            )
        return info

    # -- writing -----------------------------------------------------------------------

    def subject_of(self, event: object, stream_id: str) -> str | None:
        """The data subject whose key encrypts this event's personal fields, if it has any."""
        info = self._info(type(event))
        if not info.personal:
            return None
        return stream_id if info.subject is None else str(getattr(event, info.subject))

    def forgotten_by(self, event: object, stream_id: str) -> str | None:
        """The data subject this event forgets, if its type is declared ``forgets=True``."""
        info = self._info(type(event))
        if not info.forgets:
            return None
        return stream_id if info.subject is None else str(getattr(event, info.subject))

    def encode(
        self, event: object, stream_id: str, keys: Mapping[str, bytes]
    ) -> tuple[str, int, bytes]:
        """(type name, schema version, JSON bytes) of an event; personal fields encrypted."""
        info = self._info(type(event))
        return info.name, info.version, self.encode_data(info, event, stream_id, keys)

    @staticmethod
    def encode_data(
        info: _TypeInfo, event: object, stream_id: str, keys: Mapping[str, bytes]
    ) -> bytes:
        """The JSON bytes of an event whose registration is ``info``."""
        if not info.personal:
            return _json_encode(event)
        subject = stream_id if info.subject is None else str(getattr(event, info.subject))
        cipher = AESGCM(keys[subject])
        data = msgspec.to_builtins(event)
        for field in info.personal:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, _json_encode(data[field]), _aad(subject, field))
            data[field] = {_ENCRYPTED: [subject, base64.b64encode(nonce + sealed).decode()]}
        return _json_encode(data)

    # -- reading -----------------------------------------------------------------------

    def decode_fast(
        self, stream_id: str, version: int, type_name: str, schema: int, data: bytes
    ) -> Any:
        """The event, or ``_SLOW`` when it needs keys or upcasting (see ``decode_slow``)."""
        info = self._by_name.get(type_name)
        if info is None:
            raise UnknownEventTypeError(stream_id, version, type_name)
        if schema != info.version or info.personal:
            return _SLOW
        try:
            return info.decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise self.undecodable(stream_id, version, type_name, exc) from None

    @staticmethod
    def undecodable(
        stream_id: str, version: int, type_name: str, exc: Exception
    ) -> CorruptEventError:
        return CorruptEventError(
            stream_id, version, f"data of {type_name!r} does not decode: {exc}"
        )

    def parse(self, stream_id: str, version: int, data: bytes) -> dict[str, Any]:
        """The stored JSON object, for the slow path."""
        try:
            obj = _json_decode(data)
        except msgspec.DecodeError as exc:
            raise CorruptEventError(stream_id, version, f"data is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise CorruptEventError(stream_id, version, "data is not a JSON object")
        return obj

    @staticmethod
    def subjects_in(obj: dict[str, Any]) -> set[str]:
        """The subjects whose keys are needed to decrypt this stored object."""
        found = set()
        for value in obj.values():
            if type(value) is dict and _ENCRYPTED in value:
                sealed = value[_ENCRYPTED]
                if type(sealed) is list and sealed and type(sealed[0]) is str:
                    found.add(sealed[0])
        return found

    def decode_slow(
        self,
        stream_id: str,
        version: int,
        type_name: str,
        schema: int,
        obj: dict[str, Any],
        keys: Mapping[str, bytes],
    ) -> Any:
        """Decrypt, upcast and convert a stored object into its event class."""
        info = self._by_name[type_name]
        for field, value in obj.items():
            if type(value) is dict and _ENCRYPTED in value:
                obj[field] = _decrypt(info, stream_id, version, field, value[_ENCRYPTED], keys)
        if schema > info.version:
            raise CorruptEventError(
                stream_id,
                version,
                f"{type_name!r} is stored at schema version {schema}, but this code knows "
                f"only up to version {info.version}: run the newer code",
            )
        for step in range(schema, info.version):
            upcast = info.upcasters.get(step)
            if upcast is None:
                raise CorruptEventError(
                    stream_id,
                    version,
                    f"{type_name!r} is stored at schema version {schema} and no upcaster "
                    f"lifts it from version {step} to {step + 1}",
                )
            try:
                obj = upcast(obj)
            except Exception as exc:
                raise CorruptEventError(
                    stream_id,
                    version,
                    f"upcaster of {type_name!r} from version {step} failed: {exc!r}",
                ) from exc
        try:
            return msgspec.convert(obj, info.cls)
        except msgspec.ValidationError as exc:
            raise CorruptEventError(
                stream_id,
                version,
                f"data of {type_name!r} does not fit {info.cls.__qualname__}: {exc}",
            ) from None


class _Slow:
    """Marker: the event needs the slow path."""


_SLOW = _Slow()


def _aad(subject: str, field: str) -> bytes:
    return f"{subject}\x00{field}".encode()


def _decrypt(
    info: _TypeInfo,
    stream_id: str,
    version: int,
    field: str,
    sealed: list[str],
    keys: Mapping[str, bytes],
) -> Any:
    try:
        subject, blob = sealed
        key = keys.get(subject)
    except (TypeError, ValueError):
        raise CorruptEventError(
            stream_id, version, f"personal field {field!r} is not a sealed value"
        ) from None
    if key is None:
        mark = info.personal.get(field)
        return mark.placeholder if mark is not None else Personal().placeholder
    try:
        raw = base64.b64decode(blob, validate=True)
        if len(raw) <= _NONCE_BYTES:
            raise ValueError("shorter than a nonce")
        plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(subject, field))
        return _json_decode(plain)
    except (InvalidTag, ValueError, TypeError, msgspec.DecodeError):
        raise CorruptEventError(
            stream_id, version, f"personal field {field!r} does not decrypt with its subject's key"
        ) from None
