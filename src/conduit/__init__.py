"""Conduit: an event store for Python.

Record what happened to your entities as events, read them back, rebuild
entities from them, and keep read models up to date. One API over three
engines: memory (the default), SQLite and PostgreSQL.
"""

from conduit.backends.base import Backend
from conduit.errors import (
    BackendError,
    ConduitError,
    ConfigurationError,
    DuplicateEvent,
    InvalidArgument,
    InvalidEvent,
    ProjectionError,
    SchemaError,
    WrongExpectedVersion,
)
from conduit.events import Event, StreamId, StreamInfo, new_id
from conduit.replay import replay
from conduit.store import EventStore, PendingEvent

__all__ = [
    "Backend",
    "BackendError",
    "ConduitError",
    "ConfigurationError",
    "DuplicateEvent",
    "Event",
    "EventStore",
    "InvalidArgument",
    "InvalidEvent",
    "PendingEvent",
    "ProjectionError",
    "SchemaError",
    "StreamId",
    "StreamInfo",
    "WrongExpectedVersion",
    "new_id",
    "replay",
]

__version__ = "0.1.0"
