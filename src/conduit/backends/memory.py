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
from conduit.backends.memory_subscriptions import MemorySubscriptions
from conduit.dcb import AppendCondition, Query
from conduit.errors import (
    AppendConditionFailed,
    ConduitError,
    DuplicateEvent,
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


class MemoryBackend(MemorySubscriptions):
    """Events held in this process's memory; safe to share between threads."""

    scheme = "memory"
    partitioned_reads = True
    """``read_all`` and ``count_after`` take ``partition=``."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._log: list[_Stored] = []
        self._streams: dict[str, list[_Stored]] = {}
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
        conflicts: list[tuple[object, int, int]] = []
        versions: dict[str, int] = {}
        for part in request:
            version = versions.get(part.stream.text)
            if version is None:
                version = len(self._streams.get(part.stream.text, ()))
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
            recorded = self._streams.get(stream.text, [])
            version = len(recorded)
            stream_id = recorded[0].stream_id if recorded else stream.stream_id()
            position = len(self._log)
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
            if not recorded:
                self._streams[stream.text] = recorded
                bisect.insort(self._sorted_ids, stream.text)
            recorded.extend(result)
            self._log.extend(result)
            for record in result:
                by_id[record.id] = record
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
        if query.matches_all:
            page = log[max(0, after) :]
            return (page[::-1] if backwards else page)[:limit]
        positions: set[int] = set()
        for item in query.items:
            if item.tags:
                lists = [self._by_tag.get(tag, []) for tag in item.tags]
                candidates = min(lists, key=len)
            else:
                candidates = [p for name in item.names for p in self._by_name.get(name, ())]
            start = bisect.bisect_right(candidates, after) if item.tags else 0
            for position in candidates[start:]:
                if position > after and item.matches(
                    log[position - 1].name, log[position - 1].tags
                ):
                    positions.add(position)
        ordered = sorted(positions, reverse=backwards)[:limit]
        return [log[position - 1] for position in ordered]

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
            recorded = self._streams.get(stream.text, [])
            if backwards:
                end = len(recorded) if start is None else max(0, min(start, len(recorded)))
                page = recorded[:end][::-1]
            else:
                page = recorded[max(0, (start or 1) - 1) :]
            if since is not None:
                page = [e for e in page if e.recorded_at >= since]
            page = page[:limit]
        return _events(page)

    def read_all(
        self,
        *,
        after: int,
        names: Sequence[str] | None,
        limit: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        wait: bool = True,
        partition: Partition | None = None,
    ) -> list[Event]:
        with self._lock:
            if (
                names is None
                and correlation_id is None
                and causation_id is None
                and partition is None
            ):
                page = self._log[max(0, after) : max(0, after) + limit]
            else:
                wanted = None if names is None else set(names)
                page = []
                for record in self._log[max(0, after) :]:
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
            return len(self._streams.get(stream.text, ()))

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
                recorded = self._streams[text]
                page.append(StreamInfo(recorded[0].stream_id, len(recorded)))
                if len(page) == limit:
                    break
            return page

    def head_position(self, *, wait: bool = True) -> int:
        with self._lock:
            return len(self._log)

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
            tail = self._log[max(0, position) :]
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
                self._log[new.position - 1] = new
                self._streams[str(new.stream_id)][new.version - 1] = new
                count += 1
            return count


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
