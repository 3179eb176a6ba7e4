"""Conduit: an event store for Python.

Record what happened to your entities as events, read them back, rebuild
entities from them, and keep read models up to date. One API over three
engines: memory (the default), SQLite and PostgreSQL.
"""

from conduit.aggregate import Aggregate
from conduit.async_store import AsyncEventStore
from conduit.backends.base import Backend
from conduit.dcb import AppendCondition, Query, QueryItem
from conduit.errors import (
    AppendConditionFailed,
    BackendError,
    ConduitError,
    ConfigurationError,
    Conflict,
    DuplicateEvent,
    EventDecodeError,
    InvalidArgument,
    InvalidEvent,
    MissingDependency,
    ProjectionError,
    ReplayError,
    SchemaError,
    StoreUnavailable,
    StreamDeleted,
    SubjectForgotten,
    WrongExpectedVersion,
)
from conduit.events import Event, StreamId, StreamInfo, TypedEvent, new_id
from conduit.lifecycle import ScavengeReport, StreamMetadata
from conduit.personal import FORGOTTEN, Forgotten, PersonalData, SubjectKey, personal
from conduit.replay import replay
from conduit.snapshots import SnapshotWarning
from conduit.store import EventStore, PendingEvent
from conduit.typed import TypeRegistry
from conduit.upcasting import Upcasters

__all__ = [
    "FORGOTTEN",
    "Aggregate",
    "AppendCondition",
    "AppendConditionFailed",
    "AsyncEventStore",
    "Backend",
    "BackendError",
    "ConduitError",
    "ConfigurationError",
    "Conflict",
    "DuplicateEvent",
    "Event",
    "EventDecodeError",
    "EventStore",
    "Forgotten",
    "InvalidArgument",
    "InvalidEvent",
    "MissingDependency",
    "PendingEvent",
    "PersonalData",
    "ProjectionError",
    "Query",
    "QueryItem",
    "ReplayError",
    "ScavengeReport",
    "SchemaError",
    "SnapshotWarning",
    "StoreUnavailable",
    "StreamDeleted",
    "StreamId",
    "StreamInfo",
    "StreamMetadata",
    "SubjectForgotten",
    "SubjectKey",
    "TypeRegistry",
    "TypedEvent",
    "Upcasters",
    "WrongExpectedVersion",
    "new_id",
    "personal",
    "replay",
]

__version__ = "0.1.0"
