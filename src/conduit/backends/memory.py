"""The in-memory engine: lists and dicts behind a lock. Nothing survives the process.

Like the other engines, it keeps each event's data and metadata as the JSON
text the codec made, and builds a fresh :class:`~conduit.events.Event` (with
fresh dicts) for every read: what a caller does to the ``data`` of an event it
was given never reaches the store, nor any other reader.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from conduit import codec
from conduit.backends.base import AppendRequest, EventRewrite, GroupOutcome, StreamAppend
from conduit.backends.common import resolve_retry
from conduit.backends.memory_keys import MemorySubjectKeys
from conduit.backends.memory_lifecycle import HARD, MemoryLifecycle, StreamState
from conduit.backends.memory_subscriptions import MemorySubscriptions
from conduit.dcb import AppendCondition, Query
from conduit.errors import (
    AppendConditionFailed,
    ConduitError,
    DuplicateEvent,
    StreamDeleted,
    WrongExpectedVersion,
)
from conduit.events import (
    Event,
    NewEvent,
    Snapshot,
    StreamId,
    StreamInfo,
    StreamKey,
    make_event,
)
from conduit.subscriptions.partitions import Partition

__all__ = ["MemoryBackend"]

_decode = codec.decode


class _Stored(NamedTuple):
    """One recorded event as the engine keeps it: data and metadata as JSON text.

    Immutable, so that a read may build events from it outside the lock.
    """

    id: uuid.UUID
    stream_id: StreamId
    name: str
    data: str
    metadata: str
    version: int
    position: int
    recorded_at: datetime
    tags: frozenset[str]

    def event(self) -> Event:
        """A new Event of this record, with dicts of its own."""
        metadata = self.metadata
        return make_event(
            self.id,
            self.stream_id,
            self.name,
            _decode(self.data),
            {} if metadata == "{}" else _decode(metadata),
            self.version,
            self.position,
            self.recorded_at,
            self.tags,
        )


def _events(stored: list[_Stored]) -> list[Event]:
    decode = _decode
    return [
        make_event(
            event_id,
            stream_id,
            name,
            decode(data),
            {} if metadata == "{}" else decode(metadata),
            version,
            position,
            recorded_at,
            tags,
        )
        for (
            event_id,
            stream_id,
            name,
            data,
            metadata,
            version,
            position,
            recorded_at,
            tags,
        ) in stored
    ]


class MemoryBackend(MemoryLifecycle, MemorySubscriptions, MemorySubjectKeys):
    """Events held in this process's memory; safe to share between threads."""

    scheme = "memory"
    partitioned_reads = True
    """``read_all`` and ``count_after`` take ``partition=``."""

    def __init__(self) -> None:
        MemorySubscriptions.__init__(self)
        MemorySubjectKeys.__init__(self)
        self._lock = threading.Lock()
        # The log and each stream, as kept: removals leave holes, so positions
        # (and versions) are looked up (by bisection, or in _at), never used as
        # indexes.
        self._log: list[_Stored] = []
        self._positions: list[int] = []
        self._at: dict[int, _Stored] = {}
        self._last_position = 0  # the last position given: never given again
        self._streams: dict[str, list[_Stored]] = {}
        self._meta: dict[str, StreamState] = {}
        self._sorted_ids: list[str] = []
        self._by_id: dict[object, _Stored] = {}
        self._by_name: dict[str, list[int]] = {}
        self._by_tag: dict[str, list[int]] = {}
        self._last_time = datetime.fromtimestamp(0, UTC)
        self._snapshots: dict[tuple[str, str], Snapshot] = {}

    def setup(self) -> None:
        """Nothing to create."""

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[Event]:
        return self.append_request((StreamAppend(stream, tuple(events), expected_version),))[0]

    def append_request(
        self, request: AppendRequest, condition: AppendCondition | None = None
    ) -> list[list[Event]]:
        """One append of one or several streams, all or nothing, under ``condition``."""
        with self._lock:
            return [_events(part) for part in self._append_locked(request, condition)]

    def _append_locked(
        self, request: AppendRequest, condition: AppendCondition | None
    ) -> list[list[_Stored]]:
        by_id = self._by_id
        retried: list[list[_Stored]] = []
        for part in request:
            known = [by_id[new.id] for new in part.events if new.id in by_id]
            if known and resolve_retry(part.stream, part.events, _events(known)) is not None:
                retried.append([by_id[new.id] for new in part.events])
        if retried:
            if len(retried) == len(request):
                return retried
            first = retried[0][0]
            raise DuplicateEvent(first.id, first.stream_id, reason="while other streams are new")
        for part in request:
            state = self._meta.get(part.stream.text)
            if state is not None and state.deleted == HARD:
                raise StreamDeleted(part.stream.stream_id())
        conflicts: list[tuple[object, int, int]] = []
        versions: dict[str, int] = {}
        for part in request:
            version = versions.get(part.stream.text)
            if version is None:
                state = self._meta.get(part.stream.text)
                version = 0 if state is None else state.version
            if part.expected is not None and part.expected != version:
                conflicts.append((part.stream.stream_id(), part.expected, version))
            versions[part.stream.text] = version + len(part.events)
        if conflicts:
            raise WrongExpectedVersion.of(conflicts)
        if condition is not None:
            found = self._matching(condition.fail_if_events_match, condition.after or 0, 1)
            if found:
                raise AppendConditionFailed(found[0].position, condition.after)
        now = max(datetime.now(UTC), self._last_time)
        self._last_time = now
        outcome = []
        for part in request:
            stream, events = part.stream, part.events
            state = self._meta.get(stream.text)
            if state is None:
                state = self._meta[stream.text] = StreamState(stream.stream_id())
            version = state.version
            stream_id = state.stream_id
            position = self._last_position
            result = [
                _Stored(
                    new.id,
                    stream_id,
                    new.name,
                    new.data,
                    new.metadata,
                    version + i,
                    position + i,
                    now if new.recorded_at is None else new.recorded_at,
                    new.tags,
                )
                for i, new in enumerate(events, 1)
            ]
            recorded = self._streams.get(stream.text)
            if recorded is None:
                recorded = self._streams[stream.text] = []
            if version == 0:
                bisect.insort(self._sorted_ids, stream.text)
            state.version = version + len(result)
            state.deleted = 0  # a push after a soft delete brings the stream back
            self._last_position = position + len(result)
            recorded.extend(result)
            self._log.extend(result)
            self._positions.extend(record.position for record in result)
            for record in result:
                by_id[record.id] = record
                self._at[record.position] = record
                self._by_name.setdefault(record.name, []).append(record.position)
                for tag in record.tags:
                    self._by_tag.setdefault(tag, []).append(record.position)
            outcome.append(result)
        return outcome

    def append_group(self, requests: Sequence[AppendRequest]) -> list[GroupOutcome]:
        """Several appends one after the other (memory has no commit to share)."""
        outcomes: list[GroupOutcome] = []
        for request in requests:
            try:
                outcomes.append(self.append_request(request))
            except ConduitError as exc:
                outcomes.append(exc)
        return outcomes

    def read_query(
        self, query: Query, *, after: int, limit: int, backwards: bool = False
    ) -> list[Event]:
        """A page of the events ``query`` matches after ``after``, in log order (or the
        latest first)."""
        with self._lock:
            return _events(self._matching(query, after, limit, backwards))

    def _matching(
        self, query: Query, after: int, limit: int, backwards: bool = False
    ) -> list[_Stored]:
        """The events of ``query`` after ``after``, from the name and tag indexes."""
        log = self._log
        at = self._at
        if query.matches_all:
            page = log[bisect.bisect_right(self._positions, after) :]
            return (page[::-1] if backwards else page)[:limit]
        positions: set[int] = set()
        for item in query.items:
            if item.tags:  # the rarest tag's positions, in log order
                lists = [min((self._by_tag.get(tag, []) for tag in item.tags), key=len)]
            else:  # each name's positions, in log order
                lists = [self._by_name.get(name, []) for name in item.names]
            for candidates in lists:
                for position in candidates[bisect.bisect_right(candidates, after) :]:
                    record = at[position]
                    if item.matches(record.name, record.tags):
                        positions.add(position)
        ordered = sorted(positions, reverse=backwards)[:limit]
        return [at[position] for position in ordered]

    def read_stream(
        self,
        stream: StreamKey,
        *,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        limit: int,
    ) -> list[Event]:
        with self._lock:
            recorded = self._visible(stream.text)
            if backwards:
                end = bisect.bisect_right(recorded, start, key=_version) if start else None
                page = recorded[:end][::-1]
            else:
                page = recorded[bisect.bisect_left(recorded, start or 1, key=_version) :]
            if since is not None:
                page = [e for e in page if e.recorded_at >= since]
            page = page[:limit]
        return _events(page)

    def _visible(self, text: str) -> list[_Stored]:
        """The stream's events a read may return (under the lock): none of a soft-deleted
        or truncated part, none beyond its limits."""
        recorded = self._streams.get(text, [])
        state = self._meta.get(text)
        if state is None or not recorded:
            return recorded
        first = state.first_visible()
        if first > recorded[0].version:
            recorded = recorded[bisect.bisect_left(recorded, first, key=_version) :]
        if state.max_age is not None:
            oldest = datetime.now(UTC) - state.max_age
            recorded = [e for e in recorded if e.recorded_at >= oldest]
        return recorded

    def read_all(
        self,
        *,
        after: int,
        names: Sequence[str] | None,
        limit: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        wait: bool = True,
        before: int | None = None,
        backwards: bool = False,
        partition: Partition | None = None,
    ) -> list[Event]:
        with self._lock:
            low = bisect.bisect_right(self._positions, after)
            high = len(self._log) if before is None else bisect.bisect_left(self._positions, before)
            records = self._log[low : max(low, high)]
            if backwards:
                records.reverse()
            if (
                names is None
                and correlation_id is None
                and causation_id is None
                and partition is None
            ):
                page = records[:limit]
            else:
                wanted = None if names is None else set(names)
                page = []
                for record in records:
                    if (
                        (wanted is None or record.name in wanted)
                        and _matches(record, "correlation_id", correlation_id)
                        and _matches(record, "causation_id", causation_id)
                        and (partition is None or partition.keeps(record.stream_id))
                    ):
                        page.append(record)
                        if len(page) == limit:
                            break
        return _events(page)

    def stream_version(self, stream: StreamKey) -> int:
        with self._lock:
            state = self._meta.get(stream.text)
            return 0 if state is None else state.version

    def streams(self, *, after: str | None, prefix: str | None, limit: int) -> list[StreamInfo]:
        with self._lock:
            ids = self._sorted_ids
            index = 0 if after is None else bisect.bisect_right(ids, after)
            if prefix is not None:
                index = max(index, bisect.bisect_left(ids, prefix))
            page: list[StreamInfo] = []
            for text in ids[index:]:
                if prefix is not None and not text.startswith(prefix):
                    break
                state = self._meta[text]
                if state.deleted:
                    continue
                page.append(StreamInfo(state.stream_id, state.version))
                if len(page) == limit:
                    break
            return page

    def stream_totals(self) -> tuple[int, int]:
        with self._lock:
            live = [state for state in self._meta.values() if state.version and not state.deleted]
            return len(live), sum(state.version for state in live)

    def head_position(self, *, wait: bool = True) -> int:
        with self._lock:
            return self._log[-1].position if self._log else 0

    def count_after(
        self,
        position: int,
        *,
        names: Sequence[str] | None,
        limit: int | None = None,
        wait: bool = True,
        partition: Partition | None = None,
    ) -> int:
        with self._lock:
            tail = self._log[bisect.bisect_right(self._positions, position) :]
            if partition is not None:
                tail = [e for e in tail if partition.keeps(e.stream_id)]
            count = len(tail) if names is None else sum(1 for e in tail if e.name in names)
        return count if limit is None else min(count, limit)

    def first_position_since(self, since: datetime) -> int | None:
        with self._lock:
            return next((e.position for e in self._log if e.recorded_at >= since), None)

    def read_event(self, event_id: uuid.UUID) -> Event | None:
        with self._lock:
            record = self._by_id.get(event_id)
        return None if record is None else record.event()

    def save_snapshot(self, stream: StreamKey, snapshot: Snapshot) -> None:
        key = (stream.text, snapshot.class_name)
        with self._lock:
            kept = self._snapshots.get(key)
            if kept is None or kept.version <= snapshot.version:
                self._snapshots[key] = replace(snapshot, taken_at=datetime.now(UTC))

    def load_snapshot(self, stream: StreamKey, class_name: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get((stream.text, class_name))

    def close(self) -> None:
        """Nothing to release."""

    def rewrite_events(self, changes: Sequence[EventRewrite]) -> int:
        with self._lock:
            count = 0
            for change in changes:
                old = self._by_id.get(change.id)
                if old is None:
                    continue
                new = old._replace(name=change.name, data=change.data, metadata=change.metadata)
                if new.name != old.name:
                    self._by_name[old.name].remove(old.position)
                    bisect.insort(self._by_name.setdefault(new.name, []), new.position)
                self._by_id[new.id] = new
                self._log[bisect.bisect_left(self._positions, new.position)] = new
                self._at[new.position] = new
                recorded = self._streams[str(new.stream_id)]
                recorded[bisect.bisect_left(recorded, new.version, key=_version)] = new
                count += 1
            return count


def _version(record: _Stored) -> int:
    return record.version


def _matches(record: _Stored, key: str, wanted: str | None) -> bool:
    """Whether the event's metadata holds ``wanted`` under ``key`` (a string, or an
    integer by its decimal text, as the SQL engines compare them)."""
    if wanted is None:
        return True
    if record.metadata == "{}":
        return False
    value = _decode(record.metadata).get(key)
    if type(value) is int:
        return str(value) == wanted
    return type(value) is str and value == wanted
