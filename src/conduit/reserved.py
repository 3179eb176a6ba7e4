"""Names Conduit keeps for itself: the ``conduit.`` prefix, and its audit stream.

One small helper, shared by every part that writes to a reserved stream
(forgetting personal data, deleting and truncating streams): applications
cannot push new events to a ``conduit.`` stream; only the store does, through
its normal push path, and copies and imports carry recorded ones (events with
their recorded time) from store to store.
"""

from __future__ import annotations

from conduit.errors import InvalidEvent

__all__ = ["AUDIT_STREAM", "RESERVED_PREFIX", "is_reserved", "refuse_reserved"]

RESERVED_PREFIX = "conduit."
"""Stream ids and checkpoint names Conduit keeps for itself."""

AUDIT_STREAM = "conduit.audit"
"""The stream of the store's audit events: who forgot, deleted or truncated what, and when."""


def is_reserved(stream_id: object) -> bool:
    """Whether a stream id is one of Conduit's own (``conduit.…``)."""
    return isinstance(stream_id, str) and stream_id.startswith(RESERVED_PREFIX)


def refuse_reserved(stream_id: object) -> None:
    """Refuse a new event (one without a recorded time) for a reserved stream.

    Raises:
        InvalidEvent: naming ``stream_id``.
    """
    if is_reserved(stream_id):
        raise InvalidEvent(
            f"stream_id: {stream_id!r} is reserved: streams named {RESERVED_PREFIX}… are "
            "written by Conduit itself (its audit log)",
            field="stream_id",
        )
