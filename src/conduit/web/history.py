"""The global log read backwards, and the events around one event, through the public API.

The browser wants the newest events first: :func:`events_before` reads the
log backwards (``read_all(before=..., backwards=True)``), one indexed range
read down from a position, whatever the size of the log.
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
    found = [e async for e in store.read_all(before=before, backwards=True, limit=limit)]
    found.reverse()
    return found


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
