"""Contract: appending events: push, push_many, expected versions, idempotent retries."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conduit import (
    Conflict,
    DuplicateEvent,
    Event,
    EventStore,
    InvalidArgument,
    InvalidEvent,
    WrongExpectedVersion,
    new_id,
)
from conduit.testing.support import snapshot

__all__ = [
    "test_a_naive_recorded_at_is_refused",
    "test_a_retried_push_that_changes_the_event_raises",
    "test_a_retry_in_another_order_raises_and_writes_nothing",
    "test_a_retry_that_changes_an_event_raises_and_writes_nothing",
    "test_camel_case_names_are_stored_snake_case",
    "test_changing_a_returned_event_changes_nothing_stored",
    "test_conflicts_share_one_base",
    "test_duplicate_id_inside_one_batch_raises_and_writes_nothing",
    "test_empty_push_many_still_checks_the_expected_version",
    "test_event_id_may_be_given_as_uuid_text",
    "test_expected_version_ahead_of_the_stream_raises",
    "test_expected_version_n_appends_when_the_stream_is_at_n",
    "test_expected_version_none_appends_whatever_the_version",
    "test_expected_version_that_is_not_a_version_is_refused",
    "test_expected_version_zero_creates_a_stream",
    "test_expected_version_zero_on_an_existing_stream_raises",
    "test_get_returns_the_stream_as_pushed",
    "test_get_unknown_stream_returns_an_empty_list",
    "test_push_gives_every_event_an_id",
    "test_push_many_accepts_mappings_with_metadata_and_ids",
    "test_push_many_accepts_tuples",
    "test_push_many_keeps_the_recorded_at_an_import_gives",
    "test_push_many_returns_consecutive_versions_and_increasing_positions",
    "test_push_many_with_an_empty_batch_writes_nothing",
    "test_push_many_with_one_bad_event_writes_nothing",
    "test_push_many_with_wrong_expected_version_writes_nothing",
    "test_push_returns_the_recorded_event",
    "test_push_with_stale_expected_version_raises_and_writes_nothing",
    "test_recorded_at_never_goes_backwards_within_a_stream",
    "test_retried_batch_returns_the_recorded_events_and_writes_nothing",
    "test_retried_batch_with_stale_expected_version_returns_the_recorded_events",
    "test_retried_push_returns_the_recorded_event_and_writes_nothing",
    "test_retry_mixing_recorded_and_new_ids_raises_and_writes_nothing",
    "test_same_event_id_in_another_stream_raises_and_writes_nothing",
    "test_str_stream_id_comes_back_as_str",
    "test_string_stream_id_that_looks_like_a_uuid_stays_a_string",
    "test_uuid_stream_id_comes_back_as_the_same_uuid",
    "test_wrong_expected_version_carries_its_facts",
]


def test_push_returns_the_recorded_event(store: EventStore) -> None:
    event_id = new_id()
    event = store.push(
        "person_registered",
        "person-1",
        {"first_name": "Kris"},
        metadata={"user": "admin"},
        event_id=event_id,
    )
    assert isinstance(event, Event)
    assert event.id == event_id
    assert event.stream_id == "person-1"
    assert event.name == "person_registered"
    assert event.data == {"first_name": "Kris"}
    assert event.metadata == {"user": "admin"}
    assert event.version == 1
    assert event.position >= 1
    assert event.recorded_at.tzinfo is not None
    assert event.recorded_at.utcoffset() == timedelta(0)


def test_push_gives_every_event_an_id(store: EventStore) -> None:
    first = store.push("thing_happened", "s", {})
    second = store.push("thing_happened", "s", {})
    assert isinstance(first.id, uuid.UUID)
    assert first.id != second.id
    assert first.metadata == {}


def test_get_returns_the_stream_as_pushed(store: EventStore) -> None:
    pushed = [store.push("step_taken", "walk", {"step": n}) for n in range(1, 4)]
    store.push("step_taken", "other", {"step": 0})
    assert store.get("walk") == pushed
    assert [event.version for event in pushed] == [1, 2, 3]


def test_get_unknown_stream_returns_an_empty_list(store: EventStore) -> None:
    store.push("thing_happened", "known", {})
    assert store.get("unknown") == []


def test_uuid_stream_id_comes_back_as_the_same_uuid(store: EventStore) -> None:
    stream_id = new_id()
    event = store.push("thing_happened", stream_id, {})
    (got,) = store.get(stream_id)
    for found in (event.stream_id, got.stream_id):
        assert isinstance(found, uuid.UUID)
        assert found == stream_id


def test_str_stream_id_comes_back_as_str(store: EventStore) -> None:
    event = store.push("thing_happened", "order-42", {})
    (got,) = store.get("order-42")
    assert type(event.stream_id) is str
    assert type(got.stream_id) is str
    assert got.stream_id == "order-42"


def test_string_stream_id_that_looks_like_a_uuid_stays_a_string(store: EventStore) -> None:
    text = str(new_id())
    store.push("thing_happened", text, {})
    (got,) = store.get(text)
    assert type(got.stream_id) is str
    assert got.stream_id == text


def test_camel_case_names_are_stored_snake_case(store: EventStore) -> None:
    event = store.push("PersonRegistered", "p", {})
    assert event.name == "person_registered"
    assert store.get("p")[0].name == "person_registered"


def test_recorded_at_never_goes_backwards_within_a_stream(store: EventStore) -> None:
    events = [store.push("tick", "clock", {}) for _ in range(20)]
    times = [event.recorded_at for event in store.get("clock")]
    assert times == sorted(times)
    assert times == [event.recorded_at for event in events]


def test_expected_version_none_appends_whatever_the_version(store: EventStore) -> None:
    store.push("thing_happened", "s", {}, expected_version=None)
    event = store.push("thing_happened", "s", {}, expected_version=None)
    assert event.version == 2


def test_expected_version_zero_creates_a_stream(store: EventStore) -> None:
    event = store.push("thing_happened", "new", {}, expected_version=0)
    assert event.version == 1


def test_expected_version_zero_on_an_existing_stream_raises(store: EventStore) -> None:
    store.push("thing_happened", "s", {})
    with pytest.raises(WrongExpectedVersion) as caught:
        store.push("thing_happened", "s", {}, expected_version=0)
    assert (caught.value.expected, caught.value.actual) == (0, 1)


def test_expected_version_n_appends_when_the_stream_is_at_n(store: EventStore) -> None:
    store.push_many("s", [("thing_happened", {}), ("thing_happened", {})])
    event = store.push("thing_happened", "s", {}, expected_version=2)
    assert event.version == 3


def test_push_with_stale_expected_version_raises_and_writes_nothing(store: EventStore) -> None:
    store.push("thing_happened", "s", {})
    store.push("thing_happened", "s", {})
    before = snapshot(store, "s")
    with pytest.raises(WrongExpectedVersion):
        store.push("thing_happened", "s", {}, expected_version=1)
    assert snapshot(store, "s") == before


def test_expected_version_ahead_of_the_stream_raises(store: EventStore) -> None:
    store.push("thing_happened", "s", {})
    with pytest.raises(WrongExpectedVersion) as caught:
        store.push("thing_happened", "s", {}, expected_version=5)
    assert (caught.value.expected, caught.value.actual) == (5, 1)
    assert store.stream_version("s") == 1


@pytest.mark.parametrize("stream_id", ["account-123", uuid.UUID(int=123)], ids=["str", "uuid"])
def test_wrong_expected_version_carries_its_facts(
    store: EventStore, stream_id: str | uuid.UUID
) -> None:
    for _ in range(5):
        store.push("thing_happened", stream_id, {})
    with pytest.raises(WrongExpectedVersion) as caught:
        store.push("thing_happened", stream_id, {}, expected_version=4)
    error = caught.value
    assert error.stream_id == stream_id
    assert (error.expected, error.actual) == (4, 5)
    message = str(error)
    assert str(stream_id) in message
    assert "4" in message
    assert "5" in message


@pytest.mark.parametrize("expected", [-1, 1.0, "1", True], ids=["negative", "float", "str", "bool"])
def test_expected_version_that_is_not_a_version_is_refused(
    store: EventStore, expected: object
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        store.push("thing_happened", "s", {}, expected_version=expected)  # type: ignore[arg-type]
    assert caught.value.field == "expected_version"
    assert not isinstance(caught.value, InvalidEvent)  # an argument, not a part of the event
    assert isinstance(caught.value, ValueError)
    assert store.stream_version("s") == 0


def test_push_many_returns_consecutive_versions_and_increasing_positions(
    store: EventStore,
) -> None:
    store.push("thing_happened", "s", {})
    events = store.push_many("s", [("a_happened", {"n": 1}), ("b_happened", {"n": 2})])
    assert [event.version for event in events] == [2, 3]
    assert [event.name for event in events] == ["a_happened", "b_happened"]
    assert events[0].position < events[1].position
    assert store.get("s")[1:] == events


def test_push_many_accepts_mappings_with_metadata_and_ids(store: EventStore) -> None:
    first_id, second_id = new_id(), new_id()
    events = store.push_many(
        "s",
        [
            {"name": "OrderPlaced", "data": {"n": 1}, "metadata": {"user": "u"}, "id": first_id},
            {"name": "order_paid", "data": {"n": 2}, "id": str(second_id)},
        ],
    )
    assert [event.id for event in events] == [first_id, second_id]
    assert [event.name for event in events] == ["order_placed", "order_paid"]
    assert [event.metadata for event in events] == [{"user": "u"}, {}]
    assert store.get("s") == events


def test_push_many_accepts_tuples(store: EventStore) -> None:
    events = store.push_many("s", [("a_happened", {"n": 1}), ("b_happened", {"n": 2}, {"m": 3})])
    assert [(event.data, event.metadata) for event in events] == [
        ({"n": 1}, {}),
        ({"n": 2}, {"m": 3}),
    ]
    assert store.get("s") == events


def test_push_many_with_an_empty_batch_writes_nothing(store: EventStore) -> None:
    before = snapshot(store, "s")
    assert store.push_many("s", []) == []
    assert snapshot(store, "s") == before


def test_push_many_with_one_bad_event_writes_nothing(store: EventStore) -> None:
    store.push("thing_happened", "s", {})
    before = snapshot(store, "s")
    batch: list[tuple[str, dict[str, Any]]] = [
        ("a_happened", {"ok": 1}),
        ("b_happened", {"bad": float("nan")}),
        ("c_happened", {}),
    ]
    with pytest.raises(InvalidEvent) as caught:
        store.push_many("s", batch)
    assert caught.value.field is not None
    assert caught.value.field.startswith("events[1].data")
    assert snapshot(store, "s") == before


def test_push_many_with_wrong_expected_version_writes_nothing(store: EventStore) -> None:
    store.push("thing_happened", "s", {})
    before = snapshot(store, "s")
    with pytest.raises(WrongExpectedVersion):
        store.push_many("s", [("a_happened", {}), ("b_happened", {})], expected_version=0)
    assert snapshot(store, "s") == before


def test_event_id_may_be_given_as_uuid_text(store: EventStore) -> None:
    event_id = new_id()
    event = store.push("thing_happened", "s", {}, event_id=str(event_id))
    assert event.id == event_id
    assert store.get("s")[0].id == event_id


def test_retried_push_returns_the_recorded_event_and_writes_nothing(store: EventStore) -> None:
    event_id = new_id()
    first = store.push("thing_happened", "s", {"n": 1}, event_id=event_id)
    before = snapshot(store, "s")
    again = store.push("thing_happened", "s", {"n": 1}, event_id=event_id)
    assert again == first
    assert snapshot(store, "s") == before


def test_retried_batch_returns_the_recorded_events_and_writes_nothing(store: EventStore) -> None:
    batch = [{"name": "a_happened", "data": {"n": n}, "id": new_id()} for n in range(3)]
    first = store.push_many("s", batch)
    before = snapshot(store, "s")
    again = store.push_many("s", batch)
    assert again == first
    assert [(e.version, e.position) for e in again] == [(e.version, e.position) for e in first]
    assert snapshot(store, "s") == before


def test_retried_batch_with_stale_expected_version_returns_the_recorded_events(
    store: EventStore,
) -> None:
    batch = [{"name": "a_happened", "data": {"n": n}, "id": new_id()} for n in range(2)]
    first = store.push_many("s", batch, expected_version=0)
    store.push("b_happened", "s", {})
    before = snapshot(store, "s")
    again = store.push_many("s", batch, expected_version=0)
    assert again == first
    assert snapshot(store, "s") == before


def test_same_event_id_in_another_stream_raises_and_writes_nothing(store: EventStore) -> None:
    event_id = new_id()
    store.push("thing_happened", "first", {}, event_id=event_id)
    before = snapshot(store, "second")
    with pytest.raises(DuplicateEvent) as caught:
        store.push("thing_happened", "second", {}, event_id=event_id)
    assert caught.value.event_id == event_id
    assert snapshot(store, "second") == before
    assert store.stream_version("first") == 1


def test_retry_mixing_recorded_and_new_ids_raises_and_writes_nothing(store: EventStore) -> None:
    recorded = new_id()
    store.push("thing_happened", "s", {}, event_id=recorded)
    before = snapshot(store, "s")
    batch = [
        {"name": "thing_happened", "data": {}, "id": recorded},
        {"name": "thing_happened", "data": {}, "id": new_id()},
    ]
    with pytest.raises(DuplicateEvent):
        store.push_many("s", batch)
    assert snapshot(store, "s") == before


def test_duplicate_id_inside_one_batch_raises_and_writes_nothing(store: EventStore) -> None:
    event_id = new_id()
    before = snapshot(store, "s")
    batch = [
        {"name": "thing_happened", "data": {"n": 1}, "id": event_id},
        {"name": "thing_happened", "data": {"n": 2}, "id": event_id},
    ]
    with pytest.raises(DuplicateEvent):
        store.push_many("s", batch)
    assert snapshot(store, "s") == before


def test_push_many_keeps_the_recorded_at_an_import_gives(store: EventStore) -> None:
    then = datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    recorded = store.push_many(
        "s", [{"name": "imported", "data": {}, "recorded_at": then}, ("pushed_now", {})]
    )
    events = store.get("s")
    assert events == recorded
    assert events[0].recorded_at == then
    assert events[0].recorded_at.utcoffset() == timedelta(0)
    assert events[1].recorded_at > then


def test_a_naive_recorded_at_is_refused(store: EventStore) -> None:
    with pytest.raises(InvalidEvent) as refused:
        store.push_many("s", [{"name": "x", "data": {}, "recorded_at": datetime(2020, 1, 1)}])
    assert refused.value.field == "events[0].recorded_at"
    assert store.stream_version("s") == 0


def test_empty_push_many_still_checks_the_expected_version(store: EventStore) -> None:
    store.push("x", "s", {})
    assert store.push_many("s", [], expected_version=1) == []
    with pytest.raises(WrongExpectedVersion):
        store.push_many("s", [], expected_version=3)
    with pytest.raises(InvalidArgument) as refused:
        store.push_many("s", [], expected_version=-1)
    assert refused.value.field == "expected_version"


def test_changing_a_returned_event_changes_nothing_stored(store: EventStore) -> None:
    def data() -> dict[str, Any]:
        return {"tags": ["a"], "address": {"zip": "1234"}}

    pushed = store.push("thing_happened", "s", data(), metadata={"user": {"name": "kris"}})
    [batch] = store.push_many("s", [("thing_happened", data(), {"user": {"name": "kris"}})])
    given = [
        pushed,
        batch,
        *store.get("s"),
        *store.read_all(),
        store.read_event(pushed.id),
        *store.read("s", backwards=True),
    ]
    for event in given:
        assert event is not None
        event.data["tags"].append("b")
        event.data["address"]["zip"] = "9999"
        event.data["added"] = True
        event.metadata["user"]["name"] = "mallory"
        event.metadata["added"] = True
    for event in [*store.get("s"), *store.read_all(), store.read_event(batch.id)]:
        assert event is not None
        assert event.data == data()
        assert event.metadata == {"user": {"name": "kris"}}


def test_a_retried_push_that_changes_the_event_raises(store: EventStore) -> None:
    event_id = new_id()
    store.push("thing_happened", "s", {"n": 1}, event_id=event_id)
    before = snapshot(store, "s")
    with pytest.raises(DuplicateEvent) as caught:
        store.push("thing_happened", "s", {"n": 2}, event_id=event_id)
    assert caught.value.event_id == event_id
    assert caught.value.reason is not None
    assert str(event_id) in str(caught.value)
    assert snapshot(store, "s") == before


@pytest.mark.parametrize(
    "change",
    [
        {"name": "other_thing_happened"},
        {"data": {"n": 2}},
        {"data": {"n": 1.0}},  # equal to 1 in Python, but it would read back as a float
        {"data": {}},
        {"metadata": {"user": "mallory"}},
        {"metadata": {}},
    ],
    ids=["name", "data", "int-as-float", "no-data", "metadata", "no-metadata"],
)
def test_a_retry_that_changes_an_event_raises_and_writes_nothing(
    store: EventStore, change: dict[str, Any]
) -> None:
    batch: list[dict[str, Any]] = [
        {"name": "thing_happened", "data": {"n": n}, "metadata": {"user": "kris"}, "id": new_id()}
        for n in (0, 1)
    ]
    store.push_many("s", batch)
    before = snapshot(store, "s")
    changed = [batch[0], {**batch[1], **change}]
    with pytest.raises(DuplicateEvent) as caught:
        store.push_many("s", changed)
    assert caught.value.event_id == batch[1]["id"]
    assert caught.value.stream_id == "s"
    assert snapshot(store, "s") == before
    assert store.push_many("s", batch) == store.get("s")  # the true retry still succeeds


def test_a_retry_in_another_order_raises_and_writes_nothing(store: EventStore) -> None:
    batch = [{"name": "thing_happened", "data": {"n": n}, "id": new_id()} for n in range(3)]
    store.push_many("s", batch)
    before = snapshot(store, "s")
    with pytest.raises(DuplicateEvent):
        store.push_many("s", [batch[0], batch[2], batch[1]])
    assert snapshot(store, "s") == before


def test_conflicts_share_one_base(store: EventStore) -> None:
    event_id = new_id()
    store.push("thing_happened", "s", {}, event_id=event_id)
    with pytest.raises(Conflict):
        store.push("thing_happened", "s", {}, expected_version=0)
    with pytest.raises(Conflict):
        store.push("thing_happened", "other", {}, event_id=event_id)
