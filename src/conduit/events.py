"""The values that cross module lines: recorded events, events to record, streams.

Everything here is free of I/O so that every engine (and a future asyncio
engine) shares the same validation.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeAlias, TypeVar

from conduit.errors import InvalidEvent

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_STREAM_ID_LENGTH",
    "NO_TAGS",
    "WORKING_STATES",
    "Event",
    "GCPaused",
    "NewEvent",
    "ParkedEvent",
    "Snapshot",
    "StreamId",
    "StreamInfo",
    "StreamKey",
    "SubscriptionState",
    "TypedEvent",
    "event_name",
    "event_uuid",
    "make_event",
    "make_new_event",
    "new_id",
    "stream_key",
    "uuid_from_int",
    "uuid_from_text",
]

StreamId: TypeAlias = str | uuid.UUID
"""A stream's id as users give it: a non-empty string or a UUID."""

MAX_NAME_LENGTH = 200
MAX_STREAM_ID_LENGTH = 1000

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True, slots=True)
class Event:
    """A recorded event: immutable, as every engine returns it.

    ``version`` is its place in its stream (1, 2, 3…), ``position`` its place
    in the global log (an integer that grows in log order), ``recorded_at`` the
    UTC time the store recorded it. ``tags`` are the strings it was pushed
    with (``"course:c1"``), empty when none: queries and append conditions
    select events by them (docs/dcb.md).
    """

    id: uuid.UUID
    stream_id: StreamId
    name: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    position: int
    recorded_at: datetime
    tags: frozenset[str] = field(default=frozenset(), kw_only=True)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TypedEvent(Event, Generic[T]):
    """A recorded event whose name is registered with a class: an :class:`Event`
    that also carries ``payload``, the typed object its data decodes to.

    It is an ``Event`` in every way (``data`` is still the stored JSON object,
    after upcasting), so code written for plain events keeps working.
    """

    payload: T


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of an entity at one version of its stream, as engines store it.

    Engines keep the latest snapshot per stream and entity class (``class_name``).
    ``snapshot_version`` is the entity class's declared snapshot version when it
    was taken: a snapshot taken under another version is ignored.
    """

    class_name: str
    version: int
    snapshot_version: int
    data: str
    """The entity's state as JSON text (an object)."""
    taken_at: datetime | None = None


def _slot_setters() -> tuple[Any, ...]:
    return tuple(Event.__dict__[field].__set__ for field in Event.__slots__)


(
    _set_id,
    _set_stream_id,
    _set_name,
    _set_data,
    _set_metadata,
    _set_version,
    _set_position,
    _set_recorded_at,
    _set_tags,
) = _slot_setters()

NO_TAGS: frozenset[str] = frozenset()


def make_event(
    event_id: uuid.UUID,
    stream_id: StreamId,
    name: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    version: int,
    position: int,
    recorded_at: datetime,
    tags: frozenset[str] = NO_TAGS,
) -> Event:
    """``Event(...)`` for engines reading rows: the same frozen value, built faster.

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``; on the read path that is a fifth of the cost of an
    event, so engines set the slots directly.
    """
    event = _new_event_object(Event)
    _set_id(event, event_id)
    _set_stream_id(event, stream_id)
    _set_name(event, name)
    _set_data(event, data)
    _set_metadata(event, metadata)
    _set_version(event, version)
    _set_position(event, position)
    _set_recorded_at(event, recorded_at)
    _set_tags(event, tags)
    return event


_new_event_object = object.__new__


class GCPaused:
    """``with GCPaused():`` the cyclic garbage collector does not run meanwhile.

    Decoding a page of rows makes thousands of objects (an event, its data and
    metadata dicts) that live on: each 700 of them starts a collection that
    walks every young object, about a sixth of a read's time, and finds no
    cycle to free (decoded JSON has none). Engines decode a page inside this;
    the collector runs again right after, when the page is handed out; the
    sync store's ``get`` and ``read_query`` keep it paused until their whole
    list is made. A collector the application turned off stays off.
    """

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        if self._was_enabled:
            gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()


_set_payload = TypedEvent.__dict__["payload"].__set__


def make_typed_event(event: Event, payload: object) -> TypedEvent[Any]:
    """``TypedEvent(...)`` of an event and its payload, built as :func:`make_event` builds.

    Typed reads build one per event; the dataclass ``__init__`` (nine
    ``object.__setattr__`` calls) cost about a fifth of decoding one.
    """
    typed: TypedEvent[Any] = _new_event_object(TypedEvent)
    _set_id(typed, event.id)
    _set_stream_id(typed, event.stream_id)
    _set_name(typed, event.name)
    _set_data(typed, event.data)
    _set_metadata(typed, event.metadata)
    _set_version(typed, event.version)
    _set_position(typed, event.position)
    _set_recorded_at(typed, event.recorded_at)
    _set_tags(typed, event.tags)
    _set_payload(typed, payload)
    return typed


@dataclass(frozen=True, slots=True)
class StreamKey:
    """A stream id as engines store it: its text, and whether it was a UUID."""

    text: str
    is_uuid: bool

    def stream_id(self) -> StreamId:
        """The stream id in the type the caller used."""
        return uuid_from_text(self.text) if self.is_uuid else self.text


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event validated and encoded, ready for an engine to append."""

    id: uuid.UUID
    name: str
    data: str
    metadata: str
    recorded_at: datetime | None = None
    """Set only when importing or copying events: the time the source recorded them."""
    tags: frozenset[str] = frozenset()
    """Checked tags (:func:`conduit.core.writes.check_tags`), empty when none."""
    personal: tuple[Any, ...] = ()
    """The values marked personal (:class:`conduit.personal.Personal`) that
    :data:`conduit.codec.PENDING_VALUE` stands for in ``data``, in its order; empty
    once the store sealed them, and in every event an engine is given."""
    shown: tuple[str, str] | None = field(default=None, repr=False)
    """Of a sealed event: its data and metadata texts as the push returns them (the
    personal values in the clear, ``"conduit.subjects"`` in the metadata; left out of
    the ``repr``). An engine may build the :class:`Event` an append returns from these
    instead of ``data`` and ``metadata`` (saving the store a pass over the sealed
    form); it never stores them."""


def _new_event_setters() -> tuple[Any, ...]:
    return tuple(NewEvent.__dict__[field].__set__ for field in NewEvent.__slots__)


(
    _set_new_id,
    _set_new_name,
    _set_new_data,
    _set_new_metadata,
    _set_new_recorded_at,
    _set_new_tags,
    _set_new_personal,
    _set_new_shown,
) = _new_event_setters()


def make_new_event(
    event_id: uuid.UUID,
    name: str,
    data: str,
    metadata: str,
    personal: tuple[Any, ...] = (),
    tags: frozenset[str] = NO_TAGS,
    recorded_at: datetime | None = None,
    shown: tuple[str, str] | None = None,
) -> NewEvent:
    """``NewEvent(...)``, built as :func:`make_event` builds events."""
    new = _new_event_object(NewEvent)
    _set_new_id(new, event_id)
    _set_new_name(new, name)
    _set_new_data(new, data)
    _set_new_metadata(new, metadata)
    _set_new_recorded_at(new, recorded_at)
    _set_new_tags(new, tags)
    _set_new_personal(new, personal)
    _set_new_shown(new, shown)
    return new


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream and its current version (the version of its last event)."""

    stream_id: StreamId
    version: int


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """An event a subscription gave up on after its retries, kept with the error."""

    id: int
    subscription: str
    event_id: uuid.UUID
    position: int
    error: str
    traceback: str
    attempts: int
    parked_at: datetime
    retry_requested: bool


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """What a subscription's driver last said it was doing, kept beside its checkpoint.

    Relays write it (``relaying``, ``idle``, ``retrying``, ``stopped``) so that
    ``conduit projections``, ``conduit stats`` and the browser can show a broker
    that is down; ``detail`` is the error while retrying. It is what the driver
    *last* wrote: a driver that died says nothing more, so read it with its time
    (subscription status shows a working state of a driver that holds no lease,
    :data:`WORKING_STATES`, as ``stopped``).
    """

    name: str
    state: str
    detail: str | None
    updated_at: datetime

    def record(self) -> dict[str, str | None]:
        """As JSON: ``state``, ``detail`` and ``since`` (ISO 8601 in UTC)."""
        since = self.updated_at.astimezone(UTC).isoformat(timespec="microseconds")
        return {"state": self.state, "detail": self.detail, "since": since.replace("+00:00", "Z")}


WORKING_STATES = frozenset({"relaying", "idle"})
"""The states a driver keeps only while it holds its subscription's lease (renewing
it every third of its ttl): status shows such a state without a lease held as
``stopped``, for the driver ended without saying so."""


_KNOWN_NAMES: dict[str, str] = {}
"""Names already checked, and their stored form: a store sees the same few names."""
_KNOWN_NAMES_MAX = 10_000


def event_name(name: object) -> str:
    """Check an event name and return its stored, snake_case form.

    ``PersonRegistered`` becomes ``person_registered``; names must be
    identifiers of letters, digits and underscores that start with a letter.
    """
    if type(name) is str:
        known = _KNOWN_NAMES.get(name)
        if known is not None:
            return known
    stored = _check_event_name(name)
    if type(name) is str and len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
        _KNOWN_NAMES[name] = stored
    return stored


def _check_event_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidEvent(
            f"name: event names are strings, not {type(name).__name__}", field="name"
        )
    if not _NAME.match(name):
        raise InvalidEvent(
            f"name: {name!r} is not an event name (letters, digits and underscores, "
            "starting with a letter, such as 'person_registered')",
            field="name",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidEvent(
            f"name: event names are at most {MAX_NAME_LENGTH} characters", field="name"
        )
    if name.islower() or not any(c.isupper() for c in name):
        return name
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def stream_key(stream_id: object) -> StreamKey:
    """Check a stream id and return the form engines store."""
    if isinstance(stream_id, uuid.UUID):
        return StreamKey(str(stream_id), True)
    if not isinstance(stream_id, str):
        raise InvalidEvent(
            f"stream_id: stream ids are non-empty strings or UUIDs, not {type(stream_id).__name__}",
            field="stream_id",
        )
    if not stream_id:
        raise InvalidEvent("stream_id: a stream id cannot be empty", field="stream_id")
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise InvalidEvent(
            f"stream_id: stream ids are at most {MAX_STREAM_ID_LENGTH} characters",
            field="stream_id",
        )
    if "\x00" in stream_id:
        raise InvalidEvent("stream_id: NUL characters are not allowed", field="stream_id")
    if not stream_id.isascii():
        try:
            stream_id.encode()
        except UnicodeEncodeError:
            raise InvalidEvent(
                "stream_id: holds a lone surrogate, not valid UTF-8", field="stream_id"
            ) from None
    return StreamKey(stream_id, False)


def event_uuid(event_id: object) -> uuid.UUID:
    """Check an event id (a UUID, or its text) or make a new one for ``None``."""
    if event_id is None:
        return new_id()
    if isinstance(event_id, uuid.UUID):
        return event_id
    if isinstance(event_id, str):
        try:
            return uuid.UUID(event_id)
        except ValueError:
            pass
    raise InvalidEvent(f"event_id: {event_id!r} is not a UUID", field="event_id")


_id_lock = threading.Lock()
_last_ms = 0
_last_seq = 0
_RAND_B = (1 << 62) - 1
_POOL_BYTES = 4096
"""Random bytes drawn from the OS at a time: 512 ids' worth, one system call."""
_pool: list[int] = []


def new_id() -> uuid.UUID:
    """A new time-ordered UUID (version 7): ids made later sort after earlier ones.

    Within one process the order is strict, even for ids made in the same
    millisecond or while the clock steps back: the 12 bits after the
    timestamp count up (RFC 9562, method 1). The other 62 bits come from the
    operating system's CSPRNG (``os.urandom``), so an id cannot be guessed
    from earlier ones; they are drawn 512 ids at a time, and a forked child
    draws its own.
    """
    global _last_ms, _last_seq, _pool
    ns = time.time_ns()
    with _id_lock:
        ms = ns // 1_000_000
        if ms > _last_ms:
            seq = (ns % 1_000_000) * 2048 // 1_000_000  # room to count up in this ms
        else:
            ms, seq = _last_ms, _last_seq + 1
            if seq > 0xFFF:
                ms, seq = ms + 1, 0
        _last_ms, _last_seq = ms, seq
        pool = _pool
        if not pool:
            pool = _pool = list(memoryview(os.urandom(_POOL_BYTES)).cast("Q"))
        rand_b = pool.pop() & _RAND_B
    return uuid_from_int(
        (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    )


def _forget_random_bits_in_child() -> None:
    """A forked child must not hand out its parent's unused random bits (nor wait for
    a lock another thread of the parent held when it forked)."""
    global _pool, _id_lock
    _pool = []
    _id_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_random_bits_in_child)
_new_object = object.__new__
_set_field = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to fit 128 bits, without its checks.

    ``UUID.__init__`` parses and range-checks its arguments; on the read and
    append paths that costs more than the rest of building an event.
    """
    made = _new_object(uuid.UUID)
    _set_field(made, "int", value)
    _set_field(made, "is_safe", _SAFE_UNKNOWN)
    return made


def uuid_from_text(text: str) -> uuid.UUID:
    """A UUID from its canonical text as engines store it (36 characters, hyphens)."""
    return uuid_from_int(int(text.replace("-", ""), 16))
