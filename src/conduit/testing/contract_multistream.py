"""Contract: appending to several streams at once, all or nothing."""

from __future__ import annotations

import pytest

from conduit import EventStore, InvalidArgument, InvalidEvent, WrongExpectedVersion, new_id
from conduit.testing.support import snapshot

__all__ = [
    "test_a_multi_stream_push_checks_every_expected_version",
    "test_a_multi_stream_push_is_contiguous_in_the_log",
    "test_a_multi_stream_push_takes_call_tags",
    "test_a_retried_multi_stream_push_returns_the_recorded_events",
    "test_expected_versions_of_streams_not_pushed_are_refused",
    "test_one_conflict_of_three_streams_writes_nothing",
    "test_the_conflict_names_every_stream_that_failed",
]


def test_a_multi_stream_push_is_contiguous_in_the_log(store: EventStore) -> None:
    store.push("opened", "c", {})
    recorded = store.push_many(
        {"a": [("x", {}), ("y", {})], "b": [("z", {})]}, expected_versions={"a": 0}
    )
    assert [(e.stream_id, e.version) for e in recorded] == [("a", 1), ("a", 2), ("b", 1)]
    positions = [e.position for e in recorded]
    log = list(store.read_all())
    assert [e.position for e in log[1:]] == positions
    assert store.get("a") == recorded[:2]
    assert store.get("b") == recorded[2:]


def test_a_multi_stream_push_checks_every_expected_version(store: EventStore) -> None:
    store.push("x", "a", {})
    store.push_many({"a": [("y", {})], "b": [("z", {})]}, expected_versions={"a": 1, "b": 0})
    assert store.stream_version("a") == 2
    assert store.stream_version("b") == 1


def test_one_conflict_of_three_streams_writes_nothing(store: EventStore) -> None:
    store.push("x", "b", {})
    before = [snapshot(store, stream) for stream in ("a", "b", "c")]
    with pytest.raises(WrongExpectedVersion) as caught:
        store.push_many(
            {"a": [("x", {})], "b": [("y", {})], "c": [("z", {})]},
            expected_versions={"a": 0, "b": 0, "c": 0},
        )
    assert caught.value.conflicts == (("b", 0, 1),)
    assert [snapshot(store, stream) for stream in ("a", "b", "c")] == before
    store.push("after", "a", {})  # the store keeps working


def test_the_conflict_names_every_stream_that_failed(store: EventStore) -> None:
    store.push("x", "a", {})
    store.push_many("b", [("x", {}), ("y", {})])
    with pytest.raises(WrongExpectedVersion) as caught:
        store.push_many(
            {"a": [("x", {})], "b": [("y", {})], "c": [("z", {})]},
            expected_versions={"a": 0, "b": 1, "c": 0},
        )
    assert sorted(caught.value.conflicts) == [("a", 0, 1), ("b", 1, 2)]
    assert "stream: a" in str(caught.value)
    assert "stream: b" in str(caught.value)
    assert store.stream_version("c") == 0


def test_a_retried_multi_stream_push_returns_the_recorded_events(store: EventStore) -> None:
    batches = {
        "a": [{"name": "x", "data": {}, "id": new_id()}],
        "b": [{"name": "y", "data": {"n": 1}, "id": new_id()}],
    }
    first = store.push_many(batches, expected_versions={"a": 0, "b": 0})
    head = store.head_position()
    again = store.push_many(batches, expected_versions={"a": 0, "b": 0})
    assert again == first
    assert store.head_position() == head


def test_a_multi_stream_push_takes_call_tags(store: EventStore) -> None:
    recorded = store.push_many({"a": [("x", {})], "b": [("y", {})]}, tags=["transfer:t1"])
    assert all(e.tags == frozenset({"transfer:t1"}) for e in recorded)


def test_expected_versions_of_streams_not_pushed_are_refused(store: EventStore) -> None:
    with pytest.raises(InvalidArgument):
        store.push_many({"a": [("x", {})]}, expected_versions={"b": 0})
    with pytest.raises(InvalidArgument):
        store.push_many({"a": [("x", {})]}, [("y", {})])
    with pytest.raises(InvalidEvent):
        store.push_many({"a": [("x", {})], "b": []})
    assert store.head_position() == 0
