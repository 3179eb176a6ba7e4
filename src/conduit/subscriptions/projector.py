"""How a subscription applies events and keeps its checkpoint: the Projector role.

A projector applies a batch of events in order and moves its checkpoint past
them. :class:`StoreProjector` keeps the checkpoint in the event store's own
database (at-least-once: a crash between a handler and the checkpoint replays
the batch); SQL read models (:mod:`conduit.projections`) keep it in the
read-model database, in the same transaction as their rows (exactly once).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from conduit.backends.base import Backend
from conduit.errors import ProjectionError
from conduit.events import Event
from conduit.subscriptions.dispatch import handlers_for

__all__ = [
    "CheckpointBaseline",
    "CheckpointConflict",
    "HandlerFailed",
    "Projector",
    "StoreProjector",
    "is_transient",
]


class HandlerFailed(Exception):
    """A handler raised on ``events[index]``; the events before it are applied."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"handler failed on event #{index}: {error!r}")
        self.index = index
        self.error = error


class CheckpointConflict(ProjectionError):
    """Another driver moved the checkpoint: this one's batch was not kept."""


class Projector(Protocol):
    """Applies events for one named subscription and keeps its checkpoint."""

    name: str

    def is_transient(self, error: BaseException) -> bool:
        """True when ``error`` means the projection's storage is away: retry, never park."""
        ...

    def load_checkpoint(self) -> int:
        """The position handled up to (0 when never run)."""
        ...

    def apply(self, events: Sequence[Event], up_to: int) -> None:
        """Apply ``events`` in order, then move the checkpoint to ``up_to``.

        Raises:
            HandlerFailed: a handler raised on ``events[index]``; the events
                before it are applied and the checkpoint is past them.
            CheckpointConflict: another driver moved the checkpoint meanwhile.
        """
        ...

    def apply_parked(self, event: Event) -> None:
        """Apply one parked event out of order (a retry asked for by a user)."""
        ...


def is_transient(projector: object, error: BaseException) -> bool:
    """Whether ``error`` means ``projector``'s storage is away (retry, never park).

    Asks the projector's ``is_transient``; a projector written before it
    existed is asked through its ``transient_errors`` classes.
    """
    check = getattr(projector, "is_transient", None)
    if callable(check):
        return bool(check(error))
    return isinstance(error, getattr(projector, "transient_errors", ()))


class CheckpointBaseline:
    """The checkpoint a projector's thread loaded: the one its next batch moves from.

    Kept per thread, so that a thread that only looks (``wait_for``, status)
    never changes the baseline of the driver's batch in flight.
    """

    _baseline: threading.local

    @property
    def _known(self) -> int | None:
        known: int | None = getattr(self._thread_baseline(), "known", None)
        return known

    @_known.setter
    def _known(self, value: int | None) -> None:
        self._thread_baseline().known = value

    def _thread_baseline(self) -> threading.local:
        try:
            return self._baseline
        except AttributeError:
            self._baseline = threading.local()
            return self._baseline


class StoreProjector(CheckpointBaseline):
    """Any object with ``on_<name>(event)`` handlers; its checkpoint in the store."""

    def __init__(self, backend: Backend, name: str, target: object) -> None:
        self.backend = backend
        self.name = name
        self.target = target

    def is_transient(self, error: BaseException) -> bool:
        """Never: the store's own failures are the driver's to retry (``BackendError``)."""
        return False

    def load_checkpoint(self) -> int:
        self._known = self.backend.load_checkpoint(self.name)
        return self._known or 0

    def apply(self, events: Sequence[Event], up_to: int) -> None:
        for index, event in enumerate(events):
            try:
                for handler in handlers_for(self.target, event.name):
                    handler(event)
            except Exception as exc:
                if index:
                    self._save(events[index - 1].position)
                raise HandlerFailed(index, exc) from exc
        self._save(up_to)

    def apply_parked(self, event: Event) -> None:
        for handler in handlers_for(self.target, event.name):
            handler(event)

    def _save(self, position: int) -> None:
        if self._known is not None and position <= self._known:
            return
        if not self.backend.save_checkpoint(self.name, position, expected=self._known):
            raise CheckpointConflict(
                f"subscription {self.name!r}: another driver moved the checkpoint"
            )
        self._known = position
