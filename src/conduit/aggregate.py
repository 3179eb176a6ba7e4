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

``apply_<event name>`` receives the typed object (the payload): register the
event classes with the store so that loading gives them back typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from conduit.errors import InvalidEvent
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
        """
        if not is_typed(event):
            raise InvalidEvent(
                f"record() takes a typed event (a dataclass or pydantic model), not "
                f"{type(event).__name__}",
                field="event",
            )
        self._conduit_apply(type_name(type(event)), event)
        self._conduit_pending = (*self._conduit_pending, event)

    def _conduit_apply(self, name: str, payload: Any) -> None:
        method = getattr(self, f"apply_{name}", None)
        if callable(method):
            method(payload)

    def _conduit_loaded(self, stream_id: StreamId, version: int) -> None:
        self._conduit_id = stream_id
        self._conduit_version = version
        self._conduit_pending = ()

    def _conduit_replay(self, events: Iterable[Event]) -> None:
        for event in events:
            payload = event.payload if isinstance(event, TypedEvent) else event
            self._conduit_apply(event.name, payload)
            self._conduit_version = event.version

    def _conduit_saved(self, version: int) -> None:
        self._conduit_version = version
        self._conduit_pending = ()
