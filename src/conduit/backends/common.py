"""Pieces every engine shares, free of I/O: retried batches, times, stream ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from conduit.errors import DuplicateEvent
from conduit.events import Event, NewEvent, StreamId, StreamKey

__all__ = ["EPOCH", "StreamIds", "from_micros", "resolve_retry", "to_micros"]

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
    them, in version order, when the whole batch is already recorded in this
    stream (the caller retried after a lost reply); ``None`` when none of its
    ids is recorded.

    Raises:
        DuplicateEvent: some ids are recorded, elsewhere or not as this batch.
    """
    found = {event.id: event for event in recorded}
    if not found:
        return None
    for new in batch:
        event = found.get(new.id)
        if event is None or str(event.stream_id) != stream.text:
            culprit = event if event is not None else next(iter(found.values()))
            raise DuplicateEvent(culprit.id, culprit.stream_id)
    return sorted(found.values(), key=lambda event: event.version)


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
