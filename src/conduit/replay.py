"""Rebuilding an entity from its events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from conduit.events import Event

__all__ = ["replay"]

T = TypeVar("T")


def replay(events: Event | Iterable[Event], onto: T) -> T:
    """Apply events, in order, to an object and return it.

    For each event, ``onto.apply_<name>(event)`` is called when it exists,
    else ``onto.on_<name>(event)``; when neither does, the event's data is
    assigned to the object's attributes (``setattr`` per key).
    """
    if isinstance(events, Event):
        events = (events,)
    for event in events:
        method = getattr(onto, f"apply_{event.name}", None) or getattr(
            onto, f"on_{event.name}", None
        )
        if callable(method):
            method(event)
        else:
            for key, value in event.data.items():
                setattr(onto, key, value)
    return onto
