"""What a push or a batch becomes before any engine sees it: validated, encoded
:class:`~conduit.events.NewEvent` values, and the recorded events a caller gets back.

Free of I/O: both faces (``EventStore``, ``AsyncEventStore``) run exactly these
checks, which raise before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from conduit import codec
from conduit.core.sealing import plain_text
from conduit.errors import DuplicateEvent, InvalidArgument, InvalidEvent
from conduit.events import (
    Event,
    GCPaused,
    NewEvent,
    StreamId,
    event_name,
    event_uuid,
    make_new_event,
    make_typed_event,
)
from conduit.typed import TypeRegistry, encode_typed, is_typed
from conduit.upcasting import SCHEMA_VERSION_KEY

__all__ = [
    "MAX_BATCH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "PendingEvent",
    "check_expected_version",
    "check_tags",
    "new_batch",
    "new_event",
    "pending_event",
    "typed_results",
    "with_tags",
]

MAX_BATCH = 100_000
"""The most events one ``push_many`` may append."""

MAX_TAGS = 64
"""The most tags one event may carry."""

MAX_TAG_LENGTH = 256
"""The longest a tag may be, in characters."""

_KEYS = frozenset({"name", "data", "metadata", "id", "recorded_at", "tags"})


def check_tags(tags: object, field: str = "tags") -> frozenset[str]:
    """Tags as given (an iterable of strings, or one string), checked: each non-empty,
    at most :data:`MAX_TAG_LENGTH` characters, no NUL; at most :data:`MAX_TAGS`.

    Raises:
        InvalidEvent: naming ``field`` (``events[3].tags``).
    """
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        tags = (tags,)
    if isinstance(tags, Mapping) or not isinstance(tags, Iterable):
        raise InvalidEvent(
            f"{field}: tags are an iterable of strings, not {type(tags).__name__}", field=field
        )
    found = frozenset(tags)
    for tag in found:
        if not isinstance(tag, str):
            raise InvalidEvent(f"{field}: tags are strings, not {type(tag).__name__}", field=field)
        if not tag:
            raise InvalidEvent(f"{field}: a tag cannot be empty", field=field)
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidEvent(
                f"{field}: tags are at most {MAX_TAG_LENGTH} characters", field=field
            )
        if "\x00" in tag:
            raise InvalidEvent(f"{field}: NUL characters are not allowed in tags", field=field)
        if not tag.isascii():
            try:
                tag.encode()
            except UnicodeEncodeError:
                raise InvalidEvent(
                    f"{field}: a tag holds a lone surrogate, not valid UTF-8", field=field
                ) from None
    if len(found) > MAX_TAGS:
        raise InvalidEvent(f"{field}: at most {MAX_TAGS} tags on one event", field=field)
    return found


def with_tags(new: NewEvent, tags: frozenset[str], field: str) -> NewEvent:
    """The event with ``tags`` added to its own (the call's ``tags=``), checked again
    for their number."""
    if not tags:
        return new
    merged = new.tags | tags
    if len(merged) > MAX_TAGS:
        raise InvalidEvent(f"{field}: at most {MAX_TAGS} tags on one event", field=field)
    return replace(new, tags=merged)


PendingEvent = (
    Mapping[str, Any]
    | tuple[str, dict[str, Any]]
    | tuple[str, dict[str, Any], dict[str, Any]]
    | object
)
"""An event for :meth:`EventStore.push_many`: ``{"name", "data", "metadata", "id",
"recorded_at"}`` or ``(name, data)`` or ``(name, data, metadata)``, or a typed
event (a dataclass or pydantic model instance)."""


def new_event(
    name: object,
    data: object,
    metadata: object,
    event_id: object,
    where: str = "",
    types: TypeRegistry | None = None,
) -> NewEvent:
    """One event, checked and encoded: a name with its data, or a typed event.

    ``where`` prefixes the field names of errors (``events[3].data``); ``types``
    checks data pushed under a registered name, and adds schema versions.

    Raises:
        InvalidEvent: a bad name, event id, data or metadata, naming the field.
    """
    if type(name) is not str and is_typed(name):
        return _new_typed_event(name, data, metadata, event_id, where, types)
    new_id = event_uuid(event_id)
    stored_name = event_name(name)
    text, personal = codec.encode_data(data, field=f"{where}data")
    if types is not None and (metadata is None or type(metadata) is dict):
        meta = types.check(stored_name, plain_text(text, personal), metadata, where)
    else:
        meta = "{}" if metadata is None else codec.encode(metadata, field=f"{where}metadata")
    return make_new_event(new_id, stored_name, text, meta, personal)


def _new_typed_event(
    event: object,
    data: object,
    metadata: object,
    event_id: object,
    where: str,
    types: TypeRegistry | None = None,
) -> NewEvent:
    if data is not None:
        raise InvalidEvent(
            f"{where}data: a typed event carries its own data; give no data", field=f"{where}data"
        )
    new_id = event_uuid(event_id)
    name, text, version, personal = encode_typed(event, where)
    if version is not None:
        if metadata is not None and not isinstance(metadata, dict):
            codec.encode(metadata, field=f"{where}metadata")  # raises, naming the field
        metadata = {**(metadata or {}), SCHEMA_VERSION_KEY: version}  # type: ignore[dict-item]
    meta = "{}" if metadata is None else codec.encode(metadata, field=f"{where}metadata")
    if types is not None:
        # Reads will decode it: refuse now what they could not give back, equal.
        types.refuse_unreadable(name, plain_text(text, personal), metadata, where, event)  # type: ignore[arg-type]
    return make_new_event(new_id, name, text, meta, personal)


def pending_event(item: object, index: int, types: TypeRegistry | None = None) -> NewEvent:
    """The ``index``-th event of a batch (see :data:`PendingEvent`), checked and encoded.

    Raises:
        InvalidEvent: naming the event and the field (``events[3].data``).
    """
    where = f"events[{index}]."
    if type(item) is tuple and len(item) == 2:  # the common case first
        return new_event(item[0], item[1], None, None, where, types)
    if isinstance(item, Mapping):
        unknown = set(item) - _KEYS
        if unknown or "name" not in item or "data" not in item:
            raise InvalidEvent(
                f"events[{index}]: a mapping with 'name', 'data' and optionally 'metadata', "
                "'id', 'tags' and 'recorded_at'",
                field=f"events[{index}]",
            )
        new = new_event(
            item["name"], item["data"], item.get("metadata"), item.get("id"), where, types
        )
        tags = item.get("tags")
        if tags is not None:
            new = replace(new, tags=check_tags(tags, f"{where}tags"))
        recorded_at = item.get("recorded_at")
        if recorded_at is None:
            return new
        if not isinstance(recorded_at, datetime) or recorded_at.utcoffset() is None:
            raise InvalidEvent(
                f"events[{index}].recorded_at: a timezone-aware datetime",
                field=f"events[{index}].recorded_at",
            )
        return replace(new, recorded_at=recorded_at.astimezone(UTC))
    if isinstance(item, tuple) and len(item) in (2, 3):
        metadata = item[2] if len(item) == 3 else None
        return new_event(item[0], item[1], metadata, None, where, types)
    if is_typed(item):
        return _new_typed_event(item, None, None, None, where, types)
    raise InvalidEvent(
        f"events[{index}]: {type(item).__name__} is not an event; use a mapping "
        "{'name', 'data'} or a tuple (name, data)",
        field=f"events[{index}]",
    )


def check_expected_version(expected_version: object) -> None:
    """Refuse an ``expected_version`` that is not ``None`` or a version (0 or more).

    Raises:
        InvalidArgument: naming ``expected_version``.
    """
    if expected_version is None:
        return
    if type(expected_version) is not int or expected_version < 0:
        # An argument of the call, not a part of an event: not an InvalidEvent.
        raise InvalidArgument(
            f"expected_version: {expected_version!r} is not a version (None, 0 or more)",
            field="expected_version",
        )


def new_batch(
    stream_id: StreamId,
    events: Iterable[PendingEvent],
    types: TypeRegistry | None,
    tags: frozenset[str] = frozenset(),
    first: int = 0,
) -> tuple[list[NewEvent], Sequence[object]]:
    """A batch of one stream, checked and encoded; and the items as given.

    ``tags`` are added to every event's own; ``first`` numbers the events in
    errors (a multi-stream call numbers them across its streams).

    Raises:
        InvalidEvent: a bad event (named), too many events, or an event id twice.
        DuplicateEvent: the same event id twice in the batch.
    """
    items = events if isinstance(events, list | tuple) else list(events)
    with GCPaused():  # the new events all live on: no cycle to find (see GCPaused)
        batch = [pending_event(item, first + index, types) for index, item in enumerate(items)]
    if tags:
        batch = [
            with_tags(new, tags, f"events[{first + index}].tags") for index, new in enumerate(batch)
        ]
    if len(batch) > MAX_BATCH:
        raise InvalidEvent(f"events: at most {MAX_BATCH} events in one batch", field="events")
    if len({new.id for new in batch}) != len(batch):
        seen: set[object] = set()
        for new in batch:
            if new.id in seen:
                raise DuplicateEvent(new.id, stream_id)
            seen.add(new.id)
    return batch, items


def typed_results(
    recorded: list[Event], pushed: Sequence[object], types: TypeRegistry | None
) -> list[Event]:
    """The recorded events as reads will give them: typed objects attached.

    Cannot fail: with types, every pushed event was checked to read back
    before it was written (``TypeRegistry.refuse_unreadable``), so decoding
    the committed events again gives what that check saw.
    """
    result: list[Event] = []
    for event, item in zip(recorded, pushed, strict=True):
        if is_typed(item) and (types is None or types.class_for(event.name) in (None, type(item))):
            result.append(make_typed_event(event, item))
        elif types is None:
            result.append(event)
        else:
            result.append(types.decode(event))
    return result
