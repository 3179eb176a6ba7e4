"""Conduit's errors: one tree, rooted at :class:`ConduitError`.

::

    ConduitError
    ├── InvalidArgument         a call's argument is unusable (a naive datetime,
    │   │                       a negative limit); nothing is read or written
    │   └── InvalidEvent        bad name, stream id, event id, data or metadata;
    │                           raised before anything is written
    ├── WrongExpectedVersion    the stream is not at the version the caller expected
    ├── EventDecodeError        a stored event no longer fits its registered class
    │                           (names the event id, the class and the field)
    ├── DuplicateEvent          an event id is already recorded, in another stream
    │                           or in another batch
    ├── ConfigurationError      an unknown or malformed store URL or option
    │   └── MissingDependency   an optional part is not installed; names the extra
    │                           to install (also an ImportError)
    ├── BackendError            the storage engine failed; the driver's error is
    │   │                       the ``__cause__``
    │   └── SchemaError         the store's schema is missing, older or newer than
    │                           this release; the message names the fix
    └── ProjectionError         a projection failed (subscriptions and read models)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConduitError",
    "ConfigurationError",
    "DuplicateEvent",
    "EventDecodeError",
    "InvalidArgument",
    "InvalidEvent",
    "MissingDependency",
    "ProjectionError",
    "SchemaError",
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


class WrongExpectedVersion(ConduitError):
    """The stream's version differs from the one the caller expected."""

    def __init__(self, stream_id: object, expected: int, actual: int) -> None:
        super().__init__(
            f"Wrong expected version: {expected} (stream: {stream_id}, stream version: {actual})"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


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


class DuplicateEvent(ConduitError):
    """An event id in the batch is already recorded, and not as this same batch."""

    def __init__(self, event_id: object, stream_id: object) -> None:
        super().__init__(
            f"Event id {event_id} is already recorded (pushed to stream: {stream_id}); "
            "event ids are unique in a store"
        )
        self.event_id = event_id
        self.stream_id = stream_id


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


class BackendError(ConduitError):
    """The storage engine failed; the driver's own error is ``__cause__``."""


class SchemaError(BackendError):
    """The store's schema is missing or at a version this release cannot use."""


class ProjectionError(ConduitError):
    """A projection or subscription failed."""
