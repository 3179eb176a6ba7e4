"""Contract: tags on events, their validation, and reading events by query."""

from __future__ import annotations

from typing import Any

import pytest

from conduit import (
    DuplicateEvent,
    EventStore,
    InvalidArgument,
    InvalidEvent,
    Query,
    QueryItem,
    new_id,
)
from conduit.testing.support import snapshot

__all__ = [
    "test_a_query_item_with_names_and_tags_needs_both",
    "test_a_retry_with_other_tags_raises",
    "test_a_rewritten_name_is_what_queries_by_name_and_tag_find",
    "test_an_empty_query_is_refused",
    "test_bad_tags_are_refused_naming_the_field",
    "test_call_tags_are_added_to_every_event",
    "test_events_without_tags_have_an_empty_frozenset",
    "test_query_all_matches_every_event",
    "test_read_query_after_and_limit_page_the_matches",
    "test_read_query_backwards_gives_the_latest_first",
    "test_read_query_matches_an_event_that_carries_every_tag_of_an_item",
    "test_read_query_matches_any_item",
    "test_tags_are_recorded_and_read_back",
    "test_too_many_tags_are_refused_and_nothing_is_written",
]


def _positions(events: Any) -> list[int]:
    return [event.position for event in events]


def test_tags_are_recorded_and_read_back(store: EventStore) -> None:
    pushed = store.push("student_enrolled", "s", {}, tags=["course:c1", "student:s7"])
    assert pushed.tags == frozenset({"course:c1", "student:s7"})
    [read] = store.get("s")
    assert read.tags == pushed.tags
    [logged] = list(store.read_all())
    assert logged.tags == pushed.tags
    assert store.read_event(pushed.id).tags == pushed.tags  # type: ignore[union-attr]


def test_events_without_tags_have_an_empty_frozenset(store: EventStore) -> None:
    pushed = store.push("thing_happened", "s", {})
    assert pushed.tags == frozenset()
    assert store.get("s")[0].tags == frozenset()


def test_call_tags_are_added_to_every_event(store: EventStore) -> None:
    store.push_many(
        "s",
        [{"name": "a", "data": {}, "tags": ["own"]}, ("b", {})],
        tags=["shared"],
    )
    assert [e.tags for e in store.get("s")] == [
        frozenset({"own", "shared"}),
        frozenset({"shared"}),
    ]


@pytest.mark.parametrize(
    "tags",
    [[""], ["x" * 257], ["a\x00b"], [7], 7, {"a": 1}],
    ids=["empty", "too-long", "nul", "not-a-string", "not-iterable", "mapping"],
)
def test_bad_tags_are_refused_naming_the_field(store: EventStore, tags: Any) -> None:
    before = snapshot(store, "s")
    with pytest.raises(InvalidEvent) as caught:
        store.push_many("s", [("a", {}), ("b", {}), {"name": "c", "data": {}, "tags": tags}])
    assert caught.value.field == "events[2].tags"
    with pytest.raises(InvalidEvent) as caught:
        store.push("a", "s", {}, tags=tags)
    assert caught.value.field == "tags"
    assert snapshot(store, "s") == before


def test_too_many_tags_are_refused_and_nothing_is_written(store: EventStore) -> None:
    before = snapshot(store, "s")
    with pytest.raises(InvalidEvent, match="64"):
        store.push("a", "s", {}, tags=[f"t{i}" for i in range(65)])
    with pytest.raises(InvalidEvent, match="64") as caught:
        store.push_many(
            "s",
            [{"name": "a", "data": {}, "tags": [f"t{i}" for i in range(60)]}],
            tags=[f"u{i}" for i in range(5)],
        )
    assert caught.value.field == "events[0].tags"
    assert snapshot(store, "s") == before
    assert len(store.push("a", "s", {}, tags=[f"t{i}" for i in range(64)]).tags) == 64


def test_a_retry_with_other_tags_raises(store: EventStore) -> None:
    event_id = new_id()
    store.push("a", "s", {}, event_id=event_id, tags=["x"])
    assert store.push("a", "s", {}, event_id=event_id, tags=["x"]).version == 1
    with pytest.raises(DuplicateEvent, match="tags"):
        store.push("a", "s", {}, event_id=event_id, tags=["y"])
    assert len(store.get("s")) == 1


def test_read_query_matches_an_event_that_carries_every_tag_of_an_item(
    store: EventStore,
) -> None:
    both = store.push("enrolled", "a", {}, tags=["course:c1", "student:s1"])
    store.push("enrolled", "b", {}, tags=["course:c1", "student:s2"])
    store.push("enrolled", "c", {}, tags=["course:c2", "student:s1"])
    query = Query(QueryItem(tags=["course:c1", "student:s1"]))
    assert _positions(store.read_query(query)) == [both.position]


def test_a_query_item_with_names_and_tags_needs_both(store: EventStore) -> None:
    store.push("course_defined", "a", {}, tags=["course:c1"])
    wanted = store.push("student_enrolled", "b", {}, tags=["course:c1"])
    store.push("student_enrolled", "c", {}, tags=["course:c2"])
    query = Query(QueryItem(names=["StudentEnrolled", "course_closed"], tags=["course:c1"]))
    assert _positions(store.read_query(query)) == [wanted.position]
    by_name = Query(QueryItem(names=["student_enrolled"]))
    assert len(store.read_query(by_name)) == 2


def test_read_query_matches_any_item(store: EventStore) -> None:
    first = store.push("a", "s1", {}, tags=["x"])
    store.push("b", "s2", {}, tags=["z"])
    third = store.push("c", "s3", {}, tags=["y", "x"])
    fourth = store.push("d", "s4", {})
    query = Query(QueryItem(tags=["x"]), QueryItem(names=["d"]), QueryItem(tags=["y"]))
    assert _positions(store.read_query(query)) == [first.position, third.position, fourth.position]


def test_query_all_matches_every_event(store: EventStore) -> None:
    pushed = [store.push("a", "s", {}), store.push("b", "t", {}, tags=["x"])]
    assert _positions(store.read_query(Query.all())) == _positions(pushed)
    assert _positions(store.read_query(Query(QueryItem()))) == _positions(pushed)


def test_an_empty_query_is_refused(store: EventStore) -> None:
    with pytest.raises(InvalidArgument):
        Query()
    with pytest.raises(InvalidArgument):
        QueryItem(tags=[""])
    with pytest.raises(InvalidArgument):
        QueryItem(names=["not a name"])


def test_read_query_after_and_limit_page_the_matches(store: EventStore) -> None:
    store.page_size = 2
    pushed = [store.push("a", f"s{i}", {}, tags=["x"]) for i in range(5)]
    store.push("a", "other", {}, tags=["y"])
    query = Query(QueryItem(tags=["x"]))
    assert _positions(store.read_query(query)) == _positions(pushed)
    assert _positions(store.read_query(query, after=pushed[1].position)) == _positions(pushed[2:])
    assert _positions(store.read_query(query, limit=3)) == _positions(pushed[:3])


def test_read_query_backwards_gives_the_latest_first(store: EventStore) -> None:
    pushed = [store.push("a", f"s{i}", {}, tags=["x"]) for i in range(4)]
    query = Query(QueryItem(tags=["x"]))
    assert _positions(store.read_query(query, backwards=True, limit=2)) == [
        pushed[3].position,
        pushed[2].position,
    ]
    assert _positions(store.read_query(query, backwards=True)) == _positions(pushed[::-1])


def test_a_rewritten_name_is_what_queries_by_name_and_tag_find(store: EventStore) -> None:
    from conduit.backends.base import EventRewrite

    pushed = store.push("old_name", "s", {"a": 1}, tags=["x"])
    count = store.backend.rewrite_events([EventRewrite(pushed.id, "new_name", '{"a": 1}', "{}")])
    assert count == 1
    assert store.read_query(Query(QueryItem(names=["old_name"], tags=["x"]))) == []
    [found] = store.read_query(Query(QueryItem(names=["new_name"], tags=["x"])))
    assert (found.id, found.tags) == (pushed.id, frozenset({"x"}))
