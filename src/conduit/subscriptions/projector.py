"""How a subscription applies events and keeps its checkpoint: the Projector role.

A projector applies a batch of events in order and moves its checkpoint past
them, from the checkpoint its driver loaded (compare-and-set). Its ``*_op``
methods return operations (:mod:`conduit.core.effects`), so that one projector runs
under both faces. :class:`StoreProjector` keeps the checkpoint in the event
store's own database (at-least-once: a crash between a handler and the
checkpoint replays the batch); SQL read models (:mod:`conduit.projections`)
keep it in the read-model database, in the same transaction as their rows
(exactly once).

A projector written against the earlier, plain-method form (``load_checkpoint()``
returning an int, ``apply(events, up_to)``, ``apply_parked(event)``) keeps
working: :func:`projector_of` adapts it (its methods run as blocking calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from conduit.core.effects import Blocking, Call, Op
from conduit.errors import ProjectionError
from conduit.events import Event
from conduit.subscriptions.dispatch import handlers_for

__all__ = [
    "CheckpointConflict",
    "HandlerFailed",
    "Projector",
    "StoreProjector",
    "is_projector",
    "is_transient",
    "projector_of",
]


class HandlerFailed(Exception):
    """A handler raised on ``events[index]``; the events before it are applied, and
    the checkpoint is past them."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"handler failed on event #{index}: {error!r}")
        self.index = index
        self.error = error


class CheckpointConflict(ProjectionError):
    """Another driver moved the checkpoint: this one's batch was not kept."""


@runtime_checkable
class Projector(Protocol):
    """Applies events for one named subscription and keeps its checkpoint."""

    name: str

    def is_transient(self, error: BaseException) -> bool:
        """True when ``error`` means the projection's storage is away: retry, never park."""
        ...

    def load_checkpoint_op(self) -> Op[int | None]:
        """The position handled up to (``None`` when it never ran)."""
        ...

    def apply_op(self, events: Sequence[Event], up_to: int, expected: int | None) -> Op[None]:
        """Apply ``events`` in order, then move the checkpoint from ``expected`` (what the
        driver loaded) to ``up_to``.

        Raises:
            HandlerFailed: a handler raised on ``events[index]``; the events
                before it are applied and the checkpoint is past them.
            CheckpointConflict: another driver moved the checkpoint meanwhile.
        """
        ...

    def apply_parked_op(self, event: Event) -> Op[None]:
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


_OPERATIONS = ("load_checkpoint_op", "apply_op", "apply_parked_op")
_PLAIN = ("load_checkpoint", "apply", "apply_parked")


def is_projector(listener: object) -> bool:
    """Whether ``listener`` keeps its own checkpoint (a projector), in either form."""
    return any(
        all(callable(getattr(listener, method, None)) for method in methods)
        for methods in (_OPERATIONS, _PLAIN)
    )


def projector_of(listener: object) -> Projector:
    """``listener`` as a :class:`Projector`: itself, or adapted from the plain-method form
    (``load_checkpoint()``, ``apply(events, up_to)``, ``apply_parked(event)``)."""
    if all(callable(getattr(listener, method, None)) for method in _OPERATIONS):
        return listener  # type: ignore[return-value]
    return _PlainProjector(listener)


class StoreProjector:
    """Any object with ``on_<name>(event)`` handlers (``async def`` ones under
    ``AsyncEventStore``); its checkpoint in the store.

    Args:
        engine: the store's engine (whose methods return operations).
        name: the subscription's name.
        target: the object whose handlers are called.
    """

    def __init__(self, engine: Any, name: str, target: object) -> None:
        self.engine = engine
        self.name = name
        self.target = target

    def is_transient(self, error: BaseException) -> bool:
        """Never: the store's own failures are the driver's to retry (``BackendError``)."""
        return False

    def load_checkpoint_op(self) -> Op[int | None]:
        """The checkpoint kept in the store under the subscription's name."""
        found: int | None = yield from self.engine.load_checkpoint(self.name)
        return found

    def apply_op(self, events: Sequence[Event], up_to: int, expected: int | None) -> Op[None]:
        """Call the handlers of each event, then move the checkpoint (compare-and-set)."""
        target = self.target
        for index, event in enumerate(events):
            try:
                for handler in handlers_for(target, event.name):
                    yield Call(handler, event)
            except Exception as exc:
                if index:
                    yield from self._save(events[index - 1].position, expected)
                raise HandlerFailed(index, exc) from exc
        yield from self._save(up_to, expected)

    def apply_parked_op(self, event: Event) -> Op[None]:
        """Call the handlers of one parked event."""
        for handler in handlers_for(self.target, event.name):
            yield Call(handler, event)

    def _save(self, position: int, expected: int | None) -> Op[None]:
        if expected is not None and position <= expected:
            return
        moved = yield from self.engine.save_checkpoint(self.name, position, expected=expected)
        if not moved:
            raise CheckpointConflict(
                f"subscription {self.name!r}: another driver moved the checkpoint"
            )


class _PlainProjector:
    """A projector of the plain-method form, offered as operations.

    It keeps its own baseline for the compare-and-set (its earlier contract):
    ``expected`` is not passed on.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self.name: str = target.name

    def is_transient(self, error: BaseException) -> bool:
        return is_transient(self.target, error)

    def load_checkpoint_op(self) -> Op[int | None]:
        found = yield Blocking(self.target.load_checkpoint)
        return int(found) if found else None

    def apply_op(self, events: Sequence[Event], up_to: int, expected: int | None) -> Op[None]:
        yield Blocking(self.target.apply, events, up_to)

    def apply_parked_op(self, event: Event) -> Op[None]:
        yield Blocking(self.target.apply_parked, event)
