"""Streams over the years: deletion, truncation, limits and scavenging (the values).

What a store keeps about a stream beside its events (:class:`StreamMetadata`),
what one pass of the scavenger did (:class:`ScavengeReport`), and the reserved
stream where every removal is recorded (:data:`AUDIT_STREAM`). The operations
themselves are ``EventStore.delete_stream``, ``truncate_stream``,
``set_stream_metadata``, ``stream_metadata`` and ``scavenge``; see
docs/lifecycle.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from conduit.events import StreamId

__all__ = [
    "AUDIT_STREAM",
    "DELETED",
    "RESERVED_STREAM_PREFIX",
    "SCAVENGE_CHECKPOINT",
    "ScavengeBatch",
    "ScavengeReport",
    "StreamMetadata",
]

RESERVED_STREAM_PREFIX = "conduit."
"""Streams Conduit keeps for itself: none can be deleted, truncated or limited, and
the store-wide retention never expires their events."""

AUDIT_STREAM = "conduit.audit"
"""Where every deletion, truncation, change of limits and scavenge is recorded, as an
event (``stream_deleted``, ``stream_truncated``, ``stream_metadata_set``,
``events_scavenged``) whose data says what and whose metadata says who."""

SCAVENGE_CHECKPOINT = "conduit.scavenge"
"""The checkpoint where an interrupted scavenge keeps its place (0: none under way)."""

DELETED = {0: None, 1: "soft", 2: "hard"}
"""How engines store a stream's deletion (its ``deleted`` column), and what it means."""

Deletion = Literal["soft", "hard"]


@dataclass(frozen=True, slots=True)
class StreamMetadata:
    """What the store keeps about a stream beside its events.

    ``version`` is the version of its last event (a push continues after it,
    even after a soft delete). ``deleted``: ``None``, ``"soft"`` (hidden until
    its next push) or ``"hard"`` (a tombstone, for ever). Reads of the stream
    return no event of a version below ``truncated_before``, none beyond the
    ``max_count`` last ones, and none older than ``max_age``.
    """

    stream_id: StreamId
    version: int
    deleted: Deletion | None = None
    truncated_before: int = 0
    max_age: timedelta | None = None
    max_count: int | None = None

    @property
    def first_visible(self) -> int:
        """The lowest version a read may return (before ``max_age`` is applied)."""
        first = max(1, self.truncated_before)
        if self.max_count is not None:
            first = max(first, self.version - self.max_count + 1)
        return first


@dataclass(frozen=True, slots=True)
class ScavengeBatch:
    """What one batch of the scavenger did: the log examined up to ``last_position``
    (``examined`` events), of which ``removed`` were removed for good."""

    last_position: int
    examined: int
    removed: int
    held: float = 0.0
    """Seconds the batch held the engine's writer (SQLite) or its rows (PostgreSQL),
    waiting for it excluded."""


@dataclass(frozen=True, slots=True)
class ScavengeReport:
    """What :meth:`conduit.EventStore.scavenge` did, over every batch of its pass."""

    examined: int
    removed: int
    last_position: int
    finished: bool
    """False when the pass stopped early (``max_batches``): the next one resumes."""
    started_at: datetime
    finished_at: datetime
