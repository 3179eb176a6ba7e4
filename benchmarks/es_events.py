"""The domain event eventsourcing's reads decode into, for a like-with-like comparison.

Conduit's reads return decoded ``Event``s; eventsourcing's recorder returns
``StoredEvent``s with undecoded bytes. Its applications turn those into
domain events through ``Mapper.to_domain_event`` (the topic resolved to a
class, the state decoded by its ``JSONTranscoder``, the object built): the
benchmarks' eventsourcing contenders write the topic of :class:`PersonRegistered`
and decode every event they read through a mapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

__all__ = ["TOPIC", "PersonRegistered", "decoded"]


class PersonRegistered(DomainEvent):
    """The benchmarks' event, as an eventsourcing domain event."""


TOPIC = f"{__name__}:PersonRegistered"
"""The topic eventsourcing's contenders store (``module:class``, as its mapper resolves it)."""

_MAPPER: Mapper[Any] = Mapper(transcoder=JSONTranscoder())


def decoded(stored: Sequence[StoredEvent]) -> list[Any]:
    """The domain events of stored events, as an eventsourcing application builds them."""
    to_domain_event = _MAPPER.to_domain_event
    return [to_domain_event(event) for event in stored]
