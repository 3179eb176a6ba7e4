"""Rows of the PostgreSQL engine's statements turned into Conduit's values. Free of I/O."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from conduit import codec
from conduit.backends.base import AppendRequest
from conduit.backends.common import StreamIds, pushed_events
from conduit.backends.postgres.keys import event_keys
from conduit.backends.postgres.sql import MAX_KEYS
from conduit.events import (
    NO_TAGS,
    Event,
    GCPaused,
    NewEvent,
    ParkedEvent,
    StreamInfo,
    StreamKey,
    make_event,
    uuid_from_text,
)

__all__ = [
    "conflicts",
    "events",
    "group_outcomes",
    "group_params",
    "parked",
    "recorded",
    "stream_infos",
]


def events(rows: Iterable[Sequence[Any]]) -> list[Event]:
    """Events from rows of the engine's event columns (see ``sql._COLUMNS``)."""
    ids = StreamIds()
    decode = codec.decode
    with GCPaused():
        return _events(rows, ids, decode)


def _events(rows: Iterable[Sequence[Any]], ids: StreamIds, decode: Any) -> list[Event]:
    return [
        make_event(
            event_id,
            ids(stream_text, is_uuid),
            name,
            decode(data),
            {} if metadata == "{}" else decode(metadata),
            version,
            position,
            recorded_at,
            frozenset(tags) if tags else NO_TAGS,
        )
        for (
            event_id,
            stream_text,
            is_uuid,
            name,
            data,
            metadata,
            version,
            position,
            recorded_at,
            tags,
        ) in rows
    ]


def recorded(stream: StreamKey, batch: Sequence[NewEvent], row: Sequence[Any]) -> list[Event]:
    """The events of an append as recorded, from the append function's one row:
    the first position and version, the time, and the stream's id type."""
    first_position, first_version, now, is_uuid = row
    # The stream's id keeps the type it was created with.
    stream_id = uuid_from_text(stream.text) if is_uuid else stream.text
    return _built(batch, stream_id, first_version, first_position, now)


def group_params(requests: Sequence[AppendRequest], notify: bool) -> tuple[Any, ...]:
    """The parameters of ``append_groups`` for these requests (see its migrations): the
    events, their tags, and the lock keys of those tags (or the bulk lock)."""
    streams: list[str] = []
    is_uuid: list[bool] = []
    expected: list[int | None] = []
    groups: list[int] = []
    counts: list[int] = []
    ids: list[Any] = []
    names: list[str] = []
    data: list[str] = []
    metadata: list[str] = []
    times: list[Any] = []
    event_part: list[int] = []
    event_ord: list[int] = []
    tags: list[str] = []
    tag_event: list[int] = []
    keys: set[str] = set()
    for group, request in enumerate(requests, 1):
        for part in request:
            streams.append(part.stream.text)
            is_uuid.append(part.stream.is_uuid)
            expected.append(part.expected)
            groups.append(group)
            counts.append(len(part.events))
            number = len(streams)
            for ordinal, new in enumerate(part.events, 1):
                ids.append(new.id)
                names.append(new.name)
                data.append(new.data)
                metadata.append(new.metadata)
                times.append(new.recorded_at)
                event_part.append(number)
                event_ord.append(ordinal)
                if new.tags:
                    tags.extend(new.tags)
                    tag_event.extend([len(ids)] * len(new.tags))
            keys |= event_keys(part.events)
    bulk = len(keys) > MAX_KEYS
    given_times = times if any(moment is not None for moment in times) else None
    # Arrays of numbers and booleans go as array literals in text: psycopg dumps a
    # list element by element in Python, the join costs a fraction of it.
    return (
        streams,
        "{" + ",".join(["t" if flag else "f" for flag in is_uuid]) + "}",
        "{" + ",".join(["NULL" if v is None else str(v) for v in expected]) + "}",
        _int_array(groups),
        _int_array(counts),
        ids,
        names,
        data,
        metadata,
        given_times,
        _int_array(event_part),
        _int_array(event_ord),
        notify,
        tags if tags else None,
        _int_array(tag_event) if tags else None,
        None if bulk or not keys else sorted(keys),
        bulk,
    )


def _int_array(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def group_outcomes(
    requests: Sequence[AppendRequest], found: Sequence[Sequence[Any]]
) -> Iterator[tuple[AppendRequest, Sequence[Sequence[Any]], list[list[Event]] | None]]:
    """Each request, its rows of ``append_groups``, and its recorded events when it was
    accepted (``None`` when it was left out: a retry or a conflict)."""
    position = found[0][5] if found else 0  # the first position of the call
    at = 0
    for request in requests:
        own = found[at : at + len(request)]
        at += len(request)
        if any(row[0] != "ok" for row in own):
            yield request, own, None
            continue
        recorded = []
        for part, (_, first_version, moment, is_uuid, _, _) in zip(request, own, strict=True):
            stream_id = uuid_from_text(part.stream.text) if is_uuid else part.stream.text
            recorded.append(_built(part.events, stream_id, first_version, position, moment))
            position += len(part.events)
        yield request, own, recorded


def conflicts(
    request: AppendRequest, own: Sequence[Sequence[Any]]
) -> list[tuple[object, int, int]]:
    """Every part of a request refused for its expected version: (stream id, expected,
    actual)."""
    found: list[tuple[object, int, int]] = []
    for part, row in zip(request, own, strict=True):
        if row[0] == "conflict":
            assert part.expected is not None
            found.append((part.stream.stream_id(), part.expected, int(row[4])))
    return found


def _built(
    batch: Sequence[NewEvent], stream_id: Any, first_version: int, first_position: int, now: Any
) -> list[Event]:
    times = [now if new.recorded_at is None else new.recorded_at for new in batch]
    return pushed_events(batch, stream_id, first_version, first_position, times)


def stream_infos(rows: Iterable[Sequence[Any]]) -> list[StreamInfo]:
    """Streams and their versions, from ``(stream_id, is_uuid, version)`` rows."""
    ids = StreamIds()
    return [StreamInfo(ids(text, is_uuid), version) for text, is_uuid, version in rows]


def parked(rows: Iterable[Sequence[Any]]) -> list[ParkedEvent]:
    """Parked events from rows of ``PARKED_COLUMNS``."""
    return [ParkedEvent(*row) for row in rows]
