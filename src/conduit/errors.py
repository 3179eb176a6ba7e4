"""Conduit's errors: one tree, rooted at :class:`ConduitError`.

::

    ConduitError
    ├── InvalidArgument         a call's argument is unusable (a naive datetime,
    │   │  (also ValueError)    a negative limit, a bad expected_version); nothing
    │   │                       is read or written
    │   └── InvalidEvent        bad name, stream id, event id, data or metadata of
    │                           an event; raised before anything is written
    ├── Conflict                the store's state refuses the write (another
    │   │                       writer came first); nothing is written
    │   ├── WrongExpectedVersion    a stream is not at the version the caller
    │   │                           expected (``conflicts`` names every one)
    │   ├── AppendConditionFailed   an event matching the append's condition was
    │   │                           recorded after its ``after`` position
    │   ├── DuplicateEvent      an event id is already recorded, in another stream,
    │   │                       in another batch or with other content
    │   ├── SubjectForgotten    personal data of a subject the store forgot
    │   │                       (``store.forget``) cannot be recorded again
    │   └── StreamDeleted       the stream was deleted for good (``hard=True``): its
    │                           id is a tombstone, nothing can be written to it
    ├── EventDecodeError        a stored event no longer fits its registered class
    │                           (names the event id, the class and the field)
    ├── ReplayError             an event cannot be applied to an entity (no
    │                           apply method, no payload, or a data key that would
    │                           overwrite a method); names the event and the fix
    ├── ConfigurationError      an unknown or malformed store URL or option
    │   │  (also ValueError)
    │   └── MissingDependency   an optional part is not installed; names the extra
    │                           to install (also an ImportError)
    ├── BackendError            the storage engine failed; the driver's error is
    │   │                       the ``__cause__``
    │   ├── SchemaError         the store's schema is missing, older or newer than
    │   │                       this release; the message names the fix
    │   └── StoreUnavailable    the engine's server cannot be reached (restarting,
    │                           failing over): retry later, a push with the same
    │                           event ids
    └── ProjectionError         a projection failed (subscriptions and read models)

The caller's mistakes (``InvalidArgument``) are ``ValueError``s; a
``Conflict`` is not a mistake but a race, to be resolved by reloading and
trying again (or, for a ``DuplicateEvent``, by choosing new ids).
"""

from __future__ import annotations

__all__ = [
    "AppendConditionFailed",
    "BackendError",
    "ConduitError",
    "ConfigurationError",
    "Conflict",
    "DuplicateEvent",
    "EventDecodeError",
    "InvalidArgument",
    "InvalidEvent",
    "MissingDependency",
    "ProjectionError",
    "ReplayError",
    "SchemaError",
    "StoreUnavailable",
    "StreamDeleted",
    "SubjectForgotten",
    "WrongExpectedVersion",
]


class ConduitError(Exception):
    """The root of every error Conduit raises on purpose."""


class InvalidArgument(ConduitError, ValueError):
    """An argument Conduit cannot use; ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidEvent(InvalidArgument):
    """An event was refused before anything was written.

    ``field`` names the part at fault, for example ``data['address']['zip']``
    or ``name``.
    """


class Conflict(ConduitError):
    """The store's state refuses a write that was valid in itself; nothing was written.

    Another writer came first (:class:`WrongExpectedVersion`), or an event id
    is taken (:class:`DuplicateEvent`). Reload and decide again.
    """


class WrongExpectedVersion(Conflict):
    """A stream's version differs from the one the caller expected.

    ``stream_id``, ``expected`` and ``actual`` are those of the first stream
    that failed; ``conflicts`` holds ``(stream_id, expected, actual)`` for every
    stream of the call that failed (a multi-stream ``push_many`` checks them
    all), the first one included.
    """

    def __init__(
        self,
        stream_id: object,
        expected: int,
        actual: int,
        *,
        conflicts: tuple[tuple[object, int, int], ...] | None = None,
    ) -> None:
        found = conflicts or ((stream_id, expected, actual),)
        message = "; ".join(
            f"Wrong expected version: {e} (stream: {s}, stream version: {a})" for s, e, a in found
        )
        super().__init__(message)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        self.conflicts = found

    @classmethod
    def of(cls, conflicts: list[tuple[object, int, int]]) -> WrongExpectedVersion:
        """The error naming every stream of ``conflicts`` (at least one)."""
        stream_id, expected, actual = conflicts[0]
        return cls(stream_id, expected, actual, conflicts=tuple(conflicts))


class AppendConditionFailed(Conflict):
    """An event matching an append's condition (``fail_if_events_match``) was
    recorded after the condition's ``after`` position; nothing was written.

    ``position`` is the position of the first such event. Read the query's
    matches again, decide again, and append with the new position.
    """

    def __init__(self, position: int, after: int | None) -> None:
        since = "in the store" if after is None else f"after position {after}"
        super().__init__(
            f"Append condition failed: an event matching the condition is recorded {since}"
            f" (first at position {position})"
        )
        self.position = position
        self.after = after


class EventDecodeError(ConduitError):
    """A stored event does not fit the class registered for its name.

    Raised on read, instead of returning a half-built object: the stored data
    (after upcasting) lacks a field, holds a value of another type, or was
    written at a schema version no upcaster leads from.
    """

    def __init__(
        self, event_id: object, name: str, class_name: str, field: str | None, reason: str
    ) -> None:
        where = f"field {field!r}: " if field else ""
        super().__init__(f"Event {event_id} ({name}) does not fit {class_name}: {where}{reason}")
        self.event_id = event_id
        self.name = name
        self.class_name = class_name
        self.field = field
        self.reason = reason


class DuplicateEvent(Conflict):
    """An event id in the batch is already recorded, and not as this same batch.

    ``reason`` says how a retry differs from what is recorded (another name,
    data or metadata, another order) when the id is recorded in this stream;
    ``None`` when it is recorded in another stream, or twice in one batch.
    """

    def __init__(self, event_id: object, stream_id: object, *, reason: str | None = None) -> None:
        how = "" if reason is None else f" {reason}"
        super().__init__(
            f"Event id {event_id} is already recorded (pushed to stream: {stream_id}){how}; "
            "event ids are unique in a store, and only a retry of the same batch, "
            "unchanged, returns the recorded events"
        )
        self.event_id = event_id
        self.stream_id = stream_id
        self.reason = reason


class StreamDeleted(Conflict):
    """The stream was deleted with ``hard=True``: its id stays a tombstone, forever.

    A push, a truncation, new stream metadata or another deletion of it raises
    this; nothing is written. ``stream_id`` names the stream.
    """

    def __init__(self, stream_id: object) -> None:
        super().__init__(
            f"Stream {stream_id} is deleted (hard): its id is a tombstone and takes no more events"
        )
        self.stream_id = stream_id


class ReplayError(ConduitError):
    """An event cannot be applied to an entity; nothing of it was applied.

    ``event_id`` and ``name`` name the event, ``entity`` the entity's class,
    ``key`` the data key at fault (when a key is), and ``reason`` says what is
    wrong and how to fix it.
    """

    def __init__(
        self, event_id: object, name: str, entity: str, reason: str, *, key: str | None = None
    ) -> None:
        super().__init__(f"Cannot apply event {event_id} ({name}) to {entity}: {reason}")
        self.event_id = event_id
        self.name = name
        self.entity = entity
        self.key = key
        self.reason = reason


class ConfigurationError(ConduitError, ValueError):
    """A store URL or option that Conduit cannot use."""


class MissingDependency(ConfigurationError, ImportError):
    """A part of Conduit needs a package that is not installed.

    ``module`` is the missing module and ``extra`` the extra that brings it
    (``pip install 'conduit-eventstore[extra]'``). It is also an
    :class:`ImportError`, as a failed import would be.
    """

    def __init__(self, feature: str, module: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs {module}, which is not installed: "
            f"pip install 'conduit-eventstore[{extra}]'"
        )
        self.feature = feature
        self.module = module
        self.name = module  # as ImportError.name: the module that could not be imported
        self.extra = extra


class SubjectForgotten(Conflict):
    """A push carries personal data of a subject whose key was destroyed (``store.forget``).

    Forgetting is for good: the store refuses to record new personal data of
    that subject (``subject`` names it), and nothing of the push is written.
    """

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"subject {subject!r} was forgotten (store.forget): its personal data cannot be "
            "recorded again"
        )
        self.subject = subject


class BackendError(ConduitError):
    """The storage engine failed; the driver's own error is ``__cause__``."""


class SchemaError(BackendError):
    """The store's schema is missing or at a version this release cannot use."""


class StoreUnavailable(BackendError):
    """The store's server cannot be reached: it is down, restarting, or failing over
    to a standby.

    A push that raised it may or may not have been recorded: retry it with the
    same event ids (the retry returns the recorded events, never duplicates).
    The store reconnects by itself once the server (or the new primary) answers.
    """


class ProjectionError(ConduitError):
    """A projection or subscription failed."""
