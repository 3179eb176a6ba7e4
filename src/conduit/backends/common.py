"""Pieces every engine shares, free of I/O: retried batches, times, stream ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from conduit import codec
from conduit.errors import DuplicateEvent
from conduit.events import Event, NewEvent, StreamId, StreamKey, make_event

__all__ = [
    "EPOCH",
    "StreamIds",
    "decode_tags",
    "encode_tags",
    "from_micros",
    "pushed_events",
    "resolve_retry",
    "to_micros",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """The inverse of :func:`to_micros`: an aware UTC datetime."""
    # The events of one append share their time: reuse the last one made (one
    # tuple, replaced whole, so that threads never see a half-updated pair).
    global _last
    last = _last
    if last[0] == micros:
        return last[1]
    moment = EPOCH + timedelta(microseconds=micros)
    _last = (micros, moment)
    return moment


_last: tuple[int, datetime] = (0, EPOCH)


def resolve_retry(
    stream: StreamKey, batch: Sequence[NewEvent], recorded: Iterable[Event]
) -> list[Event] | None:
    """Decide what a batch whose ids may already be recorded gets.

    ``recorded`` holds the stored events whose ids are in ``batch``. Returns
    them, in version order, when the batch is a true retry of one recorded
    batch (the caller retried after a lost reply): every id recorded, in this
    stream, at consecutive versions in the batch's order, each with the same
    name and the same data and metadata (compared as their JSON text, so
    ``1`` and ``1.0`` differ). Returns ``None`` when none of its ids is
    recorded.

    Raises:
        DuplicateEvent: some ids are recorded, elsewhere, or not as this batch;
            it names the first such id and what differs.
    """
    found = {event.id: event for event in recorded}
    if not found:
        return None
    previous: Event | None = None
    for new in batch:
        event = found.get(new.id)
        if event is None:
            culprit = next(iter(found.values()))
            raise DuplicateEvent(
                culprit.id,
                culprit.stream_id,
                reason="while other ids of the batch are new",
            )
        if str(event.stream_id) != stream.text:
            raise DuplicateEvent(event.id, event.stream_id)
        reason = _difference(new, event)
        if reason is None and previous is not None and event.version != previous.version + 1:
            reason = "in another batch or order"
        if reason is not None:
            raise DuplicateEvent(event.id, event.stream_id, reason=reason)
        previous = event
    return [found[new.id] for new in batch]


def _difference(new: NewEvent, event: Event) -> str | None:
    """What a retried event changes from the recorded one, if anything."""
    if new.name != event.name:
        return f"under the name {event.name!r}, not {new.name!r}"
    if new.data != orjson.dumps(event.data).decode():
        return "with other data"
    if new.metadata != orjson.dumps(event.metadata).decode():
        return "with other metadata"
    if new.tags != event.tags:
        return "with other tags"
    return None


class StreamIds:
    """Turns stored stream ids back into the caller's type, reusing UUID objects."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, uuid.UUID] = {}

    def __call__(self, text: str, is_uuid: bool) -> StreamId:
        if not is_uuid:
            return text
        value = self._cache.get(text)
        if value is None:
            value = self._cache[text] = uuid.UUID(text)
        return value


_NO_TAGS: frozenset[str] = frozenset()


def encode_tags(tags: frozenset[str]) -> str:
    """Tags as the JSON text of a sorted array (``[]`` when none): SQLite's column."""
    return "[]" if not tags else orjson.dumps(sorted(tags)).decode()


def decode_tags(text: str) -> frozenset[str]:
    """The inverse of :func:`encode_tags`."""
    return _NO_TAGS if text == "[]" else frozenset(orjson.loads(text))


def pushed_events(
    batch: Sequence[NewEvent],
    stream_id: StreamId,
    first_version: int,
    first_position: int,
    times: Sequence[datetime],
) -> list[Event]:
    """The events an append of ``batch`` became, without reading them back: event ``i``
    (from 0) at ``first_version + i`` and ``first_position + i``, recorded at
    ``times[i]``; its data and metadata as the push returns them
    (:attr:`~conduit.events.NewEvent.shown` when sealed)."""
    decode = codec.decode
    return [
        make_event(
            new.id,
            stream_id,
            new.name,
            decode(new.data if new.shown is None else new.shown[0]),
            {}
            if new.metadata == "{}"
            else decode(new.metadata if new.shown is None else new.shown[1]),
            first_version + i,
            first_position + i,
            times[i],
            new.tags,
        )
        for i, new in enumerate(batch)
    ]
