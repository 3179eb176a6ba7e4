"""The global log read backwards, and the events around one event, through the public API.

:meth:`AsyncEventStore.read_all` only reads forwards, after a position. The
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

from conduit.async_store import AsyncEventStore
from conduit.events import Event

__all__ = [
    "RELATED_SHOWN",
    "Related",
    "correlated_page",
    "event_link_id",
    "events_before",
    "related",
]


async def events_before(store: AsyncEventStore, before: int | None, limit: int) -> list[Event]:
    """The last ``limit`` events below the position ``before`` (``None``: all), oldest first."""
    if limit < 1:
        return []
    top = await store.head_position() + 1 if before is None else before
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
        page = await _between(store, probe, top, need)
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


async def _between(store: AsyncEventStore, after: int, top: int, limit: int) -> list[Event]:
    return [
        event async for event in store.read_all(after=after, limit=limit) if event.position < top
    ]


RELATED_SHOWN = 100
"""The most correlated (and caused) events an event's page lists; the correlation's
own page lists them all, a page at a time."""


@dataclass(frozen=True, slots=True)
class Related:
    """The events that share an event's correlation id, and those it caused.

    ``more_correlated`` / ``more_caused``: the lists stop at :data:`RELATED_SHOWN`.
    """

    correlation_id: str | None
    causation_id: str | None
    correlated: list[Event]
    caused: list[Event]
    more_correlated: bool
    more_caused: bool


async def related(store: AsyncEventStore, event: Event, shown: int = RELATED_SHOWN) -> Related:
    """The events of the whole log that share ``event``'s correlation id, and those
    whose causation id is ``event``'s id: indexed reads, whatever the log's size."""
    correlation_id = _text(event.metadata.get("correlation_id"))
    causation_id = _text(event.metadata.get("causation_id"))
    correlated: list[Event] = []
    if correlation_id is not None:
        correlated = [
            e async for e in store.read_all(correlation_id=correlation_id, limit=shown + 1)
        ]
    caused = [e async for e in store.read_all(causation_id=str(event.id), limit=shown + 1)]
    return Related(
        correlation_id,
        causation_id,
        correlated[:shown],
        caused[:shown],
        len(correlated) > shown,
        len(caused) > shown,
    )


async def correlated_page(
    store: AsyncEventStore, correlation_id: str, after: int, limit: int
) -> tuple[list[Event], bool]:
    """A page of the events carrying ``correlation_id`` after a position; and whether
    more follow."""
    found = [
        e async for e in store.read_all(correlation_id=correlation_id, after=after, limit=limit + 1)
    ]
    return found[:limit], len(found) > limit


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
