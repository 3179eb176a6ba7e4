"""The SQLite engine's rows: events to the parameters of its statements, and rows
of :data:`~conduit.backends.sqlite_sql.COLUMNS` back to events. Free of I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conduit import codec
from conduit.backends.common import StreamIds, decode_tags, encode_tags, from_micros, pushed_events
from conduit.events import Event, GCPaused, NewEvent, StreamKey, make_event, uuid_from_text

__all__ = ["event_rows", "events", "recorded", "tag_rows"]


def event_rows(
    stream: StreamKey, is_uuid: bool, version: int, events: Sequence[NewEvent], times: list[int]
) -> list[tuple[Any, ...]]:
    """The parameters of :data:`~conduit.backends.sqlite_sql.INSERT` for a batch that
    follows ``version``."""
    return [
        (
            str(new.id),
            stream.text,
            is_uuid,
            version + i,
            new.name,
            new.data,
            new.metadata,
            times[i - 1],
            encode_tags(new.tags),
        )
        for i, new in enumerate(events, 1)
    ]


def tag_rows(first_position: int, events: Sequence[NewEvent]) -> list[tuple[str, int, str]]:
    """The parameters of :data:`~conduit.backends.sqlite_sql.INSERT_TAG` for a batch
    whose first event is after ``first_position``."""
    return [
        (tag, first_position + i, new.name) for i, new in enumerate(events, 1) for tag in new.tags
    ]


def recorded(
    stream: StreamKey,
    is_uuid: bool,
    version: int,
    first_position: int,
    events: Sequence[NewEvent],
    times: list[int],
) -> list[Event]:
    """The events a batch became, without reading them back."""
    stream_id = uuid_from_text(stream.text) if is_uuid else stream.text
    with GCPaused():
        moments = [from_micros(micros) for micros in times]
        return pushed_events(events, stream_id, version + 1, first_position + 1, moments)


def events(rows: list[Any]) -> list[Event]:
    """Rows of :data:`~conduit.backends.sqlite_sql.COLUMNS` as events."""
    ids = StreamIds()
    decode = codec.decode
    with GCPaused():
        return _events(rows, ids, decode)


def _events(rows: list[Any], ids: StreamIds, decode: Any) -> list[Event]:
    return [
        make_event(
            uuid_from_text(event_id),
            ids(stream_text, is_uuid),
            name,
            decode(data),
            {} if metadata == "{}" else decode(metadata),
            version,
            position,
            from_micros(recorded_at),
            decode_tags(tags),
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
