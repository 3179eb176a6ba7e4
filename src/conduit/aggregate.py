"""A small aggregate helper: an entity whose methods record typed events.

::

    class Person(Aggregate):
        def __init__(self) -> None:
            self.name = ""

        def register(self, name: str) -> None:
            self.record(PersonRegistered(name))      # applies it, and queues it

        def apply_person_registered(self, event: PersonRegistered) -> None:
            self.name = event.name

    person = store.load(person_id, onto=Person)      # snapshot + later events
    person.register("Kris")
    store.save(person)                               # WrongExpectedVersion on a race

What ``apply_<event name>`` receives is always the typed object (the
payload), whether the event was just recorded or loaded from the store; so the
store that loads an aggregate must have its event classes registered
(``EventStore(url, types=[PersonRegistered, ...])``). Mistakes are loud, never
silently wrong state: a :class:`~conduit.errors.ReplayError`, naming the event
and the fix, when an event has no ``apply_<name>`` method (define one that does
nothing to ignore such events) or was read as a plain ``Event``, without a
payload (its class is not registered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from conduit.errors import InvalidEvent, ReplayError
from conduit.events import Event, StreamId, TypedEvent, new_id
from conduit.typed import is_typed, type_name

__all__ = ["Aggregate"]


class Aggregate:
    """Base class of entities saved with :meth:`EventStore.save`.

    Subclasses must be constructible without arguments (loading makes one).
    Class attributes: ``snapshot_version`` (change it when the state's shape
    changes, and older snapshots are ignored) and ``snapshot_every`` (take a
    snapshot every N events; else the store's ``snapshot_every``).
    """

    snapshot_version: ClassVar[int] = 1
    snapshot_every: ClassVar[int | None] = None

    _conduit_id: StreamId | None = None
    _conduit_version: int = 0
    _conduit_pending: tuple[object, ...] = ()

    @property
    def id(self) -> StreamId:
        """The entity's stream id (a new UUID for a new entity, unless set)."""
        if self._conduit_id is None:
            self._conduit_id = new_id()
        return self._conduit_id

    @id.setter
    def id(self, value: StreamId) -> None:
        self._conduit_id = value

    @property
    def version(self) -> int:
        """The version of the stream this entity was loaded or last saved at."""
        return self._conduit_version

    @property
    def pending_events(self) -> tuple[object, ...]:
        """Events recorded since the entity was loaded or saved, not yet pushed."""
        return self._conduit_pending

    def record(self, event: object) -> None:
        """Apply a typed event to this entity and queue it for :meth:`EventStore.save`.

        Raises:
            InvalidEvent: ``event`` is not a typed event (a dataclass or
                pydantic model instance).
            ReplayError: the entity has no ``apply_<name>`` method for it;
                nothing is queued.
        """
        if not is_typed(event):
            raise InvalidEvent(
                f"record() takes a typed event (a dataclass or pydantic model), not "
                f"{type(event).__name__}",
                field="event",
            )
        name = type_name(type(event))
        self._conduit_handler(name, None)(event)
        self._conduit_pending = (*self._conduit_pending, event)

    def _conduit_handler(self, name: str, event_id: object) -> Callable[[Any], object]:
        method = getattr(self, f"apply_{name}", None)
        if not callable(method):
            cls = type(self).__qualname__
            raise ReplayError(
                event_id,
                name,
                cls,
                f"{cls} has no apply_{name} method; define one (one that does nothing, to "
                "ignore these events)",
            )
        return method  # type: ignore[no-any-return]

    def _conduit_loaded(self, stream_id: StreamId, version: int) -> None:
        self._conduit_id = stream_id
        self._conduit_version = version
        self._conduit_pending = ()

    def _conduit_replay(self, events: Iterable[Event]) -> None:
        for event in events:
            apply = self._conduit_handler(event.name, event.id)
            if not isinstance(event, TypedEvent):
                raise ReplayError(
                    event.id,
                    event.name,
                    type(self).__qualname__,
                    f"apply_{event.name} takes the typed payload, but the event was read "
                    f"as a plain Event: no class is registered for {event.name!r}; register "
                    "it with the store that loads the entity (EventStore(url, types=[...]))",
                )
            apply(event.payload)
            self._conduit_version = event.version

    def _conduit_saved(self, version: int) -> None:
        self._conduit_version = version
        self._conduit_pending = ()
