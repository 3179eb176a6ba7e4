"""What the API answers: events, streams, parked events and statuses as JSON values."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

from conduit.events import Event, ParkedEvent, StreamInfo
from conduit.subscriptions.drivers import SubscriptionStatus

__all__ = [
    "event_json",
    "parked_json",
    "pretty",
    "status_json",
    "stream_json",
    "timestamp",
]


def timestamp(moment: datetime) -> str:
    """An aware time as ISO 8601 in UTC, with microseconds: ``2024-05-01T12:00:00.000000Z``."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_json(event: Event) -> dict[str, Any]:
    """An event as the API returns it."""
    return {
        "id": str(event.id),
        "stream_id": str(event.stream_id),
        "name": event.name,
        "version": event.version,
        "position": event.position,
        "recorded_at": timestamp(event.recorded_at),
        "data": event.data,
        "metadata": event.metadata,
        "tags": sorted(event.tags),
    }


def stream_json(stream: StreamInfo) -> dict[str, Any]:
    """A stream and its version."""
    return {"stream_id": str(stream.stream_id), "version": stream.version}


def parked_json(parked: ParkedEvent) -> dict[str, Any]:
    """A parked event, with its error."""
    return {
        "id": parked.id,
        "subscription": parked.subscription,
        "event_id": str(parked.event_id),
        "position": parked.position,
        "error": parked.error,
        "traceback": parked.traceback,
        "attempts": parked.attempts,
        "parked_at": timestamp(parked.parked_at),
        "retry_requested": parked.retry_requested,
    }


def status_json(status: SubscriptionStatus, parked: int) -> dict[str, Any]:
    """A subscription's checkpoint, the log's head, its lag and its parked events."""
    return {
        "name": status.name,
        "partition": status.partition,
        "checkpoint": status.checkpoint,
        "head": status.head,
        "behind": status.behind,
        "behind_capped": status.capped,
        "parked": parked,
        "state": None if status.state is None else status.state.record(),
    }


def pretty(value: object) -> str:
    """JSON for people: indented, non-ASCII kept; plain text, escaped by the templates.

    orjson writes the same text as ``json.dumps(indent=2, ensure_ascii=False)``
    some 20 times faster (the stdlib's indenting encoder is pure Python: 6 ms of
    a stream page's 50 events); values it refuses (integers past 64 bits) go
    through the stdlib.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
