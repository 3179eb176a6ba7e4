"""A DCB recorder of the ``eventsourcing`` library (9.5) over a Conduit store.

``ConduitDCBRecorder(store)`` implements ``eventsourcing.dcb.api.DCBRecorder``
with :meth:`~conduit.EventStore.read_query` and :meth:`~conduit.EventStore.append`,
so an ``eventsourcing`` DCB application can keep its events in Conduit, on any
engine. What the adapter translates (docs/dcb.md, "The eventsourcing adapter"):

- positions: ``eventsourcing`` counts 1, 2, 3… while Conduit's PostgreSQL
  positions follow transaction ids. The recorder numbers the store's global
  log densely, in log order, keeping the map of Conduit positions it has read
  (it catches up with the log before each call: memory grows with the log);
- ``DCBEvent.type`` is any string, a Conduit name is snake_case: the type is
  kept in the metadata (``dcb_type``) and named ``type`` when it already is a
  snake_case name, else ``t`` and a hash of it; it reads back unchanged;
- ``DCBEvent.data`` is bytes: kept as base64 text in the data (``b64``);
- an empty ``DCBQuery`` matches every event; a failed condition raises the
  library's ``IntegrityError``.

Every event goes to the stream ``dcb:<its first event's id>``
(:meth:`~conduit.EventStore.append` without stream ids).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBReadResponse,
    DCBRecorder,
    DCBSequencedEvent,
    DCBSubscription,
)
from eventsourcing.persistence import IntegrityError, ProgrammingError

from conduit.dcb import AppendCondition, Query, QueryItem
from conduit.errors import AppendConditionFailed
from conduit.events import Event
from conduit.store import EventStore

__all__ = ["ConduitDCBRecorder", "event_name_of_type"]

_SNAKE = re.compile(r"[a-z][a-z0-9_]{0,199}\Z")
TYPE_KEY = "dcb_type"


def event_name_of_type(type_name: str) -> str:
    """The Conduit event name a DCB type is stored under (the same type, the same name)."""
    if _SNAKE.match(type_name):
        return type_name
    return "t" + hashlib.blake2b(type_name.encode(), digest_size=16).hexdigest()


class ConduitDCBRecorder(DCBRecorder):
    """``eventsourcing``'s DCB recorder over an :class:`~conduit.EventStore`.

    Args:
        store: the store, on any engine; the recorder numbers its whole log.
        poll_interval: how long a subscription sleeps when it has caught up.
    """

    def __init__(self, store: EventStore, *, poll_interval: float = 0.02) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._positions: list[int] = []  # Conduit positions, in log order: index + 1 is dense
        self._dense: dict[int, int] = {}

    # -- numbering -------------------------------------------------------------

    def _catch_up(self) -> int:
        """Number the log's events not numbered yet; returns the dense head."""
        with self._lock:
            last = self._positions[-1] if self._positions else 0
            for event in self.store.read_all(after=last):
                self._positions.append(event.position)
                self._dense[event.position] = len(self._positions)
            return len(self._positions)

    def _conduit_after(self, after: int | None) -> int:
        if not after or after < 0:
            return 0
        head = self._catch_up()
        if after >= head:
            return self._positions[-1] if self._positions else 0
        return self._positions[after - 1]

    # -- the recorder ------------------------------------------------------------

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        head = self._catch_up()
        if limit == 0:
            return _Response(iter(()), None)
        since = self._conduit_after(after)
        found = self.store.read_query(_query(query), after=since, limit=limit)
        self._catch_up()
        events = [self._sequenced(event) for event in found]
        if limit is None:
            return _Response(iter(events), head if head else None)
        return _Response(iter(events), events[-1].position if events else None)

    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        if not events:
            raise ProgrammingError("append needs at least one event")
        pending = [
            {
                "name": event_name_of_type(event.type),
                "data": {"b64": base64.b64encode(event.data).decode()},
                "metadata": {TYPE_KEY: event.type},
                "tags": list(event.tags),
            }
            for event in events
        ]
        checked = None
        if condition is not None:
            checked = AppendCondition(
                _query(condition.fail_if_events_match),
                after=self._conduit_after(condition.after),
            )
        try:
            recorded = self.store.append(pending, condition=checked)
        except AppendConditionFailed as exc:
            raise IntegrityError(condition) from exc
        last = recorded[-1].position
        deadline = time.monotonic() + 30
        while last not in self._dense:  # numbered once the log shows it (bounded)
            self._catch_up()
            if last in self._dense:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the appended events did not show in the global log")
            time.sleep(0.001)
        return self._dense[last]

    def subscribe(
        self, query: DCBQuery | None = None, *, after: int | None = None
    ) -> DCBSubscription[ConduitDCBRecorder]:
        return _Subscription(self, query=query, after=after)

    def _sequenced(self, event: Event) -> DCBSequencedEvent:
        return DCBSequencedEvent(
            event=DCBEvent(
                type=event.metadata.get(TYPE_KEY, event.name),
                data=base64.b64decode(event.data.get("b64", "")),
                tags=sorted(event.tags),
            ),
            position=self._dense[event.position],
        )


def _query(query: DCBQuery | None) -> Query:
    if query is None or not query.items:
        return Query.all()
    return Query(
        *(
            QueryItem(names=[event_name_of_type(t) for t in item.types], tags=item.tags)
            for item in query.items
        )
    )


class _Response(DCBReadResponse):
    def __init__(self, events: Iterator[DCBSequencedEvent], head: int | None) -> None:
        self._events = events
        self._head = head

    @property
    def head(self) -> int | None:
        return self._head

    def __next__(self) -> DCBSequencedEvent:
        return next(self._events)


class _Subscription(DCBSubscription[ConduitDCBRecorder]):
    """Polls the store for matches after the last one it gave (bounded sleeps)."""

    def __init__(self, recorder: ConduitDCBRecorder, **kwargs: Any) -> None:
        super().__init__(recorder, **kwargs)
        self._buffer: list[DCBSequencedEvent] = []

    def __next__(self) -> DCBSequencedEvent:
        while not self._has_been_stopped:
            if not self._buffer:
                found = self._recorder.read(self._query, after=self._last_position, limit=100)
                self._buffer = list(found)
            if self._buffer:
                event = self._buffer.pop(0)
                self._last_position = event.position
                return event
            time.sleep(self._recorder.poll_interval)
        raise StopIteration
