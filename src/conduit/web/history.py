"""The global log read backwards, and the events around one event, through the public API.

:meth:`EventStore.read_all` only reads forwards, after a position. The
browser wants the newest events first, so :func:`events_before` finds the
last events below a position by probing: positions are integers that grow in
log order, so "how many events lie between ``x`` and ``top``" can only shrink
as ``x`` grows. It steps back from ``top`` with a doubling distance, then
bisects, each probe one ``read_all(after=x, limit=n)``: an indexed range read
of at most ``n`` events. It needs about two probes per bit of the distance it
covers (a few on SQLite, whose positions are dense; a few dozen on
PostgreSQL, whose positions leave room for each transaction's events) and
never counts or scans the whole log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from conduit.events import Event
from conduit.store import EventStore

__all__ = [
    "SEARCHED_AFTER",
    "SEARCHED_BEFORE",
    "Related",
    "event_link_id",
    "events_before",
    "related",
    "scan_correlation",
]

SEARCHED_BEFORE = 250
"""How many events before an event are searched for its relatives (the causes, mostly)."""

SEARCHED_AFTER = 1000
"""How many events after an event are searched for its relatives (its consequences)."""


def events_before(store: EventStore, before: int | None, limit: int) -> list[Event]:
    """The last ``limit`` events below the position ``before`` (``None``: all), oldest first."""
    if limit < 1:
        return []
    top = store.head_position() + 1 if before is None else before
    found: list[Event] = []
    need = limit
    distance = limit
    full: int | None = None  # an ``after`` with at least ``need`` events between it and ``top``
    while need > 0 and top > 1:
        if full is None:
            probe = max(top - 1 - distance, 0)
            distance *= 16  # a few wide steps, then bisection narrows it down
        else:
            probe = (full + top - 1) // 2
        page = _between(store, probe, top, need)
        if len(page) < need:
            # Every event between probe and top: keep them, look further back.
            found[:0] = page
            need -= len(page)
            top = page[0].position if page else probe + 1
            if probe == 0:
                break
        elif full is not None and probe == full:
            # Only one position is left between full and top: this page is it.
            found[:0] = page
            break
        else:
            # Too far back: these are the oldest of more than ``need`` events.
            full = page[0].position - 1
    return found


def _between(store: EventStore, after: int, top: int, limit: int) -> list[Event]:
    return [event for event in store.read_all(after=after, limit=limit) if event.position < top]


@dataclass(frozen=True, slots=True)
class Related:
    """The events found near an event that share its correlation id, or that it caused."""

    correlation_id: str | None
    causation_id: str | None
    correlated: list[Event]
    caused: list[Event]
    searched_before: int
    searched_after: int


def related(
    store: EventStore,
    event: Event,
    before: int = SEARCHED_BEFORE,
    after: int = SEARCHED_AFTER,
) -> Related:
    """Search the events around ``event`` in the global log for its relatives.

    There is no index by correlation id: a bounded window (``before`` events
    before it, ``after`` events after it) keeps an event's page fast on any
    store. Reading backwards costs more (see :func:`events_before`), and an
    event's consequences come after it, hence the lopsided window. Events
    further away are found by :func:`scan_correlation`, a window at a time.
    """
    correlation_id = _text(event.metadata.get("correlation_id"))
    causation_id = _text(event.metadata.get("causation_id"))
    nearby = [
        *events_before(store, event.position, before),
        *store.read_all(after=event.position, limit=after),
    ]
    own_id = str(event.id)
    correlated = [
        other
        for other in nearby
        if correlation_id is not None
        and _text(other.metadata.get("correlation_id")) == correlation_id
    ]
    caused = [other for other in nearby if _text(other.metadata.get("causation_id")) == own_id]
    return Related(correlation_id, causation_id, correlated, caused, before, after)


def scan_correlation(
    store: EventStore, correlation_id: str, after: int, window: int
) -> tuple[list[Event], int, bool]:
    """The events of ``window`` events of the log after ``after`` that carry ``correlation_id``.

    Returns the events found, the position the scan reached, and whether the
    log goes on past it.
    """
    matches: list[Event] = []
    reached = after
    seen = 0
    for event in store.read_all(after=after, limit=window):
        seen += 1
        reached = event.position
        if _text(event.metadata.get("correlation_id")) == correlation_id:
            matches.append(event)
    return matches, reached, seen == window


def event_link_id(value: object) -> str | None:
    """``value`` as an event id worth linking to: the text of a UUID, else ``None``."""
    text = _text(value)
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    return None
