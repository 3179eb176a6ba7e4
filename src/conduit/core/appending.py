"""The store's writing operations: pushes, multi-stream pushes, conditional appends
(:class:`~conduit.core.store_ops.StoreCore` inherits them). Free of I/O.

Every write becomes an :data:`~conduit.backends.base.AppendRequest` (one part
per stream); a request without a condition may share a transaction with
concurrent ones (group commit); a conditional one never does, as its check and
its insert must be one step under its own locks (docs/dcb.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conduit.backends.base import AppendRequest, StreamAppend
from conduit.core.effects import Op
from conduit.core.group import Join
from conduit.core.paging import Pages
from conduit.core.reads import check_limit, check_position
from conduit.core.sealing import pushed_event
from conduit.core.shredding import KeyCache, recorded_retry, reveal, seal_batch
from conduit.core.writes import (
    MAX_BATCH,
    PendingEvent,
    check_expected_version,
    check_tags,
    new_batch,
    new_event,
    pending_event,
    typed_results,
    with_tags,
)
from conduit.dcb import AppendCondition, Query
from conduit.errors import DuplicateEvent, InvalidArgument, InvalidEvent, WrongExpectedVersion
from conduit.events import Event, NewEvent, StreamId, StreamKey, stream_key
from conduit.reserved import refuse_reserved
from conduit.subscriptions.dispatch import deliver
from conduit.typed import TypeRegistry, is_typed

if TYPE_CHECKING:
    from conduit.core.group import Group
    from conduit.core.store_ops import Notified

__all__ = ["DCB_STREAM_PREFIX", "Appending"]

log = logging.getLogger("conduit")

DCB_STREAM_PREFIX = "dcb:"
"""The streams of events appended without one: ``dcb:<first such event's id>``."""


class Appending:
    """The writing half of :class:`~conduit.core.store_ops.StoreCore`."""

    engine: Any
    types: TypeRegistry | None
    group: Group[Any] | None
    page_size: int
    listeners: tuple[object, ...]
    subscriptions: tuple[Notified, ...]
    followers: set[Any]
    reveal: bool
    key_cache: KeyCache

    def push(
        self,
        name: str | object,
        stream_id: StreamId,
        data: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        expected_version: int | None,
        event_id: Any,
        tags: object = None,
        *,
        internal: bool = False,
    ) -> Op[Event]:
        """``EventStore.push``; ``internal``: the store's own event, to a reserved stream."""
        if not internal:
            refuse_reserved(stream_id)
        key = stream_key(stream_id)
        new = new_event(name, data, metadata, event_id, "", self.types)
        if tags is not None:
            new = with_tags(new, check_tags(tags), "tags")
        check_expected_version(expected_version)
        recorded = yield from self._append(((StreamAppend(key, (new,), expected_version)),))
        if self.types is not None or type(name) is not str:
            recorded = typed_results(recorded, (name,), self.types)
        yield from self._after_push(recorded)
        return recorded[0]

    def push_many(
        self,
        stream_id: StreamId | Mapping[Any, Iterable[PendingEvent]],
        events: Iterable[PendingEvent] | None,
        expected_version: int | None,
        expected_versions: Mapping[Any, int] | None = None,
        tags: object = None,
    ) -> Op[list[Event]]:
        """``EventStore.push_many``: one stream's batch, or several streams' at once."""
        call_tags = check_tags(tags)
        if isinstance(stream_id, Mapping):
            if events is not None or expected_version is not None:
                raise InvalidArgument(
                    "push_many({stream: events, ...}) takes no events argument and "
                    "expected_versions={stream: version}, not expected_version",
                    field="expected_version" if events is None else "events",
                )
            return (yield from self._push_streams(stream_id, expected_versions, call_tags))
        if expected_versions is not None:
            raise InvalidArgument(
                "expected_versions goes with push_many({stream: events, ...});"
                " one stream's push_many takes expected_version",
                field="expected_versions",
            )
        if events is None:
            raise InvalidArgument("push_many(stream_id, events): no events", field="events")
        key = stream_key(stream_id)
        batch, items = new_batch(stream_id, events, self.types, call_tags)
        _refuse_new_reserved(stream_id, batch)
        check_expected_version(expected_version)
        if not batch:
            actual = yield from self.engine.stream_version(key)
            if expected_version is not None and expected_version != actual:
                raise WrongExpectedVersion(stream_id, expected_version, actual)
            return []
        recorded = yield from self._append((StreamAppend(key, tuple(batch), expected_version),))
        if self.types is not None or any(is_typed(item) for item in items):
            recorded = typed_results(recorded, items, self.types)
        yield from self._after_push(recorded)
        return recorded

    def _push_streams(
        self,
        batches: Mapping[StreamId, Iterable[PendingEvent]],
        expected_versions: Mapping[StreamId, int] | None,
        tags: frozenset[str],
    ) -> Op[list[Event]]:
        expected = _expected_versions(expected_versions)
        parts: list[StreamAppend] = []
        pushed: list[object] = []
        seen: set[str] = set()
        for stream_id, events in batches.items():
            key = stream_key(stream_id)
            if key.text in seen:
                raise InvalidArgument(
                    f"streams: {stream_id!r} is given twice (as a string and a UUID?)",
                    field="streams",
                )
            seen.add(key.text)
            batch, items = new_batch(stream_id, events, self.types, tags, len(pushed))
            _refuse_new_reserved(stream_id, batch)
            if not batch:
                raise InvalidEvent(
                    f"streams[{stream_id!r}]: no events; give each stream at least one",
                    field=f"streams[{stream_id!r}]",
                )
            parts.append(StreamAppend(key, tuple(batch), expected.pop(key.text, None)))
            pushed.extend(items)
        if expected:
            unknown = next(iter(expected))
            raise InvalidArgument(
                f"expected_versions: {unknown!r} has no events in this call",
                field="expected_versions",
            )
        return (yield from self._record(tuple(parts), pushed, None))

    def append(
        self,
        events: Iterable[PendingEvent],
        condition: AppendCondition | None,
        tags: object = None,
        expected_versions: Mapping[Any, int] | None = None,
    ) -> Op[list[Event]]:
        """``EventStore.append``: events of any streams (or none), under a condition."""
        if condition is not None and not isinstance(condition, AppendCondition):
            raise InvalidArgument("condition: an AppendCondition", field="condition")
        call_tags = check_tags(tags)
        expected = _expected_versions(expected_versions)
        items = events if isinstance(events, list | tuple) else list(events)
        if not items:
            raise InvalidEvent("events: no events to append", field="events")
        if len(items) > MAX_BATCH:
            raise InvalidEvent(f"events: at most {MAX_BATCH} events in one batch", field="events")
        streams: dict[str | None, tuple[StreamKey | None, list[Any], list[int]]] = {}
        for index, item in enumerate(items):
            stream_id: object = None
            if isinstance(item, Mapping) and "stream_id" in item:
                stream_id = item["stream_id"]
                item = {k: v for k, v in item.items() if k != "stream_id"}
            key = None if stream_id is None else stream_key(stream_id)
            text = None if key is None else key.text
            entry = streams.setdefault(text, (key, [], []))
            entry[1].append(item)
            entry[2].append(index)
        parts: list[StreamAppend] = []
        pushed: list[object] = []
        for text, (key, group, indexes) in streams.items():
            batch = [
                with_tags(
                    pending_event(item, index, self.types), call_tags, f"events[{index}].tags"
                )
                for item, index in zip(group, indexes, strict=True)
            ]
            if key is None:
                key = StreamKey(DCB_STREAM_PREFIX + str(batch[0].id), False)
                version: int | None = 0
            else:
                _refuse_new_reserved(key.text, batch)
                version = expected.pop(text, None) if text is not None else None
            parts.append(StreamAppend(key, tuple(batch), version))
            pushed.extend(group)
        if len({new.id for part in parts for new in part.events}) != len(items):
            raise InvalidEvent("events: the same event id twice", field="events")
        if expected:
            unknown = next(iter(expected))
            raise InvalidArgument(
                f"expected_versions: {unknown!r} has no events in this call",
                field="expected_versions",
            )
        return (yield from self._record(tuple(parts), pushed, condition))

    def _record(
        self, request: AppendRequest, pushed: Sequence[object], condition: AppendCondition | None
    ) -> Op[list[Event]]:
        if condition is None:
            recorded = yield from self._append(request)
        else:  # never grouped: the check and the insert are one step under its locks
            try:
                sealed, keys = yield from self._seal(request)
                parts = yield from self.engine.append_request(sealed, condition)
                recorded = self._revealed([event for part in parts for event in part], keys)
            except DuplicateEvent as error:
                recorded = yield from self._retried(request, error)
        if self.types is not None or any(is_typed(item) for item in pushed):
            recorded = typed_results(recorded, pushed, self.types)
        yield from self._after_push(recorded)
        return recorded

    def _seal(self, request: AppendRequest) -> Op[tuple[AppendRequest, list[Any] | None]]:
        """The request with its personal values sealed, and each event's data as pushed
        (``None``: the request holds no personal value)."""
        plains: list[Any] = []
        parts = []
        personal = False
        for part in request:
            sealed, plain = yield from seal_batch(
                self.engine, self.key_cache, part.stream.text, part.events, shown=self.reveal
            )
            if plain is None:
                plains.extend([None] * len(part.events))
            else:
                personal = True
                plains.extend(plain)
                part = StreamAppend(part.stream, tuple(sealed), part.expected)
            parts.append(part)
        return (tuple(parts), plains) if personal else (request, None)

    def _revealed(self, recorded: list[Event], plains: list[Any] | None) -> list[Event]:
        """What a push returns: its personal values as pushed."""
        if plains is None or not self.reveal:
            return recorded
        return [pushed_event(event, plain) for event, plain in zip(recorded, plains, strict=True)]

    def _retried(self, request: AppendRequest, error: DuplicateEvent) -> Op[list[Event]]:
        """On ``error``: the recorded events if ``request`` (before sealing) is a retry
        of events with personal values, which sealing made look changed; else ``error``."""
        if any(new.personal for part in request for new in part.events):
            retried = yield from recorded_retry(self.engine, request, self.reveal)
            if retried is not None:
                return retried
        raise error

    def _append(self, request: AppendRequest) -> Op[list[Event]]:
        try:
            sealed, keys = yield from self._seal(request)
            group = self.group
            if group is None:
                if len(sealed) == 1:
                    part = sealed[0]
                    recorded: list[Event] = yield from self.engine.append(
                        part.stream, part.events, part.expected
                    )
                    return self._revealed(recorded, keys)
                parts = yield from self.engine.append_request(sealed, None)
            else:
                parts = yield Join(group, sealed)
        except DuplicateEvent as error:
            return (yield from self._retried(request, error))
        return self._revealed([event for part in parts for event in part], keys)

    def _after_push(self, recorded: list[Event]) -> Op[None]:
        """Followers, listeners, then subscriptions: never undoing the push, whatever they
        raise."""
        for wake in self.followers:
            wake.set()
        if self.listeners:
            yield from deliver(self.listeners, recorded)
        for subscription in self.subscriptions:
            try:
                yield from subscription.after_push()
            except Exception:  # a failing subscription never undoes the push
                log.exception("subscription %r failed after a push", subscription.name)

    # -- queries -----------------------------------------------------------------

    def query_pages(
        self, query: Query, *, after: int | None, limit: int | None
    ) -> Pages[int, Event]:
        """``EventStore.read_query``, forwards: the matches of ``query``, a page at a time."""
        if not isinstance(query, Query):
            raise InvalidArgument("query: a Query", field="query")
        position = check_position(after)
        remaining = check_limit(limit)
        engine = self.engine
        types = self.types

        def fetch(after: int, size: int) -> Op[Sequence[Event]]:
            page: Sequence[Event] = yield from engine.read_query(query, after=after, limit=size)
            if self.reveal:
                page = yield from reveal(engine, page)
            return page if types is None else list(map(types.decode, page))

        return Pages(fetch, position, _position, limit=remaining, page_size=self.page_size)

    def read_query_backwards(
        self, query: Query, *, after: int | None, limit: int
    ) -> Op[list[Event]]:
        """``EventStore.read_query(backwards=True, limit=n)``: the latest ``n`` matches."""
        if not isinstance(query, Query):
            raise InvalidArgument("query: a Query", field="query")
        position = check_position(after)
        check_limit(limit)
        page: Sequence[Event] = yield from self.engine.read_query(
            query, after=position, limit=limit, backwards=True
        )
        if self.reveal:
            page = yield from reveal(self.engine, page)
        return list(page) if self.types is None else list(map(self.types.decode, page))


def _position(event: Event) -> int:
    return event.position


def _refuse_new_reserved(stream_id: object, batch: Sequence[NewEvent]) -> None:
    """New events (without a recorded time) cannot go to a reserved stream; copies and
    imports carry recorded ones."""
    if any(new.recorded_at is None for new in batch):
        refuse_reserved(stream_id)


def _expected_versions(given: Mapping[StreamId, int] | None) -> dict[str, int]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise InvalidArgument(
            "expected_versions: a mapping of stream ids to versions", field="expected_versions"
        )
    found: dict[str, int] = {}
    for stream_id, version in given.items():
        try:
            check_expected_version(version)
        except InvalidArgument:
            raise InvalidArgument(
                f"expected_versions[{stream_id!r}]: {version!r} is not a version (0 or more)",
                field="expected_versions",
            ) from None
        if version is not None:
            found[stream_key(stream_id).text] = version
    return found
