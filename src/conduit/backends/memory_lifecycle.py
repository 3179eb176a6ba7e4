"""The memory engine's deletions, truncations, stream limits and scavenging.

A mixin of :class:`~conduit.backends.memory.MemoryBackend`: it works on the
engine's own lists and dicts, under the engine's lock, and writes each audit
event in the same critical section as the change it records.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from conduit.backends.base import AppendRequest, StreamAppend
from conduit.errors import InvalidArgument, StreamDeleted, WrongExpectedVersion
from conduit.events import Event, NewEvent, StreamId, StreamKey, stream_key
from conduit.lifecycle import (
    AUDIT_STREAM,
    DELETED,
    RESERVED_STREAM_PREFIX,
    ScavengeBatch,
    StreamMetadata,
)

__all__ = ["HARD", "SOFT", "MemoryLifecycle", "StreamState"]

SOFT, HARD = 1, 2
_AUDIT = stream_key(AUDIT_STREAM)


@dataclass(slots=True)
class StreamState:
    """What the memory engine keeps about a stream beside its events (under its lock)."""

    stream_id: StreamId
    version: int = 0
    deleted: int = 0
    truncated_before: int = 0
    max_age: timedelta | None = None
    max_count: int | None = None

    def first_visible(self) -> int:
        first = max(1, self.truncated_before)
        if self.max_count is not None:
            first = max(first, self.version - self.max_count + 1)
        return first

    def metadata(self) -> StreamMetadata:
        return StreamMetadata(
            self.stream_id,
            self.version,
            DELETED[self.deleted],  # type: ignore[arg-type]
            self.truncated_before,
            self.max_age,
            self.max_count,
        )


class MemoryLifecycle:
    """Deleting, truncating, limiting and scavenging streams held in memory."""

    _lock: threading.Lock
    _log: list[Any]
    _positions: list[int]
    _at: dict[int, Any]
    _by_name: dict[str, list[int]]
    _by_tag: dict[str, list[int]]
    _streams: dict[str, list[Any]]
    _meta: dict[str, StreamState]
    _by_id: dict[object, Any]
    _snapshots: dict[tuple[str, str], Any]

    def _append_locked(self, request: AppendRequest, condition: Any) -> list[list[Any]]:
        raise NotImplementedError

    def _audit(self, audit: NewEvent) -> Event:
        recorded = self._append_locked((StreamAppend(_AUDIT, (audit,), None),), None)
        return recorded[0][0].event()  # type: ignore[no-any-return]

    def _state(self, stream: StreamKey) -> StreamState:
        state = self._meta.get(stream.text)
        if state is None:
            state = self._meta[stream.text] = StreamState(stream.stream_id())
        if state.deleted == HARD:
            raise StreamDeleted(stream.stream_id())
        return state

    def delete_stream(
        self,
        stream: StreamKey,
        expected_version: int | None,
        hard: bool,
        audit: Callable[[int], NewEvent],
    ) -> Event:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._lock:
            state = self._state(stream)
            if expected_version is not None and expected_version != state.version:
                raise WrongExpectedVersion(stream.stream_id(), expected_version, state.version)
            state.deleted = HARD if hard else SOFT
            state.truncated_before = state.version + 1
            for key in [key for key in self._snapshots if key[0] == stream.text]:
                del self._snapshots[key]
            if hard:
                self._remove(set(self._streams.pop(stream.text, ())))
            return self._audit(audit(state.version))

    def truncate_stream(
        self, stream: StreamKey, before_version: int, audit: Callable[[int], NewEvent]
    ) -> Event:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._lock:
            state = self._state(stream)
            if before_version > state.version + 1:
                raise InvalidArgument(
                    f"before_version {before_version} is past the stream's next version "
                    f"({state.version + 1})",
                    field="before_version",
                )
            state.truncated_before = max(state.truncated_before, before_version)
            recorded = self._streams.get(stream.text, [])
            cut = bisect.bisect_left(recorded, state.truncated_before, key=_version)
            if cut:
                self._remove(set(recorded[:cut]))
            return self._audit(audit(state.version))

    def set_stream_metadata(
        self,
        stream: StreamKey,
        max_age: timedelta | None,
        max_count: int | None,
        audit: Callable[[int], NewEvent],
    ) -> Event:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._lock:
            state = self._state(stream)
            state.max_age = max_age
            state.max_count = max_count
            return self._audit(audit(state.version))

    def stream_metadata(self, stream: StreamKey) -> StreamMetadata | None:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._lock:
            state = self._meta.get(stream.text)
            return None if state is None else state.metadata()

    def tombstones(self, *, after: str | None, limit: int) -> list[StreamMetadata]:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._lock:
            found = sorted(
                (text, state)
                for text, state in self._meta.items()
                if state.deleted and (after is None or text > after)
            )
            return [state.metadata() for _, state in found[:limit]]

    def scavenge_batch(
        self, *, after: int, limit: int, retention: timedelta | None
    ) -> ScavengeBatch:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._lock:
            start = bisect.bisect_right(self._positions, after)
            window = self._log[start : start + limit]
            if not window:
                return ScavengeBatch(after, 0, 0)
            now = datetime.now(UTC)
            expired = set()
            for record in window:
                text = str(record.stream_id)
                state = self._meta[text]
                oldest = None if state.max_age is None else now - state.max_age
                if retention is not None and not text.startswith(RESERVED_STREAM_PREFIX):
                    cutoff = now - retention
                    oldest = cutoff if oldest is None else max(oldest, cutoff)
                if record.version < state.first_visible() or (
                    oldest is not None and record.recorded_at < oldest
                ):
                    expired.add(record)
            self._remove(expired)
            return ScavengeBatch(window[-1].position, len(window), len(expired))

    def _remove(self, records: set[Any]) -> None:
        """Remove these records from the log, their streams and the ids (under the lock)."""
        if not records:
            return
        self._log = [record for record in self._log if record not in records]
        self._positions = [record.position for record in self._log]
        gone = {record.position for record in records}
        for record in records:
            del self._at[record.position]
        for name in {record.name for record in records}:
            self._by_name[name] = [p for p in self._by_name.get(name, ()) if p not in gone]
        for tag in {tag for record in records for tag in record.tags}:
            self._by_tag[tag] = [p for p in self._by_tag.get(tag, ()) if p not in gone]
        for text in {str(record.stream_id) for record in records}:
            if text in self._streams:
                self._streams[text] = [r for r in self._streams[text] if r not in records]
        for record in records:
            self._by_id.pop(record.id, None)


def _version(record: Any) -> int:
    return record.version  # type: ignore[no-any-return]
