"""Events as broker messages, and back: free of I/O, shared by every target and consumer.

A relayed event is one message: its body is the event as a JSON object
(``id``, ``stream_id``, ``name``, ``version``, ``position``, ``recorded_at``,
``data``, ``metadata``, ``tags`` (sorted), and ``stream_id_kind``, ``"uuid"`` or ``"text"``, so
that a consumer gets the stream id back in the type the writer used), and its
headers repeat the id, name, stream id and position for brokers' filters. The
subject (NATS), or the routing key and the Redis field ``subject``, comes from
a template over the stream id and the event's name.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from conduit.errors import InvalidArgument
from conduit.events import Event, make_event, uuid_from_text

__all__ = [
    "DEFAULT_SUBJECT",
    "HEADER_EVENT_ID",
    "HEADER_NAME",
    "HEADER_POSITION",
    "HEADER_STREAM_ID",
    "Message",
    "SubjectTemplate",
    "decode_event",
    "encode_event",
    "subject_token",
]

DEFAULT_SUBJECT = "conduit.{stream_id}"
"""The subject of a relayed event unless told otherwise: one per stream."""

HEADER_EVENT_ID = "Conduit-Event-Id"
HEADER_NAME = "Conduit-Event-Name"
HEADER_STREAM_ID = "Conduit-Stream-Id"
HEADER_POSITION = "Conduit-Position"

# A NATS subject token is any printable ASCII but ".", "*", ">" and whitespace;
# RabbitMQ and Redis take anything. Stream ids are escaped to such a token,
# reversibly: "%" and every other character outside this set as %XX of UTF-8.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-:=@+,;!~]")
_FIELDS = frozenset({"stream_id", "name", "category"})


@dataclass(frozen=True, slots=True)
class Message:
    """One event, encoded for a broker: where it goes and what it carries."""

    position: int
    subject: str
    body: bytes
    headers: Mapping[str, str]


def subject_token(text: str) -> str:
    """``text`` as one token of a NATS subject (``order.1`` -> ``order%2E1``), reversibly."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


class SubjectTemplate:
    """A subject made from an event: ``"conduit.{stream_id}"``, ``"app.{category}.{name}"``.

    ``{stream_id}`` is the stream id as one subject token (see
    :func:`subject_token`); ``{category}`` the part of it before its first
    ``-`` (``order-42`` -> ``order``), as in message-db; ``{name}`` the event's
    name. :attr:`wildcard` is the NATS subject filter that matches every
    subject the template can make (each field becomes ``*``).

    Raises:
        InvalidArgument: an unknown field, or a template NATS cannot use.
    """

    def __init__(self, template: str = DEFAULT_SUBJECT) -> None:
        if not isinstance(template, str) or not template:
            raise InvalidArgument("the subject template must be a non-empty string")
        fields = re.findall(r"{([^{}]*)}", template)
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise InvalidArgument(
                f"subject template {template!r}: unknown field(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_FIELDS))})",
                field="subject",
            )
        tokens = template.split(".")
        if any(not token or " " in token for token in tokens):
            raise InvalidArgument(
                f"subject template {template!r} is not a subject", field="subject"
            )
        self.template = template
        self.fields = frozenset(fields)
        self._known: dict[tuple[str, str], str] = {}  # recent subjects, by stream and name
        self.wildcard = ".".join(
            "*" if re.search(r"{[^{}]*}", token) else token for token in tokens
        )

    def __repr__(self) -> str:
        return f"SubjectTemplate({self.template!r})"

    def subject(self, event: Event) -> str:
        """The subject of ``event``."""
        stream = str(event.stream_id)
        key = (stream, event.name if "name" in self.fields else "")
        found = self._known.get(key)
        if found is not None:
            return found
        if len(self._known) >= 10_000:
            self._known.clear()
        subject = self._known[key] = self._make(stream, event.name)
        return subject

    def _make(self, stream: str, name: str) -> str:
        values = {}
        if "stream_id" in self.fields:
            values["stream_id"] = subject_token(stream)
        if "category" in self.fields:
            values["category"] = subject_token(stream.partition("-")[0])
        if "name" in self.fields:
            values["name"] = subject_token(name)
        return self.template.format_map(values)


def encode_event(event: Event, subject: SubjectTemplate) -> Message:
    """``event`` as a message (see the module docstring)."""
    stream = str(event.stream_id)
    event_id = str(event.id)
    body = orjson.dumps(
        {
            "id": event_id,
            "stream_id": stream,
            "stream_id_kind": "uuid" if type(event.stream_id) is uuid.UUID else "text",
            "name": event.name,
            "version": event.version,
            "position": event.position,
            "recorded_at": event.recorded_at,  # RFC 3339, as isoformat() writes it
            "data": event.data,
            "metadata": event.metadata,
            "tags": sorted(event.tags) if event.tags else [],
        }
    )
    position = str(event.position)
    headers = {
        HEADER_EVENT_ID: event_id,
        HEADER_NAME: event.name,
        HEADER_STREAM_ID: stream,
        HEADER_POSITION: position,
    }
    return Message(event.position, subject.subject(event), body, headers)


def decode_event(body: bytes | str) -> Event:
    """The event a relayed message carries.

    Raises:
        InvalidArgument: the body is not a relayed event.
    """
    try:
        fields: dict[str, Any] = orjson.loads(body)
        stream: Any = fields["stream_id"]
        if fields.get("stream_id_kind") == "uuid":
            stream = uuid_from_text(stream)
        return make_event(
            uuid.UUID(fields["id"]),
            stream,
            fields["name"],
            fields["data"],
            fields["metadata"],
            int(fields["version"]),
            int(fields["position"]),
            datetime.fromisoformat(fields["recorded_at"]),
            frozenset(fields.get("tags", ())),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"not a relayed Conduit event: {exc}") from None
