"""Dispatch by event name: ``on_<name>(event)``, then ``on_event(event)``.

Pure of I/O, so that every driver (inline, background, worker, asyncio)
shares it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from conduit.core.effects import Call, Op
from conduit.events import Event

__all__ = ["deliver", "handlers_for"]

log = logging.getLogger("conduit.subscriptions")

Handler = Callable[..., Any]


def handlers_for(listener: object, name: str) -> list[Handler]:
    """The listener's handlers for an event name: ``on_<name>``, then ``on_event``."""
    found: list[Handler] = []
    specific = getattr(listener, f"on_{name}", None)
    if callable(specific):
        found.append(specific)
    catch_all = getattr(listener, "on_event", None)
    if callable(catch_all):
        found.append(catch_all)
    return found


def deliver(listeners: Iterable[object], events: Iterable[Event]) -> Op[None]:
    """Call every listener's handlers for each event, in order: an operation (see
    :mod:`conduit.core.effects`), so that handlers may be ``async def`` under
    ``AsyncEventStore``.

    A handler that raises is logged with the event's id and name; it stops
    neither the other handlers nor the following events.
    """
    for event in events:
        for listener in listeners:
            for handler in handlers_for(listener, event.name):
                try:
                    yield Call(handler, event)
                except Exception:
                    log.exception(
                        "listener %r failed on event %s (%s, stream %s, version %d)",
                        listener,
                        event.id,
                        event.name,
                        event.stream_id,
                        event.version,
                    )
