"""Events as relayed messages, and back: the encoding every target shares (no broker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from conduit.errors import InvalidArgument
from conduit.events import Event, make_event
from conduit.relay import SubjectTemplate, decode_event
from conduit.relay.messages import encode_event, subject_token


def _event(stream_id: str | uuid.UUID = "order-7", **fields: object) -> Event:
    return make_event(
        uuid.uuid4(),
        stream_id,
        str(fields.get("name", "order_paid")),
        {"amount": 1.5, "items": [1, "x", None]},
        {"user": "kris"},
        3,
        42,
        datetime(2026, 12, 2, 5, 40, 0, 123456, tzinfo=UTC),
        frozenset(fields.get("tags", ())),  # type: ignore[call-overload]
    )


def test_an_event_comes_back_equal_from_its_message_uuid_stream_and_tags_included() -> None:
    for event in (_event(), _event(uuid.uuid4(), tags={"region:eu", "vip"})):
        message = encode_event(event, SubjectTemplate())
        back = decode_event(message.body)
        assert back == event
        assert type(back.stream_id) is type(event.stream_id)


def test_headers_carry_the_id_name_stream_and_position() -> None:
    event = _event()
    message = encode_event(event, SubjectTemplate())
    assert message.position == 42
    assert dict(message.headers) == {
        "Conduit-Event-Id": str(event.id),
        "Conduit-Event-Name": "order_paid",
        "Conduit-Stream-Id": "order-7",
        "Conduit-Position": "42",
    }


def test_subjects_come_from_the_stream_id_its_category_and_the_name() -> None:
    event = _event("order-7")
    assert SubjectTemplate().subject(event) == "conduit.order-7"
    template = SubjectTemplate("app.{category}.{name}")
    assert template.subject(event) == "app.order.order_paid"
    assert template.wildcard == "app.*.*"


def test_a_stream_id_becomes_one_nats_token_reversibly() -> None:
    assert subject_token("person/1.x y*>") == "person%2F1%2Ex%20y%2A%3E"
    assert subject_token("100%") == "100%25"
    assert subject_token("plain-id_1") == "plain-id_1"
    assert subject_token("café") == "caf%C3%A9"


def test_a_template_with_an_unknown_field_or_an_empty_token_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown field"):
        SubjectTemplate("conduit.{stream}")
    with pytest.raises(InvalidArgument, match="not a subject"):
        SubjectTemplate("conduit..{stream_id}")


def test_a_message_that_is_not_a_relayed_event_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a relayed Conduit event"):
        decode_event(b'{"id": "nope"}')
    with pytest.raises(InvalidArgument):
        decode_event(b"not json")
