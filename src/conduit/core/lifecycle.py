"""Deleting, truncating, limiting and scavenging streams: the operations both faces run.

Validation, the audit events (one per change, in the reserved stream
:data:`~conduit.lifecycle.AUDIT_STREAM`, written by the engine in the same
transaction as the change) and the scavenger's batching, resuming and
progress are here, once; the engines only store (see docs/lifecycle.md).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conduit.core.effects import Call, Op, Sleep
from conduit.core.writes import check_expected_version, new_event
from conduit.errors import InvalidArgument, StreamDeleted
from conduit.events import Event, NewEvent, StreamId, StreamKey, stream_key
from conduit.lifecycle import (
    AUDIT_STREAM,
    RESERVED_STREAM_PREFIX,
    SCAVENGE_CHECKPOINT,
    ScavengeBatch,
    ScavengeReport,
    StreamMetadata,
)

if TYPE_CHECKING:
    from conduit.core.store_ops import StoreCore

__all__ = [
    "DEFAULT_SCAVENGE_BATCH",
    "Progress",
    "check_retention",
    "delete_stream",
    "scavenge",
    "set_stream_metadata",
    "stream_metadata",
    "truncate_stream",
]

DEFAULT_SCAVENGE_BATCH = 2000
"""How many events of the log one scavenging transaction examines: small enough
that writers never wait long for it (SQLite has one writer at a time)."""

Progress = Callable[[ScavengeBatch, int], Any]
"""Called after each batch of a scavenge with the batch and the log's head position."""


def check_retention(retention: object) -> timedelta | None:
    """The store-wide maximum age of events, checked.

    Raises:
        InvalidArgument: not ``None`` nor a positive ``timedelta``.
    """
    if retention is None:
        return None
    if not isinstance(retention, timedelta) or retention <= timedelta(0):
        raise InvalidArgument("retention must be None or a positive timedelta", field="retention")
    return retention


def _key(stream_id: StreamId) -> StreamKey:
    key = stream_key(stream_id)
    if key.text.startswith(RESERVED_STREAM_PREFIX):
        raise InvalidArgument(
            f"stream {key.text!r} is reserved by Conduit (its id starts with "
            f"{RESERVED_STREAM_PREFIX!r}): it cannot be deleted, truncated or limited",
            field="stream_id",
        )
    return key


def _by(by: str | None) -> str:
    if by is not None:
        if type(by) is not str or not by:
            raise InvalidArgument("by must be a non-empty string (who asks)", field="by")
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return "unknown"


def _audit(name: str, data: dict[str, Any], by: str) -> Callable[[int], NewEvent]:
    """The audit event of a change, once the engine knows the stream's version."""

    def made(version: int) -> NewEvent:
        return new_event(name, {**data, "version": version}, {"user": by}, None)

    made(0)  # refuse bad data before anything is written
    return made


def _check_stream(key: StreamKey, _exc: StreamDeleted) -> StreamDeleted:
    """The engine's error with the stream id in the type the caller used."""
    return StreamDeleted(key.stream_id())


def delete_stream(
    core: StoreCore, stream_id: StreamId, expected_version: int | None, hard: bool, by: str | None
) -> Op[Event]:
    """``EventStore.delete_stream``: returns the ``stream_deleted`` audit event."""
    key = _key(stream_id)
    check_expected_version(expected_version)
    if type(hard) is not bool:
        raise InvalidArgument("hard must be True or False", field="hard")
    audit = _audit("stream_deleted", {"stream_id": key.text, "hard": hard}, _by(by))
    try:
        event: Event = yield from core.engine.delete_stream(key, expected_version, hard, audit)
    except StreamDeleted as exc:
        raise _check_stream(key, exc) from exc
    yield from core._after_push([event])
    return event


def truncate_stream(
    core: StoreCore, stream_id: StreamId, before_version: int, by: str | None
) -> Op[Event]:
    """``EventStore.truncate_stream``: returns the ``stream_truncated`` audit event."""
    key = _key(stream_id)
    if type(before_version) is not int or before_version < 1:
        raise InvalidArgument(
            "before_version must be an integer of 1 or more", field="before_version"
        )
    audit = _audit(
        "stream_truncated", {"stream_id": key.text, "before_version": before_version}, _by(by)
    )
    try:
        event: Event = yield from core.engine.truncate_stream(key, before_version, audit)
    except StreamDeleted as exc:
        raise _check_stream(key, exc) from exc
    yield from core._after_push([event])
    return event


def set_stream_metadata(
    core: StoreCore,
    stream_id: StreamId,
    max_age: timedelta | None,
    max_count: int | None,
    by: str | None,
) -> Op[Event]:
    """``EventStore.set_stream_metadata``: returns the ``stream_metadata_set`` audit event."""
    key = _key(stream_id)
    if max_age is not None and (not isinstance(max_age, timedelta) or max_age <= timedelta(0)):
        raise InvalidArgument("max_age must be None or a positive timedelta", field="max_age")
    if max_count is not None and (type(max_count) is not int or max_count < 1):
        raise InvalidArgument(
            "max_count must be None or an integer of 1 or more", field="max_count"
        )
    data = {
        "stream_id": key.text,
        "max_age": None if max_age is None else max_age.total_seconds(),
        "max_count": max_count,
    }
    audit = _audit("stream_metadata_set", data, _by(by))
    try:
        event: Event = yield from core.engine.set_stream_metadata(key, max_age, max_count, audit)
    except StreamDeleted as exc:
        raise _check_stream(key, exc) from exc
    yield from core._after_push([event])
    return event


def stream_metadata(engine: Any, stream_id: StreamId) -> Op[StreamMetadata | None]:
    """``EventStore.stream_metadata``: ``None`` for a stream the store knows nothing of."""
    key = stream_key(stream_id)
    found: StreamMetadata | None = yield from engine.stream_metadata(key)
    return found


def scavenge(
    core: StoreCore,
    *,
    batch_size: int,
    max_batches: int | None,
    pause: float,
    progress: Progress | None,
    by: str | None,
    leave_to_writers: float = 0.0,
) -> Op[ScavengeReport]:
    """``EventStore.scavenge``: one pass over the log, batch after batch, resumable.

    Each batch is a short transaction of its own; between batches the pass
    keeps its place in the checkpoint :data:`~conduit.lifecycle.SCAVENGE_CHECKPOINT`,
    so that a pass interrupted (a crash, ``max_batches``) resumes where it
    stopped. A pass ends at the log's head as it was when the pass started (or
    resumed): what writers append meanwhile is left to the next. A finished
    pass sets the checkpoint back to 0 and records an ``events_scavenged``
    audit event.
    """
    if type(batch_size) is not int or batch_size < 1:
        raise InvalidArgument("batch_size must be at least 1", field="batch_size")
    if max_batches is not None and (type(max_batches) is not int or max_batches < 1):
        raise InvalidArgument("max_batches must be None or at least 1", field="max_batches")
    if isinstance(pause, bool) or not isinstance(pause, int | float) or pause < 0:
        raise InvalidArgument("pause must be a number of seconds, 0 or more", field="pause")
    if (
        isinstance(leave_to_writers, bool)
        or not isinstance(leave_to_writers, int | float)
        or not 0 <= leave_to_writers < 1
    ):
        raise InvalidArgument(
            "leave_to_writers must be a share of the time, from 0 up to (not including) 1",
            field="leave_to_writers",
        )
    # After a batch that held the writer t seconds, wait t * share / (1 - share): the
    # batches then hold it at most (1 - share) of the time (waiting for it excluded).
    stretch = leave_to_writers / (1 - leave_to_writers)
    who = _by(by)
    engine = core.engine
    retention = core.retention
    started = datetime.now(UTC)
    stored: int | None = yield from engine.load_checkpoint(SCAVENGE_CHECKPOINT)
    cursor = stored or 0
    head: int = yield from engine.head_position(wait=False)
    examined = removed = batches = 0
    finished = False
    while True:
        batch: ScavengeBatch = yield from engine.scavenge_batch(
            after=cursor, limit=batch_size, retention=retention
        )
        examined += batch.examined
        removed += batch.removed
        batches += 1
        # The pass ends at the head it started from: events appended since are left
        # to the next pass (writers faster than the scavenge would keep it going).
        finished = batch.examined < batch_size or batch.last_position >= head
        moved = yield from engine.save_checkpoint(
            SCAVENGE_CHECKPOINT, 0 if finished else batch.last_position, expected=stored
        )
        if not moved:
            raise InvalidArgument(
                "another scavenge moved this store's scavenging checkpoint meanwhile: "
                "run one scavenge at a time",
                field="scavenge",
            )
        stored = 0 if finished else batch.last_position
        cursor = batch.last_position
        if progress is not None:
            yield Call(progress, batch, head)
        if finished or (max_batches is not None and batches >= max_batches):
            break
        if pause or stretch:
            yield Sleep(pause + batch.held * stretch)
    if finished:
        audit = new_event(
            "events_scavenged",
            {"examined": examined, "removed": removed, "up_to": cursor},
            {"user": who},
            None,
        )
        recorded = yield from engine.append(stream_key(AUDIT_STREAM), (audit,), None)
        yield from core._after_push(recorded)
    return ScavengeReport(examined, removed, cursor, finished, started, datetime.now(UTC))
