"""Rebuilding an entity from its events."""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterable
from typing import TypeVar

from conduit.errors import ReplayError
from conduit.events import Event

__all__ = ["replay"]

T = TypeVar("T")


def replay(events: Event | Iterable[Event], onto: T) -> T:
    """Apply events, in order, to an object and return it.

    For each event, ``onto.apply_<name>(event)`` is called when it exists,
    else ``onto.on_<name>(event)``; when neither does, the event's data is
    assigned to the object's attributes (``setattr`` per key) — but never over
    a method, a property or another descriptor of its class, a callable
    attribute, or a name that starts with ``_``. An :class:`~conduit.Aggregate`
    follows its own rules instead: its ``apply_<name>`` methods get the typed
    payloads, and an event without one is an error.

    Raises:
        ReplayError: a data key that may not be assigned (nothing of that
            event is assigned), or an event an Aggregate cannot apply.
    """
    from conduit.aggregate import Aggregate

    if isinstance(events, Event):
        events = (events,)
    if isinstance(onto, Aggregate):
        onto._conduit_replay(events)
        return onto
    for event in events:
        method = getattr(onto, f"apply_{event.name}", None) or getattr(
            onto, f"on_{event.name}", None
        )
        if callable(method):
            method(event)
        else:
            _assign(onto, event)
    return onto


def _assign(onto: object, event: Event) -> None:
    """The seed's rule for events without a handler: data becomes attributes."""
    for key in event.data:
        reason = _refusal(onto, key)
        if reason is not None:
            cls = type(onto).__qualname__
            raise ReplayError(
                event.id,
                event.name,
                cls,
                f"its data key {key!r} {reason}; {cls} has no apply_{event.name} or "
                f"on_{event.name} method (a typo?), so the data would become attributes. "
                f"Define apply_{event.name}(event) to apply it",
                key=key,
            )
    for key, value in event.data.items():
        setattr(onto, key, value)


def _refusal(onto: object, key: str) -> str | None:
    """Why ``key`` may not be assigned from data, or None when it may."""
    if key.startswith("_"):
        return "is a private or special name"
    try:
        found = inspect.getattr_static(type(onto), key)
    except AttributeError:
        pass
    else:
        if isinstance(found, property):
            return "would overwrite a property"
        if not isinstance(found, types.MemberDescriptorType) and (
            callable(found) or hasattr(type(found), "__get__")
        ):
            return "would overwrite a method"
    own = getattr(onto, "__dict__", {})
    if callable(own.get(key)):
        return "would overwrite a callable attribute"
    return None
