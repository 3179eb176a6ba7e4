"""The JSON schemas of the API's bodies and answers (``components/schemas`` of its description)."""

from __future__ import annotations

from typing import Any

from conduit.web.api import MAX_APPEND
from conduit.web.params import MAX_INTEGER

__all__ = ["NAME_PATTERN", "SCHEMAS", "TEXT_PATTERN", "ref", "text"]

NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_]*$"
"""An event name, as :func:`conduit.events.event_name` accepts it."""
TEXT_PATTERN = "^[^\\u0000]*$"
"""Text without NUL characters, which no engine stores."""


def ref(name: str) -> dict[str, str]:
    """A reference to one of :data:`SCHEMAS`."""
    return {"$ref": f"#/components/schemas/{name}"}


def text(max_length: int, min_length: int = 0) -> dict[str, Any]:
    """Text of a bounded length, without NUL characters."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": TEXT_PATTERN}
    if min_length:
        schema["minLength"] = min_length
    return schema


SCHEMAS: dict[str, Any] = {
    "JsonObject": {
        "description": "A JSON object whose values come back equal from every engine: no NUL "
        "characters, integers within 64 bits, at most 100 levels deep.",
        "type": "object",
        "propertyNames": {"pattern": TEXT_PATTERN},
        "additionalProperties": ref("JsonValue"),
    },
    "JsonValue": {
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {
                "type": "number",
                "description": "Integers must fit in 64 bits (signed); JSON Schema cannot "
                "tell 1e300 (a float, accepted) from an integer written out (refused), so this "
                "rule lives here, in words.",
            },
            {"type": "string", "pattern": TEXT_PATTERN},
            {"type": "array", "items": ref("JsonValue")},
            ref("JsonObject"),
        ]
    },
    "Event": {
        "type": "object",
        "required": [
            "id",
            "stream_id",
            "name",
            "version",
            "position",
            "recorded_at",
            "data",
            "metadata",
            "tags",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "stream_id": {"type": "string"},
            "name": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "position": {"type": "integer", "minimum": 1},
            "recorded_at": {"type": "string", "format": "date-time"},
            "data": {"type": "object"},
            "metadata": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
    },
    "NewEvent": {
        "type": "object",
        "required": ["name", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 200},
            "data": ref("JsonObject"),
            "metadata": ref("JsonObject"),
            "id": {
                "type": "string",
                "format": "uuid",
                "description": "The event's id; pushing it again to the same stream is a no-op.",
            },
            "tags": {
                "type": "array",
                "items": text(256, 1),
                "maxItems": 64,
                "description": "Tags for queries and append conditions (docs/dcb.md).",
            },
        },
    },
    "Append": {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "expected_version": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": MAX_INTEGER,
                "description": "null: any; 0: the stream must not exist; n: its last version is n.",
            },
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_APPEND,
                "items": ref("NewEvent"),
            },
        },
    },
    "Events": {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {"events": {"type": "array", "items": ref("Event")}},
    },
    "Stream": {
        "type": "object",
        "required": ["stream_id", "version"],
        "additionalProperties": False,
        "properties": {
            "stream_id": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
        },
    },
    "StreamPage": {
        "type": "object",
        "required": ["streams", "next_after"],
        "additionalProperties": False,
        "properties": {
            "streams": {"type": "array", "items": ref("Stream")},
            "next_after": {
                "type": ["string", "null"],
                "description": "Give it as after for the next page; null on the last page.",
            },
        },
    },
    "StreamEvents": {
        "type": "object",
        "required": ["stream_id", "version", "events", "next_from_version"],
        "additionalProperties": False,
        "properties": {
            "stream_id": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "events": {"type": "array", "items": ref("Event")},
            "next_from_version": {
                "type": ["integer", "null"],
                "description": "Give it as from_version for the next page; null on the last.",
            },
        },
    },
    "LogPage": {
        "type": "object",
        "required": ["events", "next_after"],
        "additionalProperties": False,
        "properties": {
            "events": {"type": "array", "items": ref("Event")},
            "next_after": {
                "type": "integer",
                "minimum": 0,
                "description": "Give it as after to read on (or to poll for new events).",
            },
        },
    },
    "Projection": {
        "type": "object",
        "required": ["name", "checkpoint", "head", "behind", "behind_capped", "parked"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "partition": {
                "type": ["string", "null"],
                "description": "index/count for one partition of a partitioned projection "
                "(each has its own row, checkpoint and lag); null otherwise.",
            },
            "checkpoint": {"type": "integer", "minimum": 0},
            "head": {"type": "integer", "minimum": 0},
            "behind": {"type": "integer", "minimum": 0},
            "behind_capped": {
                "type": "boolean",
                "description": "The count stopped at 10,000: behind is at least that.",
            },
            "parked": {"type": "integer", "minimum": 0},
            "state": {
                "description": "What its driver last said it was doing (relays: relaying, "
                "retrying with the error as detail, stopped), and since when; null when "
                "none said. A driver that died says nothing more: read it with since.",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["state", "detail", "since"],
                        "additionalProperties": False,
                        "properties": {
                            "state": {"type": "string"},
                            "detail": {"type": ["string", "null"]},
                            "since": {"type": "string", "format": "date-time"},
                        },
                    },
                ],
            },
        },
    },
    "Projections": {
        "type": "object",
        "required": ["head_position", "projections"],
        "additionalProperties": False,
        "properties": {
            "head_position": {"type": "integer", "minimum": 0},
            "projections": {"type": "array", "items": ref("Projection")},
        },
    },
    "Parked": {
        "type": "object",
        "required": [
            "id",
            "subscription",
            "event_id",
            "position",
            "error",
            "traceback",
            "attempts",
            "parked_at",
            "retry_requested",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "subscription": {"type": "string"},
            "event_id": {"type": "string", "format": "uuid"},
            "position": {"type": "integer", "minimum": 1},
            "error": {"type": "string"},
            "traceback": {"type": "string"},
            "attempts": {"type": "integer", "minimum": 0},
            "parked_at": {"type": "string", "format": "date-time"},
            "retry_requested": {"type": "boolean"},
        },
    },
    "ParkedPage": {
        "type": "object",
        "required": ["parked", "next_after"],
        "additionalProperties": False,
        "properties": {
            "parked": {"type": "array", "items": ref("Parked")},
            "next_after": {"type": ["integer", "null"]},
        },
    },
    "Marked": {
        "type": "object",
        "required": ["marked"],
        "additionalProperties": False,
        "properties": {"marked": {"type": "integer", "minimum": 0}},
    },
    "Error": {
        "type": "object",
        "required": ["error", "message", "field"],
        "properties": {
            "error": {"type": "string", "description": "A code: not_found, invalid_event, …"},
            "message": {"type": "string"},
            "field": {
                "type": ["string", "null"],
                "description": "The parameter or body field at fault, such as events[0].data.",
            },
        },
    },
    "Conflict": {
        "allOf": [
            ref("Error"),
            {
                "type": "object",
                "properties": {
                    "stream_id": {"type": "string"},
                    "expected": {"type": "integer"},
                    "actual": {"type": "integer", "description": "The stream's version."},
                    "event_id": {"type": "string", "format": "uuid"},
                },
            },
        ]
    },
}
